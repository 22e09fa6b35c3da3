"""Runner, resume, systems on scripted models, datasets, report files and the CLI, all fast."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

from spec_graph import ScriptedGenerator
from spec_graph.eval import (
    DATASETS,
    EvalConfig,
    Generation,
    RecordStore,
    SampleOptions,
    build_messages,
    evaluate,
    load_dataset,
    make_system,
    merge_runs,
    run_systems,
)
from spec_graph.eval.report import (
    gap_closed,
    pareto_front,
    plot_accuracy_vs_target_share,
    share_markdown,
    summarize,
    to_markdown,
    write_report,
)
from spec_graph.eval.runner import item_seed
from spec_graph.eval.systems import SingleModelSystem, SpecThinkingSystem
from spec_graph.generators import EOS


class FakeSystem:
    """Answers ``\\boxed{<gold>}`` for problems whose id is in ``right``; crashes after ``fail_after`` calls."""

    def __init__(self, name: str, gold: Mapping[str, str], right: set[str], fail_after: int | None = None) -> None:
        self.name, self.gold, self.right, self.fail_after = name, gold, right, fail_after
        self.calls: list[str] = []
        self.prepared = 0

    def prepare(self) -> None:
        self.prepared += 1

    def generate(self, messages: Sequence[Mapping[str, Any]], options: SampleOptions) -> Generation:
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise RuntimeError("killed")
        problem_id = next(i for i, text in self.by_text.items() if text in messages[-1]["content"])
        self.calls.append(problem_id)
        answer = self.gold[problem_id] if problem_id in self.right else "-1"
        return Generation(f"so \\boxed{{{answer}}}", "eos", {"small": 3, "target": 1}, [{"kind": "intervention"}])

    by_text: ClassVar[dict[str, str]] = {}


@pytest.fixture
def problems() -> list[Any]:
    items = load_dataset("multiarith", limit=6)
    FakeSystem.by_text = {p.id: p.problem for p in items}
    return items


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# -- datasets ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(DATASETS))
def test_packaged_sets_match_sources(name: str) -> None:
    from spec_graph.eval.datasets import dataset_path

    path = dataset_path(name)
    sources = (path.parent / "SOURCES.md").read_text()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    row = next(line for line in sources.splitlines() if line.startswith(f"| {name}.jsonl"))
    assert digest in row
    rows = int(re.split(r"\s*\|\s*", row)[2])
    assert len(load_dataset(name)) == rows


def test_limit_offset_and_custom_jsonl(tmp_path: Path) -> None:
    first = load_dataset("multiarith", limit=3)
    assert [p.id for p in first] == ["multiarith-0000", "multiarith-0001", "multiarith-0002"]
    assert first[0].answer == "39"
    assert [p.index for p in load_dataset("gsm8k", limit=2, offset=5)] == [5, 6]
    path = tmp_path / "mine.jsonl"
    path.write_text('{"problem": "1+1?", "answer": 2}\n\n{"id": "b", "problem": "2+2?", "answer": "4"}\n')
    mine = load_dataset(path)
    assert [(p.id, p.answer) for p in mine] == [("mine-0000", "2"), ("b", "4")]


def test_dataset_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="neither a packaged set"):
        load_dataset("nope")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "x", "answer": 1}\n')
    with pytest.raises(ValueError, match="lacks problem"):
        load_dataset(bad)
    with pytest.raises(ValueError, match="limit must be >= 1"):
        load_dataset("multiarith", limit=0)


# -- resume ------------------------------------------------------------------------------------
def test_killed_run_resumes_with_one_record_per_item(tmp_path: Path, problems: list[Any]) -> None:
    gold = {p.id: p.answer for p in problems}
    path = tmp_path / "records.jsonl"
    opts = SampleOptions(max_new_tokens=8)
    crashing = FakeSystem("fake", gold, right={problems[0].id}, fail_after=4)
    with pytest.raises(RuntimeError, match="killed"):
        run_systems([crashing], problems, RecordStore(path), options=opts, dataset="multiarith", progress=False)
    assert [r["id"] for r in _lines(path)] == [p.id for p in problems[:4]]
    with path.open("a") as fh:  # a kill in the middle of writing the fifth record
        fh.write('{"system": "fake", "id": "multiarith-00')

    resumed = FakeSystem("fake", gold, right={problems[0].id})
    store = RecordStore(path)
    assert store.repaired == 1
    records = run_systems([resumed], problems, store, options=opts, dataset="multiarith", progress=False)
    assert resumed.calls == [p.id for p in problems[4:]]
    on_disk = _lines(path)
    assert sorted(r["id"] for r in on_disk) == sorted(p.id for p in problems)
    assert len({(r["system"], r["id"], r["sample"]) for r in on_disk}) == len(on_disk) == len(problems)
    assert [r["id"] for r in records] == [p.id for p in problems]
    assert sum(r["correct"] for r in records) == 1

    again = FakeSystem("fake", gold, right=set())
    run_systems([again], problems, RecordStore(path), options=opts, dataset="multiarith", progress=False)
    assert again.calls == []
    assert again.prepared == 0
    assert len(_lines(path)) == len(problems)


@pytest.mark.parametrize("interleave", [False, True])
def test_order_of_answers(tmp_path: Path, problems: list[Any], interleave: bool) -> None:
    gold = {p.id: p.answer for p in problems}
    calls: list[tuple[str, str]] = []

    class Logged(FakeSystem):
        def generate(self, messages: Sequence[Mapping[str, Any]], options: SampleOptions) -> Generation:
            out = super().generate(messages, options)
            calls.append((self.name, self.calls[-1]))
            return out

    systems = [Logged("a", gold, set()), Logged("b", gold, set())]
    ids = [p.id for p in problems[:2]]
    store = RecordStore(tmp_path / "r.jsonl")
    run_systems(
        systems, problems[:2], store, options=SampleOptions(), dataset="d", progress=False, interleave=interleave
    )
    if interleave:
        assert calls == [("a", ids[0]), ("b", ids[0]), ("a", ids[1]), ("b", ids[1])]
    else:
        assert calls == [("a", ids[0]), ("a", ids[1]), ("b", ids[0]), ("b", ids[1])]


def test_samples_and_seeds(tmp_path: Path, problems: list[Any]) -> None:
    gold = {p.id: p.answer for p in problems}
    system = FakeSystem("fake", gold, right=set(gold))
    store = RecordStore(tmp_path / "r.jsonl")
    opts = SampleOptions(temperature=0.7)
    records = run_systems([system], problems[:2], store, options=opts, dataset="d", samples=3, seed=5, progress=False)
    assert [(r["id"], r["sample"]) for r in records] == [(p.id, s) for p in problems[:2] for s in range(3)]
    assert records[1]["seed"] == item_seed(5, problems[0].id, 1) != records[0]["seed"]
    assert item_seed(5, "a", 0) == item_seed(5, "a", 0) != item_seed(6, "a", 0)


def test_evaluate_writes_report_and_refuses_other_settings(tmp_path: Path, problems: list[Any]) -> None:
    gold = {p.id: p.answer for p in problems}
    systems = [FakeSystem("small", gold, right={problems[0].id}), FakeSystem("spec", gold, right=set(gold))]
    cfg = EvalConfig(dataset="multiarith", limit=6, out=str(tmp_path), progress=False, systems=("small", "spec"))
    results = evaluate(cfg, systems=systems)
    for name in ("records.jsonl", "run.json", "results.json", "results.md"):
        assert (tmp_path / name).is_file()
    for stem in ("accuracy_vs_speed", "output_length", "accuracy_vs_target_share"):
        assert (tmp_path / f"{stem}.png").stat().st_size > 1000
        assert (tmp_path / f"{stem}.svg").read_text().lstrip().startswith("<?xml")
    rows = {r["system"]: r for r in results["systems"]}
    assert rows["small"]["accuracy"] == pytest.approx(1 / 6)
    assert rows["spec"]["vs_small"] == {"compared": 6, "fixed": 5, "broken": 0}
    assert rows["spec"]["target_share"] == pytest.approx(0.25)
    assert rows["spec"]["interventions_per_problem"] == 1
    markdown = (tmp_path / "results.md").read_text()
    assert "| `spec` | 100.0% (6/6)" in markdown
    assert "### Interventions of `spec`\n\n6 in 6 answers; by kind: intervention 6" in markdown
    with pytest.raises(ValueError, match=r"other settings.*max_new_tokens"):
        evaluate(EvalConfig(dataset="multiarith", limit=6, out=str(tmp_path), max_new_tokens=9), systems=systems)
    fresh = [FakeSystem("small", gold, right=set())]
    cfg2 = EvalConfig(limit=2, out=str(tmp_path), max_new_tokens=9, overwrite=True, progress=False, plots=False)
    assert evaluate(cfg2, systems=fresh)["systems"][0]["answers"] == 2


def test_config_validation() -> None:
    with pytest.raises(ValueError, match=r"limit must be >= 1.*top_p must be in"):
        EvalConfig(limit=0, top_p=0)
    with pytest.raises(ValueError, match="must contain '\\{problem\\}'"):
        EvalConfig(prompt_template="no placeholder")
    with pytest.raises(ValueError, match="must contain"):
        build_messages("x", "nothing")
    assert build_messages("2+2?")[0]["content"].endswith("within \\boxed{}. 2+2?")


# -- systems on scripted models ----------------------------------------------------------------
def test_systems_on_scripted_models() -> None:
    small = ScriptedGenerator.from_responses(["Two plus two.\n\nSo \\boxed{4}<eos>"], name="s")
    target = ScriptedGenerator.from_responses(["Wait, \\boxed{5}<eos>"], name="t")
    messages = build_messages("2+2?")
    opts = SampleOptions(max_new_tokens=50)
    alone = make_system("small", small, target)
    assert isinstance(alone, SingleModelSystem)
    gen = alone.generate(messages, opts)
    assert gen.text == "Two plus two.\n\nSo \\boxed{4}"
    assert gen.finish_reason == "eos"
    assert gen.output_tokens == {"small": gen.num_output_tokens}
    short = make_system("target", small, target).generate(messages, SampleOptions(max_new_tokens=2))
    assert short.finish_reason == "length"
    assert short.output_tokens == {"target": 2}
    spec = make_system("spec:non_reasoning", small, target)
    assert isinstance(spec, SpecThinkingSystem)
    assert spec.name == "spec:non_reasoning"
    out = spec.generate(messages, opts)
    assert out.output_tokens.get("target", 0) > 0
    assert out.interventions
    assert make_system("spec", small, target).name == "spec:reasoning"


def test_system_errors(tmp_path: Path) -> None:
    small, target = ScriptedGenerator.from_responses(["a"]), ScriptedGenerator.from_responses(["b"])
    with pytest.raises(ValueError, match="unknown system 'fast'; choose from small, target"):
        make_system("fast", small, target)
    with pytest.raises(TypeError, match="needs local transformers models"):
        make_system("specdec", small, target)
    with pytest.raises(ValueError, match="does not exist"):
        make_system(f"spec:{tmp_path}/missing.yaml", small, target)
    with pytest.raises(ValueError, match="unknown preset or policy"):
        make_system("spec:fastest", small, target)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        make_system("spec:uncertainty:2", small, target)


def test_policy_systems() -> None:
    small, target = ScriptedGenerator.from_responses(["a"]), ScriptedGenerator.from_responses(["b"])
    system = make_system("spec:uncertainty:0.4", small, target)
    assert system.name == "spec:uncertainty:0.4"
    assert system.thinker.config.policy.threshold == 0.4  # type: ignore[attr-defined]
    assert make_system("spec:never", small, target).thinker.config.policy.kind == "never"  # type: ignore[attr-defined]


# -- report ------------------------------------------------------------------------------------
def _rec(system: str, i: int, correct: bool, tokens: int, wall: float, finish: str = "eos") -> dict[str, Any]:
    return {
        "system": system, "id": f"p{i}", "sample": 0, "correct": correct, "output_tokens": tokens,
        "output_tokens_by_model": {"small": tokens}, "wall_seconds": wall, "finish_reason": finish,
        "interventions": 0, "intervention_details": [], "tokens_per_second": tokens / wall,
    }  # fmt: skip


def test_summary_and_pareto(tmp_path: Path) -> None:
    records = [_rec("small", i, i == 0, 10, 1.0) for i in range(4)]
    records += [_rec("big", i, True, 20, 10.0, "length") for i in range(4)]
    records += [_rec("slow_bad", i, False, 5, 10.0) for i in range(4)]
    rows = summarize(records)
    by = {r["system"]: r for r in rows}
    assert by["small"]["tokens_per_second"] == 10
    assert by["small"]["median_tokens_per_second"] == 10
    assert by["big"]["tokens_per_second"] == 2
    assert by["big"]["truncated"] == 1
    assert by["big"]["vs_small"] == {"compared": 4, "fixed": 3, "broken": 0}
    assert pareto_front(rows) == ["small", "big"]
    table = to_markdown(rows)
    assert table.splitlines()[0].startswith("| system | accuracy | avg output tokens | tokens/s")
    results = write_report(tmp_path, records, {"dataset": "x", "problems": 4})
    assert results["pareto_front"] == ["small", "big"]
    assert json.loads((tmp_path / "results.json").read_text())["systems"][0]["system"] == "small"


# -- CLI ---------------------------------------------------------------------------------------
def test_cli_end_to_end_with_fake_systems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], problems: list[Any]
) -> None:
    from spec_graph.cli import evaluate as cli
    from spec_graph.eval import harness

    gold = {p.id: p.answer for p in problems}
    monkeypatch.setattr(
        harness, "make_system", lambda name, small, target, overrides=None: FakeSystem(name, gold, set(gold))
    )
    monkeypatch.setattr("spec_graph.generators.resolve.resolve_generator", lambda model, **load: model)
    argv = ["--limit", "3", "--systems", "small,spec:reasoning", "--out", str(tmp_path), "--no-progress"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "multiarith: 3 problems, 2 systems; best accuracy 100.0%" in out
    assert "| `spec:reasoning` | 100.0% (3/3)" in out
    meta = json.loads((tmp_path / "results.json").read_text())["meta"]
    assert meta["extra"]["command"].startswith("spec-graph eval --limit 3")
    assert cli.main(["--limit", "0", "--out", str(tmp_path)]) == 2
    assert "limit must be >= 1" in capsys.readouterr().err


def test_cli_add_parser_registers_eval() -> None:
    import argparse

    from spec_graph.cli import evaluate as cli

    parser = argparse.ArgumentParser(prog="spec-graph")
    sub = parser.add_subparsers(dest="command")
    cli.add_parser(sub)
    args = parser.parse_args(["eval", "--dataset", "gsm8k", "--limit", "5", "--systems", "small,specdec"])
    assert args.func is cli.run
    cfg = cli.config_from_args(args)
    assert (cfg.dataset, cfg.limit, cfg.systems, cfg.max_new_tokens, cfg.temperature) == (
        "gsm8k", 5, ("small", "specdec"), 256, 0.0,
    )  # fmt: skip
    assert cfg.out == str(Path("runs") / "eval-gsm8k")
    assert "--max-new-tokens 256" in cfg.extra["command"]


def test_gap_closed_and_the_share_table(tmp_path: Path) -> None:
    rows = [
        {"system": "small", "accuracy": 0.1, "target_share": 0.0},
        {"system": "target", "accuracy": 0.7, "target_share": 1.0},
        {"system": "spec:uncertainty:0.4", "accuracy": 0.45, "target_share": 0.4},
        {"system": "spec:reasoning", "accuracy": 0.1, "target_share": 0.05},
    ]
    closed = gap_closed(rows)
    assert closed["spec:uncertainty:0.4"] == pytest.approx(0.35 / 0.6)
    assert closed["small"] == 0 and closed["target"] == 1
    table = share_markdown(rows)
    assert "| `spec:uncertainty:0.4` | 40.0% | 45.0% | 58% | yes |" in table
    assert "| `spec:reasoning` | 5.0% | 10.0% | 0% |  |" in table
    assert gap_closed(rows[2:]) == {} and share_markdown(rows[2:]) == ""
    paths = plot_accuracy_vs_target_share(rows, tmp_path / "share")
    assert [p.suffix for p in paths] == [".png", ".svg"] and all(p.stat().st_size > 1000 for p in paths)


def test_merge_runs_made_in_parallel(tmp_path: Path, problems: list[Any]) -> None:
    gold = {p.id: p.answer for p in problems}
    for name, right in (("small", {problems[0].id}), ("target", set(gold))):
        cfg = EvalConfig(dataset="multiarith", limit=6, out=str(tmp_path / name), progress=False, plots=False)
        evaluate(cfg, systems=[FakeSystem(name, gold, right=right)])
    results = merge_runs([tmp_path / "small", tmp_path / "target"], tmp_path / "both", plots=False)
    assert [r["system"] for r in results["systems"]] == ["small", "target"]
    assert [r["accuracy"] for r in results["systems"]] == [pytest.approx(1 / 6), 1.0]
    assert len((tmp_path / "both" / "records.jsonl").read_text().splitlines()) == 12
    assert "Accuracy against the target's share" in (tmp_path / "both" / "results.md").read_text()
    with pytest.raises(ValueError, match="in both"):
        merge_runs([tmp_path / "small", tmp_path / "small"], tmp_path / "x")
    other = EvalConfig(
        dataset="multiarith", limit=6, out=str(tmp_path / "other"), progress=False, max_new_tokens=9, plots=False
    )
    evaluate(other, systems=[FakeSystem("spec", gold, right=set())])
    with pytest.raises(ValueError, match=r"other settings.*max_new_tokens"):
        merge_runs([tmp_path / "small", tmp_path / "other"], tmp_path / "x")
    with pytest.raises(ValueError, match="not a run folder"):
        merge_runs([tmp_path / "nowhere"], tmp_path / "x")


def test_merge_runs_made_in_slices(tmp_path: Path, problems: list[Any]) -> None:
    gold = {p.id: p.answer for p in problems}
    for offset, limit in ((0, 4), (4, 2)):
        cfg = EvalConfig(dataset="multiarith", offset=offset, limit=limit, out=str(tmp_path / f"s{offset}"),
                         progress=False, plots=False)  # fmt: skip
        evaluate(cfg, systems=[FakeSystem("specdec", gold, right={problems[0].id, problems[5].id})])
    cfg = EvalConfig(dataset="multiarith", limit=6, out=str(tmp_path / "small"), progress=False, plots=False)
    evaluate(cfg, systems=[FakeSystem("small", gold, right=set())])
    results = merge_runs([tmp_path / "s0", tmp_path / "small", tmp_path / "s4"], tmp_path / "all", plots=False)
    assert [(r["system"], r["accuracy"]) for r in results["systems"]] == [
        ("small", 0.0),
        ("specdec", pytest.approx(2 / 6)),
    ]
    meta = json.loads((tmp_path / "all" / "run.json").read_text())
    assert (meta["systems"], meta["offset"], meta["limit"], meta["problems"]) == (["small", "specdec"], 0, 6, 6)
    assert [(m["offset"], m["limit"]) for m in meta["extra"]["merged_from"]] == [(0, 4), (0, 6), (4, 2)]
    with pytest.warns(UserWarning, match=r"different problems \(small: 6, specdec: 4\)"):
        merge_runs([tmp_path / "small", tmp_path / "s0"], tmp_path / "part", plots=False)
    with pytest.raises(ValueError, match=r"'specdec', problem .* is in both"):
        merge_runs([tmp_path / "s0", tmp_path / "all"], tmp_path / "x", plots=False)


def test_eval_config_flags_reach_the_spec_systems(tmp_path: Path) -> None:
    from spec_graph.cli import evaluate as cli
    from spec_graph.eval.systems import make_system

    parser = cli.build_parser()
    args = parser.parse_args(["--probe-tokens", "12", "--set", "keyword_matching=inflected", "--out", str(tmp_path)])
    config = cli.config_from_args(args)
    assert config.spec_overrides == {"keyword_matching": "inflected", "probe_tokens": 12}
    assert "--set probe_tokens=12" in config.extra["command"]
    small, target = ScriptedGenerator.from_document("a" + EOS), ScriptedGenerator.from_document("b" + EOS)
    system = make_system("spec:uncertainty:0.5", small, target, config.spec_overrides)
    assert isinstance(system, SpecThinkingSystem)
    cfg = system.thinker.config
    assert (cfg.probe_tokens, cfg.keyword_matching) == (12, "inflected")
    assert cfg.policy.kind == "uncertainty"  # the system's policy wins over an override
    with pytest.raises(ValueError, match="probe_tokens") as info:
        cli.config_from_args(parser.parse_args(["--set", "probe_tokens=0", "--out", str(tmp_path)]))
    assert "\n" not in str(info.value)
