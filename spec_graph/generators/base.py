"""The protocol between the graph and a model.

A :class:`Generator` is a loaded model (local or served). For each run it opens a
:class:`GeneratorSession`, which owns that run's state for the model (token ids, KV cache,
random generator). The graph hands a session the whole trace every time; the session works out
what it has not seen yet, so a model that catches up after the other one wrote only processes
the new text, and a discarded probe is undone by cropping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from typing_extensions import TypedDict

from spec_graph.generators.grammar import Grammar
from spec_graph.generators.tool_prompt import ToolSpecs

Author = Literal["small", "target", "injected"]
SegmentFinish = Literal["trigger", "eos", "length", "stop", "time", "cancelled", "context", "uncertain"]
"""Why a call stopped: a trigger, end of turn, the token limit, a user stop string, the time
budget, a cancelled run, a full context window, or the request's :class:`TokenStop`."""


class Span(TypedDict):
    """One piece of the trace: who wrote it, why, and its tokens in the author's tokenizer."""

    author: Author
    reason: str
    text: str
    token_ids: list[int]
    tokenizer: str | None
    """The author's :attr:`Generator.tokenizer_key`; ``None`` for injected text."""
    boundary: bool
    """Whether the span ends on a trigger string written by its author."""


@dataclass(frozen=True)
class Capabilities:
    """What a model can do beyond the protocol's calls, declared by its generator and session classes.

    Code that chooses a path (replay a prefix, stop on a token condition, draft, score) reads
    these fields instead of probing for methods; a request never asks a session for what it
    does not declare.
    """

    prefix: bool = False
    """Requests may carry :attr:`GenerateRequest.prefix_ids` (tokens it wrote and still caches)."""
    token_stop: bool = False
    """Requests may carry a :class:`TokenStop` (it sees each next-token distribution)."""
    logprobs: bool = False
    """``GenerateRequest.logprobs`` fills :attr:`Segment.logprobs` and :attr:`Segment.top1_probs`."""
    entropies: bool = False
    """...and :attr:`Segment.entropies` (it sees the whole distribution, not only its top tokens)."""
    token_ids: bool = False
    """:attr:`Segment.token_ids` are the model's own ids (else placeholders, ``-1``)."""
    drafting: bool = False
    """Token-level access (:class:`~spec_graph.generators.drafting.TokenLevelSession`): it can
    draft for, be drafted for by, or score the tokens of a model with the same tokenizer."""
    grammar: bool = False
    """Requests may carry a :attr:`GenerateRequest.grammar`: every token it writes fits it."""


NO_CAPABILITIES = Capabilities()
"""What a session that declares nothing can do: the protocol's calls only."""


class DeclaresCapabilities:
    """A base for generator and session classes: ``capabilities`` (none unless overridden).

    It also keeps the ``supports_*`` names that code read before :class:`Capabilities` existed
    (read ``capabilities`` instead).
    """

    @property
    def capabilities(self) -> Capabilities:
        """What this model can do (see :class:`Capabilities`)."""
        return NO_CAPABILITIES

    @property
    def supports_prefix(self) -> bool:
        """``capabilities.prefix``."""
        return self.capabilities.prefix

    @property
    def supports_token_stop(self) -> bool:
        """``capabilities.token_stop``."""
        return self.capabilities.token_stop

    @property
    def supports_drafting(self) -> bool:
        """``capabilities.drafting``."""
        return self.capabilities.drafting


def capabilities_of(model: object) -> Capabilities:
    """The capabilities a generator or session declares (none for one of your own that declares none)."""
    declared = getattr(model, "capabilities", None)
    return declared if isinstance(declared, Capabilities) else NO_CAPABILITIES


@dataclass(frozen=True)
class TokenStop:
    """A boundary that is not a string: stop *before* a token the model is unsure of.

    Checked on the model's unwarped next-token distribution (temperature 1, no top-k/top-p)
    before each token is chosen; when it holds, the call ends with finish ``"uncertain"`` and
    that token is not written (the other model writes from there).
    """

    measure: Literal["top1", "entropy"] = "top1"
    """``"top1"``: the most likely token's probability; ``"entropy"``: entropy in nats."""
    threshold: float = 0.5
    """Stop when top-1 probability < threshold, or entropy > threshold."""
    min_tokens: int = 0
    """Tokens the call writes before the condition applies."""

    def met(self, top1: float, entropy: float) -> bool:
        """Whether a distribution with this top-1 probability and entropy stops the call."""
        return top1 < self.threshold if self.measure == "top1" else entropy > self.threshold


