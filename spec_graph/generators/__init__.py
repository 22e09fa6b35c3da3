"""Models behind the graph: the protocol, local transformers, OpenAI-compatible servers, scripted, one resolver."""

from spec_graph.generators.base import (
    Capabilities,
    GenerateRequest,
    Generator,
    GeneratorSession,
    Segment,
    Span,
    TokenStop,
)
from spec_graph.generators.remote import RemoteGenerator, RemoteGeneratorError, RemoteSession
from spec_graph.generators.resolve import resolve_generator
from spec_graph.generators.scripted import EOS, ScriptedGenerator

__all__ = [
    "EOS",
    "Capabilities",
    "GenerateRequest",
    "Generator",
    "GeneratorSession",
    "HFGenerator",
    "RemoteGenerator",
    "RemoteGeneratorError",
    "RemoteSession",
    "ScriptedGenerator",
    "Segment",
    "Span",
    "TokenStop",
    "resolve_generator",
]


def __getattr__(name: str) -> object:
    if name == "HFGenerator":  # imports torch and transformers only when asked for
        from spec_graph.generators.hf import HFGenerator

        return HFGenerator
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
