"""What a run returns: :class:`SpecResult`, the records it holds, and the reasoning/answer split."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from typing_extensions import TypedDict

from spec_graph.generators.base import Span

__all__ = ["THINK_END", "Fallback", "FinishReason", "Intervention", "SpecResult", "split_reasoning"]

FinishReason = Literal["eos", "length", "time", "stop"]


class Intervention(TypedDict):
    """One time the target wrote instead of the small model."""

    kind: Literal["opening", "intervention", "verification", "takeover"]
    category: str
    """The probe's category (neutral, affirmation, reflection, verification), or the kind."""
    char_position: int
    """Where in the generated text the target's stretch starts."""
    token_position: int
    """Output tokens written before it."""
    probe_text: str | None
    target_text: str
    kept: Literal["target", "probe"]
    target_tokens: int


class Fallback(TypedDict):
    """The target failed (after its retries) and the run went on with the small model alone."""

    node: str
    error: str
    char_position: int
    token_position: int
    partial_text: str


THINK_END = "</think>"


def split_reasoning(text: str) -> tuple[str | None, str]:
    """Split a thinking model's output at the last ``</think>``: ``(reasoning, answer)``.

    Without ``</think>`` there is no reasoning part and the whole text is the answer. A leading
    ``<think>`` is dropped from the reasoning.
    """
    head, sep, tail = text.rpartition(THINK_END)
    if not sep:
        return None, text
    reasoning = head.strip()
    if reasoning.startswith("<think>"):
        reasoning = reasoning[len("<think>") :].lstrip()
    return reasoning, tail.lstrip()


@dataclass
class SpecResult:
    """What one run produced: the generated text only (no prompt), and how it was made."""

    text: str
    reasoning: str | None
    answer: str
    finish_reason: str
    spans: list[Span]
    interventions: list[Intervention]
    output_tokens: dict[str, int]
    """Tokens kept in the text, by model (each in its own tokenizer)."""
    generated_tokens: dict[str, int]
    """Tokens each model wrote, discarded probes and stretches included."""
    prefill_tokens: dict[str, int]
    model_seconds: dict[str, float]
    wall_seconds: float
    prompt_tokens: dict[str, int] = field(default_factory=dict)
    draft_tokens: dict[str, int] = field(default_factory=dict)
    """Draft-and-verify in the target's stretches: tokens ``drafted`` by the small model and
    ``accepted`` by the target (empty when the target wrote token by token)."""
    fallbacks: list[dict[str, Any]] = field(default_factory=list)
    """Times the target failed and the small model went on alone (``target_fallback``)."""

    @property
    def num_output_tokens(self) -> int:
        """Kept tokens of both models."""
        return sum(self.output_tokens.values())

    @property
    def target_share(self) -> float:
        """Share of the kept tokens written by the target."""
        return self.output_tokens.get("target", 0) / max(1, self.num_output_tokens)

    @property
    def tokens_per_second(self) -> float:
        """Kept tokens per second of wall time."""
        return self.num_output_tokens / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, with the derived figures."""
        out = asdict(self)
        out.update(target_share=self.target_share, tokens_per_second=self.tokens_per_second)
        return out

    @classmethod
    def from_state(
        cls,
        state: Mapping[str, Any],
        *,
        wall_seconds: float,
        stop: Sequence[str] = (),
        prompt_tokens: dict[str, int] | None = None,
        finish: str | None = None,
    ) -> SpecResult:
        """Build the result from a graph state; cut the text before a stop string."""
        spans = list(state.get("spans", []))
        text = "".join(s["text"] for s in spans)
        finish = finish or state.get("finish_reason") or "length"
        hits = [i for i in (text.find(s) for s in stop) if i >= 0]
        if hits:
            text, finish = text[: min(hits)], "stop"
        reasoning, answer = split_reasoning(text)
        return cls(
            text=text,
            reasoning=reasoning,
            answer=answer,
            finish_reason=finish,
            spans=spans,
            interventions=list(state.get("interventions", [])),
            output_tokens=dict(state.get("output_tokens", {})),
            generated_tokens=dict(state.get("generated_tokens", {})),
            prefill_tokens=dict(state.get("prefill_tokens", {})),
            model_seconds=dict(state.get("model_seconds", {})),
            wall_seconds=wall_seconds,
            prompt_tokens=prompt_tokens or {},
            draft_tokens=dict(state.get("draft_tokens", {})),
            fallbacks=[dict(f) for f in state.get("fallbacks", [])],
        )
