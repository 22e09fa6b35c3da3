"""The evaluation in one call: :class:`EvalConfig` -> records, table and plots.

Example:
    >>> from spec_graph.eval import EvalConfig, evaluate  # doctest: +SKIP
    >>> cfg = EvalConfig(dataset="multiarith", limit=10, systems=("small", "target", "spec:reasoning"),
    ...                  out="runs/multiarith10")  # doctest: +SKIP
    >>> results = evaluate(cfg)  # doctest: +SKIP
    >>> [(r["system"], r["accuracy"]) for r in results["systems"]]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from spec_graph.eval.datasets import load_dataset
from spec_graph.eval.runner import PAPER_PROMPT, Key, RecordStore, run_systems
from spec_graph.eval.systems import SampleOptions, System, make_system
from spec_graph.generators.precision import check_dtype, check_quantization

__all__ = ["DEFAULT_SYSTEMS", "RESUME_FIELDS", "EvalConfig", "evaluate", "merge_runs"]

DEFAULT_SYSTEMS = ("small", "target", "spec:reasoning", "spec:non_reasoning", "specdec")
RESUME_FIELDS = (
    "dataset", "small", "target", "resolved_dtype", "quantization", "seed", "max_new_tokens", "temperature",
    "top_p", "top_k", "prompt_template", "spec_overrides",
)  # fmt: skip
"""Settings that must match for a run to resume into an existing output folder."""
_LEGACY: dict[str, Any] = {"resolved_dtype": "float32", "quantization": "none", "spec_overrides": {}}
"""What runs written before a setting existed used (every published run was on a CPU, in float32)."""


def _setting(meta: dict[str, Any], key: str) -> Any:
    """A resume/merge setting of ``meta``, with the value older runs used when it is missing."""
    return meta.get(key, _LEGACY.get(key))


@dataclass(frozen=True)
class EvalConfig:
    """What to evaluate and how; validated on creation."""

    dataset: str = "multiarith"
    """A packaged set name or a JSONL path."""
    systems: tuple[str, ...] = DEFAULT_SYSTEMS
    small: str = "smollm2-135m-instruct"
    target: str = "qwen2.5-coder-0.5b-instruct"
    dtype: str = "auto"
    """``auto``, ``float32``, ``bfloat16`` or ``float16`` for both models (:mod:`spec_graph.generators.precision`)."""
    quantization: str = "none"
    """``none`` or ``int8`` (int8 weights) for both models."""
    limit: int | None = None
    offset: int = 0
    samples: int = 1
    seed: int = 0
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 0.95
    top_k: int = 50
    prompt_template: str = PAPER_PROMPT
    spec_overrides: dict[str, Any] = field(default_factory=dict)
    """Config fields for every ``spec:`` system (e.g. ``{"probe_tokens": 12, "verify_tokens": 60}``)."""
    out: str | None = None
    """Output folder (records, results, plots); None: a temporary folder, removed afterwards."""
    progress: bool = True
    interleave: bool = False
    """Answer each problem with all systems before the next (fairer speeds on a machine whose load varies)."""
    plots: bool = True
    overwrite: bool = False
    """Start afresh, deleting the records in ``out`` (else a run resumes)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form notes copied into ``results.json`` (e.g. the command line)."""

    def __post_init__(self) -> None:
        """Check ranges and names."""
        problems = []
        if not self.systems:
            problems.append("systems must not be empty")
        if len(set(self.systems)) != len(self.systems):
            problems.append(f"systems are repeated: {list(self.systems)}")
        if self.limit is not None and self.limit < 1:
            problems.append(f"limit must be >= 1, got {self.limit}")
        if self.offset < 0:
            problems.append(f"offset must be >= 0, got {self.offset}")
        if self.samples < 1:
            problems.append(f"samples must be >= 1, got {self.samples}")
        if self.max_new_tokens < 1:
            problems.append(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            problems.append(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            problems.append(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            problems.append(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if "{problem}" not in self.prompt_template:
            problems.append("prompt_template must contain '{problem}'")
        for check, value in ((check_dtype, self.dtype), (check_quantization, self.quantization)):
            try:
                check(value)
            except ValueError as e:
                problems.append(str(e))
        if self.spec_overrides:
            from spec_graph.config import resolve_config
            from spec_graph.config_errors import one_line

            try:
                resolve_config(None, **self.spec_overrides)
            except ValueError as e:
                problems.append(f"spec settings: {one_line(e)}")
        if problems:
            raise ValueError("invalid evaluation settings: " + "; ".join(problems))

    @property
    def options(self) -> SampleOptions:
        """The sampling options every system uses."""
        return SampleOptions(self.max_new_tokens, self.temperature, self.top_p, self.top_k, self.seed)

    def meta(self, problems: int) -> dict[str, Any]:
        """The settings as written into ``run.json`` and ``results.json``."""
        import torch
        import transformers

        from spec_graph._version import __version__

        data = asdict(self)
        data.pop("progress")
        data.pop("overwrite")
        data["systems"] = list(self.systems)
        data["problems"] = problems
        data["resolved_dtype"] = _resolved_dtype(self.dtype)
        data["versions"] = {
            "spec_graph": __version__,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
        }
        return data


def _resolved_dtype(dtype: str) -> str:
    """The dtype ``dtype`` means on the default device (what ``auto`` became here)."""
    from spec_graph.generators.hf import default_device
    from spec_graph.generators.precision import resolve_dtype

    return str(resolve_dtype(dtype, default_device())).removeprefix("torch.")


def _check_resume(out: Path, meta: dict[str, Any], overwrite: bool) -> None:
    run_file = out / "run.json"
    if overwrite:
        for name in ("records.jsonl", "run.json"):
            (out / name).unlink(missing_ok=True)
        return
    if not run_file.is_file():
        return
    old = json.loads(run_file.read_text(encoding="utf-8"))
    diffs = [f"{k}: {_setting(old, k)!r} -> {meta.get(k)!r}" for k in RESUME_FIELDS if _setting(old, k) != meta.get(k)]
    if diffs:
        msg = (
            f"{out} holds records made with other settings ({'; '.join(diffs)}); "
            "use another output folder, or overwrite=True (--overwrite) to start afresh"
        )
        raise ValueError(msg)


def evaluate(config: EvalConfig, *, systems: Sequence[System] | None = None) -> dict[str, Any]:
    """Run ``config`` (resuming into ``config.out``) and write the report; return ``results.json``'s dict.

    Args:
        config: the settings.
        systems: ready-made systems to use instead of building ``config.systems`` from
            ``config.small``/``config.target`` (e.g. around custom generators).
    """
    from spec_graph.eval.report import write_report
    from spec_graph.generators import resolve

    problems = load_dataset(config.dataset, limit=config.limit, offset=config.offset)
    if systems is None:
        load: dict[str, Any] = {"dtype": config.dtype, "quantization": config.quantization}
        small, target = (
            resolve.resolve_generator(config.small, **load),
            resolve.resolve_generator(config.target, **load),
        )
        systems = [make_system(name, small, target, config.spec_overrides) for name in config.systems]
    names = [s.name for s in systems]
    if len(set(names)) != len(names):
        msg = f"system names are repeated: {names}"
        raise ValueError(msg)
    meta = config.meta(len(problems))
    meta["systems"] = names
    tmp = None if config.out else tempfile.mkdtemp(prefix="spec-graph-eval-")
    out = Path(config.out or str(tmp))
    try:
        out.mkdir(parents=True, exist_ok=True)
        _check_resume(out, meta, config.overwrite)
        (out / "run.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        store = RecordStore(out / "records.jsonl")
        records = run_systems(
            systems,
            problems,
            store,
            options=config.options,
            dataset=config.dataset,
            samples=config.samples,
            seed=config.seed,
            template=config.prompt_template,
            progress=config.progress,
            interleave=config.interleave,
        )
        results = write_report(out, records, meta, names, plots=config.plots)
        results["out"] = None if tmp else str(out)
        return results
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


MERGE_FIELDS = (*RESUME_FIELDS, "samples")
"""Settings that must match for run folders to be merged into one table (the slice of problems may differ)."""


def merge_runs(sources: Sequence[str | Path], out: str | Path, *, plots: bool = True) -> dict[str, Any]:
    """Merge the records of runs made with the same settings into ``out``.

    The runs may split the work by system (one process per system), by slice of problems
    (``offset``/``limit``), or both; every (system, problem, sample) must come from one run only.
    Writes ``run.json`` (the first run's settings with the union of systems and problems, and each
    source's command and slice under ``extra.merged_from``), ``records.jsonl`` and the report
    (default systems in a run's order, others as given); returns ``results.json``'s dict. Warns
    when the systems end up covering different problems.

    Raises:
        ValueError: no sources, a folder without ``run.json``, settings that differ, or an
            answer recorded in two sources.
    """
    from spec_graph.eval.report import write_report

    if not sources:
        msg = "nothing to merge: give at least one run folder"
        raise ValueError(msg)
    metas: list[dict[str, Any]] = []
    records: dict[Key, dict[str, Any]] = {}
    owner: dict[Key, Path] = {}
    for src in map(Path, sources):
        if not (src / "run.json").is_file():
            msg = f"{src} is not a run folder (no run.json)"
            raise ValueError(msg)
        meta = json.loads((src / "run.json").read_text(encoding="utf-8"))
        if metas:
            diffs = [
                f"{k}: {_setting(metas[0], k)!r} vs {_setting(meta, k)!r}"
                for k in MERGE_FIELDS
                if _setting(metas[0], k) != _setting(meta, k)
            ]
            if diffs:
                msg = f"{src} was made with other settings than {sources[0]} ({'; '.join(diffs)})"
                raise ValueError(msg)
        for key, record in RecordStore(src / "records.jsonl").records.items():
            if key in owner:
                system, item, sample = key
                msg = f"system {system!r}, problem {item!r}, sample {sample} is in both {owner[key]} and {src}"
                raise ValueError(msg)
            owner[key] = src
            records[key] = record
        metas.append(meta)
    systems = list(dict.fromkeys(name for meta in metas for name in meta["systems"]))
    order = {name: i for i, name in enumerate(DEFAULT_SYSTEMS)}
    systems.sort(key=lambda name: order.get(name, len(order)))  # a run's order; others as given
    covered = {name: {item for (system, item, _) in records if system == name} for name in systems}
    if len({frozenset(items) for items in covered.values()}) > 1:
        counts = ", ".join(f"{name}: {len(items)}" for name, items in covered.items())
        warnings.warn(f"the merged systems answered different problems ({counts})", stacklevel=2)
    merged = dict(metas[0])
    merged["systems"] = systems
    merged["offset"] = min(int(m.get("offset", 0)) for m in metas)
    merged["problems"] = len({item for (_, item, _) in records})
    if len({(m.get("offset"), m.get("limit")) for m in metas}) > 1:
        merged["limit"] = merged["problems"]
    merged["out"] = str(out)
    merged["extra"] = {
        "merged_from": [
            {
                "systems": m["systems"],
                "offset": m.get("offset"),
                "limit": m.get("limit"),
                "command": m.get("extra", {}).get("command"),
                "interleave": m.get("interleave"),
            }
            for m in metas
        ]
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "run.json").write_text(json.dumps(merged, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "records.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records.values()), encoding="utf-8"
    )
    results = write_report(out, list(records.values()), merged, merged["systems"], plots=plots)
    results["out"] = str(out)
    return results
