r"""Run systems over a dataset, one JSONL record per (system, problem, sample), resumable.

Records are appended (and flushed) as each answer is graded, so a killed run loses at most the
answer in progress; running the same command again skips the keys already recorded and ends with
exactly one record per key. A damaged last line (a kill in the middle of a write) is dropped.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spec_graph.eval.datasets import Problem
from spec_graph.eval.grading import extract_answer, is_correct
from spec_graph.eval.systems import Generation, SampleOptions, System

__all__ = ["PAPER_PROMPT", "RecordStore", "build_messages", "item_seed", "make_record", "run_systems"]

PAPER_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}. {problem}"
"""The paper's prompt (its MATH500 task template without the ``<think>`` opener of R1 models)."""

Key = tuple[str, str, int]
"""(system, problem id, sample)."""


def build_messages(problem: str, template: str = PAPER_PROMPT) -> list[dict[str, str]]:
    """The user turn: ``template`` with ``{problem}`` replaced (no other braces are touched)."""
    if "{problem}" not in template:
        msg = f"the prompt template must contain '{{problem}}'; got {template!r}"
        raise ValueError(msg)
    return [{"role": "user", "content": template.replace("{problem}", problem)}]


def item_seed(seed: int, item_id: str, sample: int) -> int:
    """A seed for one answer, from the run's seed, the problem and the sample number (order-free)."""
    return zlib.crc32(f"{seed}:{item_id}:{sample}".encode()) & 0x7FFFFFFF


def record_key(record: dict[str, Any]) -> Key:
    """The (system, id, sample) key of a record."""
    return (str(record["system"]), str(record["id"]), int(record["sample"]))


class RecordStore:
    """The records file: loads what is there (repairing a cut last line), appends new records."""

    def __init__(self, path: str | Path) -> None:
        """Open ``path`` (created on first append); read existing records."""
        self.path = Path(path)
        self.records: dict[Key, dict[str, Any]] = {}
        self.repaired = 0
        self._load()

    def _load(self) -> None:
        if not self.path.is_file():
            return
        raw = self.path.read_text(encoding="utf-8")
        bad = 0
        for line in raw.splitlines():
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                key = record_key(rec)
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                bad += 1
                continue
            if key in self.records:
                bad += 1  # duplicate: keep the first
                continue
            self.records[key] = rec
        if bad or (raw and not raw.endswith("\n")):
            self.repaired = bad
            self._rewrite()

    def _rewrite(self) -> None:
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            for rec in self.records.values():
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        os.replace(tmp, self.path)

    def __contains__(self, key: object) -> bool:
        """Whether a key is recorded."""
        return key in self.records

    def append(self, record: dict[str, Any]) -> None:
        """Write one record (one line, flushed to disk) and remember it."""
        key = record_key(record)
        if key in self.records:
            msg = f"record {key} is already in {self.path}"
            raise ValueError(msg)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.records[key] = record


def make_record(
    system: str, dataset: str, problem: Problem, sample: int, seed: int | None, gen: Generation, wall: float
) -> dict[str, Any]:
    """The JSON record of one graded answer."""
    tokens = gen.num_output_tokens
    return {
        "system": system,
        "dataset": dataset,
        "id": problem.id,
        "index": problem.index,
        "sample": sample,
        "seed": seed,
        "gold": problem.answer,
        "extracted": extract_answer(gen.text),
        "correct": is_correct(gen.text, problem.answer),
        "finish_reason": gen.finish_reason,
        "output_tokens": tokens,
        "output_tokens_by_model": dict(gen.output_tokens),
        "target_share": gen.output_tokens.get("target", 0) / tokens if tokens else 0.0,
        "wall_seconds": round(wall, 4),
        "tokens_per_second": tokens / wall if wall > 0 else 0.0,
        "interventions": len(gen.interventions),
        "intervention_details": gen.interventions,
        "draft_tokens": dict(gen.draft_tokens),
        "text": gen.text,
    }


