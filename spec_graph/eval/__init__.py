"""Evaluation harness: datasets, grading, systems to compare, a resumable runner and reports.

``spec-graph eval`` is its command line; :func:`evaluate` its Python entry point.
"""

from spec_graph.eval.datasets import DATASETS, Problem, load_dataset
from spec_graph.eval.grading import extract_answer, is_correct
from spec_graph.eval.harness import DEFAULT_SYSTEMS, EvalConfig, evaluate, merge_runs
from spec_graph.eval.runner import PAPER_PROMPT, RecordStore, build_messages, run_systems
from spec_graph.eval.systems import Generation, SampleOptions, System, make_system

__all__ = [
    "DATASETS",
    "DEFAULT_SYSTEMS",
    "PAPER_PROMPT",
    "EvalConfig",
    "Generation",
    "Problem",
    "RecordStore",
    "SampleOptions",
    "System",
    "build_messages",
    "evaluate",
    "extract_answer",
    "is_correct",
    "load_dataset",
    "make_system",
    "merge_runs",
    "run_systems",
]
