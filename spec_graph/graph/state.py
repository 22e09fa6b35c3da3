"""The graph's state (JSON-serializable) and its runtime context (models, caches, callbacks)."""

from __future__ import annotations

import operator
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from typing_extensions import TypedDict

from spec_graph.config import SpeculativeThinkingConfig
from spec_graph.generators.base import Generator, GeneratorSession, Span, capabilities_of
from spec_graph.generators.drafting import TokenLevelSession, maybe_drafting
from spec_graph.generators.grammar import Grammar, check_grammar
from spec_graph.generators.scoring import scoring_session
from spec_graph.policies import Action, TriggerPolicy, build_policy
from spec_graph.result import Fallback, FinishReason, Intervention

Route = Literal["write", "classify", "intervene", "takeover", "finish"]
"""What happens next: the small model writes, the policy is asked, the target writes the
stretch the policy asked for, the recap, or the run ends."""


class Probe(TypedDict):
    """The small model's probe, passed from classify_step to target_intervene."""

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


class Leftover(TypedDict):
    """What a kept neutral probe wrote after its first boundary.

    The next probe at that boundary would write exactly these tokens again (they are a sample
    of the same distribution, and the small model still caches them), so it starts from them.
    """

    text: str
    token_ids: list[int]
    at: int
    """Length of the trace text they follow; stale once anything else is written."""


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
    action: dict[str, Any] | None
    """The policy's ``intervene`` action (its fields), passed from classify_step to target_intervene."""
    leftover: Leftover | None
    boundary: Literal["trigger", "token"] | None
    """How the trace ends: on a trigger string, or before a token the policy's ``TokenStop``
    flagged (a kept one: the small model writes that token before the condition applies again)."""
    route: Route
    """The one routing field: what happens next (set by every node)."""
    finish_reason: FinishReason | None


EventCallback = Callable[[dict[str, Any]], None]


@dataclass
class SpecContext:
    """Per-run objects that must not be checkpointed: the two models' sessions and callbacks.

    Open one with :meth:`open` (it starts the sessions and closes them on exit); the thinker,
    the subgraph node and Studio all do.
    """

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
    grammar: Grammar | None = None
    """Every token either model writes fits it (e.g. a JSON schema's grammar); local models only.
    Under a grammar the run injects no text (no think or recap prompt)."""
    response_format: dict[str, Any] | None = None
    """An OpenAI ``response_format`` a served model is asked for where it can (no guarantee)."""
    scorer: TokenLevelSession | None = field(init=False, default=None)
    """The target's token-level session when it can score the small model's tokens (same
    tokenizer, local), else ``None``; set once per run."""
    opening: Action | None = field(init=False, default=None)
    """The target's opening (step 1), decided once per run by the policy."""
    sessions: tuple[GeneratorSession, ...] = field(init=False, default=())
    """The sessions :meth:`close` closes (the models' own, not the drafting wrapper)."""

    def __post_init__(self) -> None:
        """Build the policy from the config when none is given; check it against the models; pair them for drafting."""
        if self.policy is None:
            self.policy = build_policy(self.config.policy)
        self.sessions = (self.small, self.target)
        self.scorer = scoring_session(self.target, self.small)
        if self.policy.needs_target_scores and self.scorer is None:
            msg = (
                f"the {self.policy.name} policy needs the target to score the small model's tokens: a local target "
                "model with the small model's tokenizer (not a served model, not another tokenizer)"
            )
            raise ValueError(msg)
        if self.policy.token_stop(self.config) is not None and not capabilities_of(self.small).token_stop:
            msg = (
                f"the {self.policy.name} policy stops the small model on a token condition, which its "
                "generator cannot do (use a local model, or a policy with scope='probe')"
            )
            raise ValueError(msg)
        if self.grammar is not None:
            check_grammar({"small": self.small, "target": self.target})
            self.config = self.config.model_copy(update={"think_prompt": None, "recap_prompt": ""})
        self.opening = self.policy.start(self.config)
        # The target writes its stretches by draft-and-verify when the config and the models allow.
        self.target = maybe_drafting(self.target, self.small, self.config.target_drafting)

    @property
    def trigger_policy(self) -> TriggerPolicy:
        """The run's policy."""
        assert self.policy is not None
        return self.policy

    @property
    def checks_every_step(self) -> bool:
        """Whether the policy decides on every stretch the small model writes."""
        return self.trigger_policy.checks_every_step

    @classmethod
    def open(
        cls,
        small: Generator,
        target: Generator,
        messages: Sequence[Mapping[str, Any]],
        config: SpeculativeThinkingConfig,
        *,
        stop: Sequence[str] = (),
        on_event: EventCallback | None = None,
        cancel: threading.Event | None = None,
        policy: TriggerPolicy | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        grammar: Grammar | None = None,
        response_format: dict[str, Any] | None = None,
    ) -> SpecContext:
        """Start both models' sessions on ``messages`` and build the run's context.

        Its deadline comes from ``config.time_budget``. Use it as a context manager (or call
        :meth:`close`): the sessions are closed on exit, and at once if the context cannot be
        built (a bad conversation, a policy the models cannot serve). Both models see the same
        ``tools`` (OpenAI-format schemas; passed to ``start`` only when given).
        """
        extra = {"tools": list(tools)} if tools else {}
        opened: list[GeneratorSession] = []
        try:
            opened.append(small.start(messages, **extra))
            opened.append(target.start(messages, **extra))
            deadline = time.monotonic() + config.time_budget if config.time_budget else None
            return cls(
                opened[0],
                opened[1],
                config,
                stop=tuple(stop),
                deadline=deadline,
                on_event=on_event,
                cancel=cancel,
                policy=policy,
                grammar=grammar,
                response_format=response_format,
            )
        except BaseException:
            for session in opened:
                session.close()
            raise

    @property
    def prompt_tokens(self) -> dict[str, int]:
        """The prompt's length for each model, in its own tokens."""
        return {"small": self.sessions[0].prompt_tokens, "target": self.sessions[1].prompt_tokens}

    def close(self) -> None:
        """Close both models' sessions (their caches go back to the models)."""
        for session in self.sessions:
            session.close()

    def __enter__(self) -> SpecContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
