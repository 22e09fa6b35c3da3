"""spec-graph: Speculative Thinking as a LangGraph state graph.

A small reasoning model writes; at each step boundary its next words are classified, and on a
reflection or verification cue a larger target model writes that stretch instead. When the
target writes is a pluggable trigger policy (:mod:`spec_graph.policies`).
"""

from spec_graph._version import __version__
from spec_graph.chat_model import SpeculativeThinkingChatModel
from spec_graph.classification import StepCategory, StepClassification, classify_step
from spec_graph.config import PRESETS, SpeculativeThinkingConfig, resolve_config
from spec_graph.errors import RunCancelledError, SpeculativeThinkingError
from spec_graph.generators import Generator, GeneratorSession, ScriptedGenerator
from spec_graph.graph import SpecContext, build_graph
from spec_graph.langgraph_node import chat_model_node, subgraph_node
from spec_graph.policies import (
    Action,
    AlwaysPolicy,
    KeywordPolicy,
    NeverPolicy,
    Policy,
    RegexPolicy,
    Step,
    TriggerPolicy,
    UncertaintyPolicy,
)
from spec_graph.thinker import SpecResult, SpeculativeThinker, split_reasoning
from spec_graph.viz import render_trace, save_trace

__all__ = [
    "PRESETS",
    "Action",
    "AlwaysPolicy",
    "Generator",
    "GeneratorSession",
    "HFGenerator",
    "KeywordPolicy",
    "NeverPolicy",
    "Policy",
    "RegexPolicy",
    "RunCancelledError",
    "ScriptedGenerator",
    "SpecContext",
    "SpecResult",
    "SpeculativeThinker",
    "SpeculativeThinkingChatModel",
    "SpeculativeThinkingConfig",
    "SpeculativeThinkingError",
    "Step",
    "StepCategory",
    "StepClassification",
    "TriggerPolicy",
    "UncertaintyPolicy",
    "__version__",
    "build_graph",
    "chat_model_node",
    "classify_step",
    "render_trace",
    "resolve_config",
    "save_trace",
    "split_reasoning",
    "subgraph_node",
]


def __getattr__(name: str) -> object:
    if name == "HFGenerator":
        from spec_graph.generators.hf import HFGenerator

        return HFGenerator
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
