"""``spec-graph run`` and ``eval``: every option reaches the config; a bad value is one line and exit status 2.

No model loads in these tests: every check happens before (the generator class is replaced by
one that fails the test if it is ever built).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from spec_graph.cli import build_parser, main
from spec_graph.cli.run import PAIR_DEFAULTS, build_config
from spec_graph.config import PRESETS
from spec_graph.models import DEFAULT_PAIR, PAIRS
from spec_graph.policy_config import UncertaintyPolicyConfig, VerifyPolicyConfig

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(autouse=True)
def _no_model_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_a: Any, **_k: Any) -> None:
        raise AssertionError("a model was about to load")

    monkeypatch.setattr("spec_graph.generators.hf.HFGenerator", refuse)


def fail(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``spec-graph *argv``; check exit status 2 and one line on stderr, no traceback; return it."""
    try:
        status = main(argv)
    except SystemExit as exc:
        status = exc.code  # type: ignore[assignment]
    assert status == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err and captured.out == ""
    return lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # the cases of issue 15
        (["--preset", "bogus"], "argument --preset: unknown preset 'bogus'; use non_reasoning, reasoning or a .yml"),
        (["--temperature", "-1"], "argument --temperature: Input should be greater than or equal to 0, got '-1'"),
        (["--device", "tpu"], "argument --device: unknown device 'tpu'; use cpu, cuda, cuda:<n>, mps"),
        (["--small", "bogus-7b"], "argument --small: unknown model 'bogus-7b'; use an embedded model (gemma-3-270m"),
        (["--target", "qwen2.5-coder-1.5b"], "did you mean 'qwen2.5-coder-1.5b-instruct'?"),
        (["--small", "./no/such/folder"], "argument --small: no such model folder './no/such/folder'"),
        (["--preset", "/no/such/config.yml"], "argument --preset: config file '/no/such/config.yml' does not exist"),
        (["--policy", "verify:1.5"], "argument --policy: threshold: Input should be less than or equal to 1, got 1.5"),
        (
            ["--policy", "bogus"],
            "argument --policy: unknown policy 'bogus': use keyword, never, always, uncertainty:<p>",
        ),
        # more of the same
        (
            ["--policy", "uncertainty:2"],
            "argument --policy: a top1 threshold is a probability strictly between 0 and 1",
        ),
        (["--policy", "uncertainty:high"], "expected a number after ':', got 'high'"),
        (["--max-new-tokens", "0"], "argument --max-new-tokens: Input should be greater than or equal to 1, got '0'"),
        (["--top-p", "1.5"], "argument --top-p: Input should be less than or equal to 1, got '1.5'"),
        (["--top-k", "-1"], "argument --top-k: Input should be greater than or equal to 0"),
        (["--seed", "x"], "argument --seed: Input should be a valid integer"),
        (["--probe-tokens", "0"], "argument --probe-tokens: Input should be greater than or equal to 1, got '0'"),
        (["--verify-tokens", "many"], "argument --verify-tokens: Input should be a valid integer"),
        (["--recap-tokens", "-3"], "argument --recap-tokens: Input should be greater than or equal to 1"),
        (["--set", "novalue"], "argument --set: expected KEY=VALUE, got 'novalue'"),
        (["--pair", "huge"], "argument --pair: invalid choice: 'huge'"),
        (["--dtype", "int3"], "argument --dtype: invalid choice: 'int3'"),
        (["--quantize", "int4"], "argument --quantize: invalid choice: 'int4'"),
    ],
)
def test_bad_option_is_one_line_naming_it_and_exit_status_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    line = fail(["run", *args, "What is 2 + 2?"], capsys)
    assert line.startswith("spec-graph run: error: ") and message in line, line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--policy-arg", "stretch_tokens=0"], "argument --policy-arg: the uncertainty policy: stretch_tokens: Input"),
        (["--policy-arg", "strech_tokens=4"], "strech_tokens: unknown setting (did you mean 'stretch_tokens'?)"),
        (["--policy", "verify:0.3", "--policy-arg", "gate=1"], "the verify policy: gate: Input should be less than 1"),
        (["--set", "probe_tokn=3"], "probe_tokn: unknown setting (did you mean 'probe_tokens'?)"),
        (["--set", "keyword_matching=stems"], "keyword_matching: Input should be 'word', 'inflected' or 'substring'"),
        (["--recap-tokens", "500"], "recap_tokens_cap (200) must be >= recap_tokens (500)"),
        (["--set", "policy=verify:2"], "policy.threshold: Input should be less than or equal to 1, got 2"),
    ],
)
def test_bad_combination_is_one_line_and_exit_status_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    line = fail(["run", *args, "q"], capsys)
    assert line.startswith("spec-graph run: error: ") and message in line, line


def test_bad_value_in_a_yaml_file_is_one_line_naming_file_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "mine.yml"
    path.write_text("probe_tokens: 0\n", encoding="utf-8")
    line = fail(["run", "--preset", str(path), "q"], capsys)
    assert line == f"spec-graph run: error: {path}: probe_tokens: Input should be greater than or equal to 1, got 0"
    path.write_text("temperature: [1\n", encoding="utf-8")
    assert "not valid YAML (line 2)" in fail(["run", "--preset", str(path), "q"], capsys)


def test_a_device_this_machine_lacks_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    if torch.cuda.is_available():
        line = fail(["run", "--device", f"cuda:{torch.cuda.device_count()}", "q"], capsys)
        assert "does not exist; this machine has" in line
    else:
        line = fail(["run", "--device", "cuda", "q"], capsys)
        assert line.startswith("spec-graph run: error: argument --device: cuda is not available on this machine")


