"""The Speculative Thinking state graph."""

from spec_graph.graph.builder import build_graph, recursion_limit
from spec_graph.graph.state import SpecContext, SpecState
from spec_graph.result import Intervention

__all__ = ["Intervention", "SpecContext", "SpecState", "build_graph", "recursion_limit"]
