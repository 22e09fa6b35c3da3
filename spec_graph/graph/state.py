"""The graph's state (JSON-serializable) and its runtime context (models, caches, callbacks)."""

from __future__ import annotations

import operator
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from typing_extensions import NotRequired, TypedDict

from spec_graph.config import SpeculativeThinkingConfig
from spec_graph.generators.base import GeneratorSession, Span
from spec_graph.generators.drafting import maybe_drafting
from spec_graph.generators.scoring import scoring_session
from spec_graph.policies import TriggerPolicy, build_policy

FinishReason = Literal["eos", "length", "time", "stop"]
Decision = Literal["keep", "intervene", "takeover"]


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


class Probe(TypedDict):
    """The small model's look-ahead, passed from classify_step to target_intervene."""

    text: str
    """The whole probe (what was classified)."""
    category: str
    sentiment: int
    kept_text: str
    """The part that stays if the probe is kept: up to and including its first boundary."""
    kept_ids: list[int]
    boundary: bool
    """Whether ``kept_text`` ends on a boundary."""
    finish_reason: FinishReason | None
    """How the run ends if the probe is kept (end of turn or stop string inside it)."""


class Stretch(TypedDict):
    """The policy's decision to let the target write, passed from classify_step to target_intervene."""

    tokens: int
    category: str
    sentiment: int
    until_boundary: NotRequired[bool]
    """The stretch also ends at the first trigger string the target writes."""


class Leftover(TypedDict):
    """What a kept neutral probe wrote after its first boundary.

    The next probe at that boundary would write exactly these tokens again (they are a sample
    of the same distribution, and the small model still caches them), so it starts from them.
    """

    text: str
    token_ids: list[int]
    at: int
    """Length of the trace text they follow; stale once anything else is written."""


class Fallback(TypedDict):
    """The target failed (after its retries) and the run went on with the small model alone."""

    node: str
    error: str
    char_position: int
    token_position: int
    partial_text: str


class SpecInput(TypedDict, total=False):
    """What a run starts from."""

    messages: list[dict[str, Any]]


class SpecState(TypedDict, total=False):
    """Everything a run knows, checkpointable: text, counters and statistics, no tensors."""

    messages: list[dict[str, Any]]
    spans: Annotated[list[Span], operator.add]
    interventions: Annotated[list[Intervention], operator.add]
    negatives: int
    negative_threshold: int
    recap_tokens: int
    output_tokens: dict[str, int]
    """Kept tokens by author (``small``/``target``); the budget counts their sum."""
    generated_tokens: dict[str, int]
    """All tokens written by each model, discarded probes and stretches included."""
    prefill_tokens: dict[str, int]
    draft_tokens: dict[str, int]
    """Draft-and-verify inside the target's stretches: ``drafted`` (proposed by the small
    model) and ``accepted`` (kept by the target)."""
    model_seconds: dict[str, float]
    fallbacks: Annotated[list[Fallback], operator.add]
    target_failed: bool
    """Set after a fallback: the small model writes alone for the rest of the run."""
    probe: Probe | None
    stretch: Stretch | None
    leftover: Leftover | None
    decision: Decision | None
    boundary: Literal["trigger", "token"] | None
    """Set when the small model's last words end at a boundary the policy is asked about:
    a trigger string, or before a token its ``TokenStop`` flagged."""
    write_past_stop: bool
    """The policy kept the small model's words at a token boundary: the next stretch writes
    that token before the condition applies again."""
    opening_done: bool
    finish_reason: FinishReason | None


EventCallback = Callable[[dict[str, Any]], None]


@dataclass
class SpecContext:
    """Per-run objects that must not be checkpointed: the two models' sessions and callbacks."""

    small: GeneratorSession
    target: GeneratorSession
    config: SpeculativeThinkingConfig = field(default_factory=lambda: SpeculativeThinkingConfig())
    stop: tuple[str, ...] = ()
    """User stop strings: the run ends before the first match."""
    deadline: float | None = None
    """A ``time.monotonic()`` value; the run ends with finish ``"time"`` after it."""
    on_event: EventCallback | None = None
    """Called with every text piece and intervention as it happens (also sent to the
    graph's ``custom`` stream)."""
    cancel: threading.Event | None = None
    """Set from another thread to end the run at the next token."""
    policy: TriggerPolicy | None = None
    """Decides when the target writes (default: built from ``config.policy``)."""
    scorer: Any = field(init=False, default=None)
    """The target's token-level session when it can score the small model's tokens (same
    tokenizer, local), else ``None``; set once per run."""

    def __post_init__(self) -> None:
        """Build the policy from the config when none is given; pair the sessions for drafting."""
        if self.policy is None:
            self.policy = build_policy(self.config.policy)
        self.scorer = scoring_session(self.target, self.small)
        if getattr(self.policy, "needs_target_scores", False) and self.scorer is None:
            msg = (
                f"the {self.policy.name} policy needs the target to score the small model's tokens: a local "
                "target model with the small model's tokenizer (not a served model, not another tokenizer)"
            )
            raise ValueError(msg)
        # The target writes its stretches by draft-and-verify when the config and the models allow.
        self.target = maybe_drafting(self.target, self.small, self.config.target_drafting)

    @property
    def trigger_policy(self) -> TriggerPolicy:
        """The run's policy."""
        assert self.policy is not None
        return self.policy

    @classmethod
    def create(
        cls,
        small: GeneratorSession,
        target: GeneratorSession,
        config: SpeculativeThinkingConfig,
        *,
        stop: tuple[str, ...] = (),
        on_event: EventCallback | None = None,
        cancel: threading.Event | None = None,
        policy: TriggerPolicy | None = None,
    ) -> SpecContext:
        """A context whose deadline comes from ``config.time_budget``."""
        deadline = time.monotonic() + config.time_budget if config.time_budget else None
        return cls(small, target, config, stop=stop, deadline=deadline, on_event=on_event, cancel=cancel, policy=policy)