@dataclass
class _Live:
    """Running totals of one system for the progress bar."""

    n: int = 0
    correct: int = 0
    tokens: int = 0
    seconds: float = 0.0

    def add(self, rec: dict[str, Any]) -> None:
        self.n += 1
        self.correct += bool(rec["correct"])
        self.tokens += int(rec["output_tokens"])
        self.seconds += float(rec["wall_seconds"])

    def postfix(self) -> dict[str, str]:
        acc = self.correct / self.n if self.n else 0.0
        speed = self.tokens / self.seconds if self.seconds else 0.0
        return {"acc": f"{acc:.1%} ({self.correct}/{self.n})", "tok/s": f"{speed:.1f}"}


def run_systems(
    systems: Sequence[System],
    problems: Sequence[Problem],
    store: RecordStore,
    *,
    options: SampleOptions,
    dataset: str,
    samples: int = 1,
    seed: int = 0,
    template: str = PAPER_PROMPT,
    progress: bool = True,
    interleave: bool = False,
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Answer every problem ``samples`` times with every system; return the selection's records.

    Keys already in ``store`` are skipped (resume). By default systems run one after the other,
    each over all problems; with ``interleave`` every problem is answered by all systems before
    the next one, so a machine whose load changes during the run slows all systems alike. One
    progress bar per system shows its live accuracy and tokens/s.
    """
    from tqdm.auto import tqdm

    if samples < 1:
        msg = f"samples must be >= 1, got {samples}"
        raise ValueError(msg)
    if samples > 1 and options.temperature == 0:
        warnings.warn("several samples with temperature 0 (greedy) are all the same answer", UserWarning, stacklevel=2)
    units = [(p, s) for p in problems for s in range(samples)]
    selection = [(system.name, p.id, s) for system in systems for p, s in units]
    lives = {system.name: _Live() for system in systems}
    for key in selection:
        if key in store:
            lives[key[0]].add(store.records[key])
    todo = [(system, p, s) for system in systems for p, s in units if (system.name, p.id, s) not in store]
    if interleave:
        order = {(p.id, s): i for i, (p, s) in enumerate(units)}
        todo.sort(key=lambda job: order[(job[1].id, job[2])])  # stable: systems keep their order
    bars: dict[str, Any] = {}
    prepared: set[str] = set()
    try:
        for i, system in enumerate(systems):
            bar = tqdm(
                total=len(units), initial=lives[system.name].n, desc=system.name, unit="ans", file=sys.stderr,
                disable=not progress, dynamic_ncols=True, position=i if interleave else None, leave=True,
            )  # fmt: skip
            bar.set_postfix(lives[system.name].postfix())
            bars[system.name] = bar
            if not interleave:
                _run_jobs([j for j in todo if j[0] is system], store, options, dataset, seed, template, lives,
                          bars, prepared, on_record)  # fmt: skip
                bar.close()
        if interleave:
            _run_jobs(todo, store, options, dataset, seed, template, lives, bars, prepared, on_record)
    finally:
        for bar in bars.values():
            bar.close()
    return [store.records[k] for k in selection]


def _run_jobs(
    jobs: Sequence[tuple[System, Problem, int]],
    store: RecordStore,
    options: SampleOptions,
    dataset: str,
    seed: int,
    template: str,
    lives: dict[str, _Live],
    bars: dict[str, Any],
    prepared: set[str],
    on_record: Callable[[dict[str, Any]], None] | None,
) -> None:
    for system, problem, sample in jobs:
        if system.name not in prepared:  # load weights before the clock starts
            system.prepare()
            prepared.add(system.name)
        sample_seed = item_seed(seed, problem.id, sample)
        opts = dataclasses.replace(options, seed=sample_seed)
        messages = build_messages(problem.problem, template)
        t0 = time.perf_counter()
        gen = system.generate(messages, opts)
        wall = time.perf_counter() - t0
        rec = make_record(system.name, dataset, problem, sample, sample_seed, gen, wall)
        store.append(rec)
        lives[system.name].add(rec)
        bars[system.name].update(1)
        bars[system.name].set_postfix(lives[system.name].postfix())
        if on_record is not None:
            on_record(rec)