def config_of(*args: str) -> Any:
    return build_config(build_parser().parse_args(["run", *args, "q"]))


def test_flags_reach_the_config() -> None:
    cfg = config_of(
        "--preset", "non_reasoning", "--policy", "verify:0.3:0.5", "--policy-arg", "step_tokens=40",
        "--probe-tokens", "12", "--verify-tokens", "60", "--recap-tokens", "100",
        "--set", "keyword_matching=inflected", "--set", "negative_threshold=5", "--set", "opening=false",
        "--max-new-tokens", "99", "--temperature", "0.7", "--top-p", "0.9", "--top-k", "5", "--seed", "3",
    )  # fmt: skip
    assert cfg.policy == VerifyPolicyConfig(threshold=0.3, gate=0.5, step_tokens=40)
    assert (cfg.probe_tokens, cfg.verify_tokens, cfg.recap_tokens) == (12, 60, 100)
    assert (cfg.keyword_matching, cfg.negative_threshold, cfg.opening, cfg.not_reasoning) == (
        "inflected", 5, False, True
    )  # fmt: skip
    assert (cfg.max_new_tokens, cfg.temperature, cfg.top_p, cfg.top_k, cfg.seed) == (99, 0.7, 0.9, 5, 3)


def test_pair_defaults_and_what_overrides_them() -> None:
    assert config_of().policy == UncertaintyPolicyConfig(threshold=0.5)  # the qwen pair's best measured
    assert config_of("--pair", "tiny") == PRESETS["non_reasoning"].model_copy(
        update={"max_new_tokens": 256, "temperature": 0.0, "top_p": 0.95, "top_k": 50}
    )
    assert config_of("--preset", "reasoning").policy.kind == "keyword"  # a preset brings its own policy
    assert config_of("--set", "policy=loop").policy.kind == "loop"
    assert config_of("--set", "policy=loop", "--policy", "never").policy.kind == "never"  # --policy wins
    stretched = config_of("--policy-arg", "stretch_tokens=16", "--policy-arg", "scope=probe").policy
    assert (stretched.threshold, stretched.stretch_tokens, stretched.scope) == (0.5, 16, "probe")


def test_pairs_and_their_presets() -> None:
    args = build_parser().parse_args(["run", "q"])
    assert args.pair == DEFAULT_PAIR == "qwen"
    assert PAIRS["qwen"] == ("qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct")
    assert PAIRS["tiny"] == ("smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct")
    assert set(PAIR_DEFAULTS) == set(PAIRS)
    tiny = build_parser().parse_args(["run", "--pair", "tiny", "--policy", "uncertainty:0.5", "q"])
    assert tiny.pair == "tiny" and tiny.policy == "uncertainty:0.5"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--temperature", "-1"], "argument --temperature: Input should be greater than or equal to 0, got '-1'"),
        (["--top-p", "0"], "argument --top-p: Input should be greater than 0"),
        (["--systems", "small,bogus"], "argument --systems: unknown system 'bogus'; choose from small, target"),
        (["--systems", "spec:verify:1.5"], "system 'spec:verify:1.5': threshold: Input should be less than or equal"),
        (["--systems", "spec:fastest"], "system 'spec:fastest': unknown preset or policy (presets: non_reasoning"),
        (["--systems", "spec:/no/such.yml"], "system 'spec:/no/such.yml': config file '/no/such.yml' does not exist"),
        (["--dataset", "nope"], "argument --dataset: unknown dataset 'nope'; use aime24, amc23, gsm8k"),
        (["--small", "bogus"], "argument --small: unknown model 'bogus'"),
    ],
)
def test_eval_bad_option_is_one_line_and_exit_status_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    line = fail(["eval", *args], capsys)
    assert line.startswith("spec-graph eval: error: ") and message in line, line


def _cli_summary(command: str | None = None) -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Command line") :]
    block = section[: section.index("```", section.index("```") + 3)]
    if command is None:
        return block
    start = block.index(f"spec-graph {command}")
    end = block.find("spec-graph ", start + 1)
    return block[start : end if end >= 0 else None]


def test_the_readme_summary_names_every_option_of_every_subcommand() -> None:
    summary = _cli_summary()
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, subparser in sub.choices.items():  # type: ignore[union-attr]
        assert f"spec-graph {name}" in summary, name
        own = _cli_summary(name)  # the options of this subcommand's own lines
        for action in subparser._actions:
            for option in action.option_strings:
                if option.startswith("--") and option != "--help":
                    assert re.search(rf"\[{re.escape(option)}(?=[\s\]])", own), (
                        f"README misses spec-graph {name} {option}"
                    )


def test_sampling_flags_not_given_keep_the_files_values(tmp_path: Path) -> None:
    path = tmp_path / "mine.yml"
    path.write_text("top_p: 0.8\ntop_k: 7\nseed: 11\ntemperature: 0.9\n", encoding="utf-8")
    cfg = config_of("--preset", str(path))
    assert (cfg.top_p, cfg.top_k, cfg.seed) == (0.8, 7, 11)
    assert cfg.temperature == 0  # the command line's default: greedy
    cfg = config_of("--preset", str(path), "--top-k", "0", "--seed", "2", "--temperature", "0.9")
    assert (cfg.top_p, cfg.top_k, cfg.seed, cfg.temperature) == (0.8, 0, 2, 0.9)