@dataclass
class GenerateRequest:
    """What one call to :meth:`GeneratorSession.generate` should write."""

    max_tokens: int
    triggers: tuple[str, ...] = ("\n\n",)
    stop_at_trigger: bool = True
    """Stop right after the token that completes a trigger string (else only record it)."""
    stop: tuple[str, ...] = ()
    """User stop strings: generation ends as soon as one appears in the text."""
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    """Seeds the session's random generator on its first sampled token."""
    deadline: float | None = None
    """A ``time.monotonic()`` value after which generation stops with finish ``"time"``."""
    on_text: Callable[[str], None] | None = None
    """Called with each new piece of decoded text as it is written."""
    cancel: threading.Event | None = None
    """Set by another thread to stop the call at the next token (finish ``"cancelled"``)."""
    prefix_ids: list[int] = field(default_factory=list)
    """Tokens this session already wrote right after ``trace`` (still in its cache): they
    start the segment as if written now, without being sampled or run again. Only for
    sessions whose :attr:`Capabilities.prefix` is true."""
    prefix_text: str = ""
    """The text of ``prefix_ids``."""
    logprobs: bool = False
    """Fill :attr:`Segment.logprobs` and :attr:`Segment.top1_probs` (and, where the model
    gives the whole distribution, :attr:`Segment.entropies`)."""
    token_stop: TokenStop | None = None
    """Also stop before a token this condition flags (sessions whose :attr:`Capabilities.token_stop`
    is true)."""
    grammar: Grammar | None = None
    """Constrain what is written: the trace so far must fit it (whoever wrote it), and every
    token this call writes is masked by it (sessions whose :attr:`Capabilities.grammar` is true)."""
    response_format: dict[str, Any] | None = None
    """An OpenAI ``response_format`` (``{"type": "json_schema", ...}``) for a served model: sent
    where the server takes it and the call writes the answer from its start; others ignore it."""

    def interrupted(self) -> SegmentFinish | None:
        """``"cancelled"`` or ``"time"`` when the call must stop now, else ``None``."""
        if self.cancel is not None and self.cancel.is_set():
            return "cancelled"
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return "time"
        return None

    def __post_init__(self) -> None:
        """Validate the request."""
        if self.max_tokens < 1:
            msg = f"max_tokens must be >= 1, got {self.max_tokens}"
            raise ValueError(msg)


@dataclass
class Segment:
    """What a session wrote in one call."""

    text: str
    token_ids: list[int]
    finish_reason: SegmentFinish
    first_boundary: tuple[int, int] | None = None
    """``(tokens, chars)`` up to and including the first token that completed a trigger."""
    prefill_tokens: int = 0
    """Tokens the model had to process before writing (catching up on the trace)."""
    elapsed: float = 0.0
    """Wall time of the call in seconds, catching up included."""
    error: str | None = None
    """Set when the model failed part-way and the graph continues without it (fallback)."""
    reused_tokens: int = 0
    """Tokens of ``token_ids`` that came from the request's prefix (not written by this call)."""
    logprobs: list[float] | None = field(default=None, repr=False)
    """Log-probability of each written token under the model's unwarped distribution."""
    top1_probs: list[float] | None = field(default=None, repr=False)
    """For each written token, the probability of the most likely token at that position."""
    drafted_tokens: int = 0
    """Draft-and-verify: tokens the small model proposed for this segment."""
    accepted_tokens: int = 0
    """Draft-and-verify: proposed tokens the target kept (the rest of the segment is its own)."""
    entropies: list[float] | None = field(default=None, repr=False)
    """For each written token, the entropy (nats) of the distribution it was drawn from;
    ``None`` where the model only reports its top tokens (served models)."""

    @property
    def num_tokens(self) -> int:
        """Tokens written, end-of-turn token included."""
        return len(self.token_ids)


@runtime_checkable
class GeneratorSession(Protocol):
    """One run's view of one model.

    Beyond these calls, a session declares what else it can do in a ``capabilities`` attribute
    (a :class:`Capabilities`; see :class:`DeclaresCapabilities`); one that declares nothing is
    asked for nothing more (:func:`capabilities_of`).
    """

    @property
    def prompt_tokens(self) -> int:
        """Tokens of the rendered conversation (the prompt)."""
        ...

    @property
    def tokenizer_key(self) -> str:
        """The generator's tokenizer key (see :attr:`Generator.tokenizer_key`)."""
        ...

    def generate(self, trace: Sequence[Span], request: GenerateRequest) -> Segment:
        """Continue ``trace`` (the assistant text so far) and return what was written."""
        ...

    def close(self) -> None:
        """Free the run's caches."""
        ...


@runtime_checkable
class Generator(Protocol):
    """A model the graph can ask to write."""

    @property
    def name(self) -> str:
        """A display name, e.g. the model id."""
        ...

    @property
    def tokenizer_key(self) -> str:
        """Equal keys mean token ids can be passed between the two models unchanged."""
        ...

    def start(self, messages: Sequence[Mapping[str, Any]], tools: ToolSpecs | None = None) -> GeneratorSession:
        """Open a session for a conversation of ``{"role", "content"}`` messages.

        ``tools`` (OpenAI-format tool schemas, see :mod:`~spec_graph.generators.tool_prompt`)
        go into the prompt; it is passed only when tools are bound, so a generator of your own
        that takes no ``tools`` still serves runs without them.
        """
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` in this model's tokenizer."""
        ...


def find_trigger(text: str, triggers: Sequence[str], start: int) -> int | None:
    r"""Index just past the first trigger occurrence that ends at or after ``start``.

    ``start`` is where the newly written text begins in ``text``; a trigger that began in
    earlier text but is completed by new text counts (so ``".\\n"`` then ``"\\n"`` is a boundary).
    """
    best: int | None = None
    for trig in triggers:
        pos = text.find(trig, max(0, start - len(trig) + 1))
        if pos >= 0:
            end = pos + len(trig)
            if best is None or end < best:
                best = end
    return best
