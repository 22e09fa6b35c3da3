"""The Speculative Thinking state graph."""

from spec_graph.graph.builder import build_graph, recursion_limit
from spec_graph.graph.state import Intervention, SpecContext, SpecState

__all__ = ["Intervention", "SpecContext", "SpecState", "build_graph", "recursion_limit"]
