"""Models behind the graph: the protocol, local transformers, OpenAI-compatible servers, scripted."""

from spec_graph.generators.base import GenerateRequest, Generator, GeneratorSession, Segment, Span, TokenStop
from spec_graph.generators.remote import RemoteGenerator, RemoteGeneratorError, RemoteSession
from spec_graph.generators.scripted import EOS, ScriptedGenerator

__all__ = [
    "EOS",
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
]


def __getattr__(name: str) -> object:
    if name == "HFGenerator":  # imports torch and transformers only when asked for
        from spec_graph.generators.hf import HFGenerator

        return HFGenerator
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
