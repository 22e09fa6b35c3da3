"""The systems an evaluation compares, behind one small protocol.

=====================  ===============================================================================
``small``              the small model alone (the same per-token session loop speculative thinking uses)
``target``             the target model alone (same loop)
``target:draft``       the target alone, written by draft-and-verify with the small model drafting (the
                       ``always`` policy with ``target_drafting="auto"``): lossless speculative decoding
                       in this engine; needs two local models with the same tokenizer
``spec:<preset|yaml>`` speculative thinking (:class:`~spec_graph.thinker.SpeculativeThinker`)
``spec:<policy>``      speculative thinking with a trigger policy (:mod:`spec_graph.policies`) on the
                       default config, e.g. ``spec:uncertainty:0.5``, ``spec:entropy:2``,
                       ``spec:regex:<pattern>``, ``spec:never``, ``spec:always``
``specdec``            token-level speculative decoding: transformers assisted generation of the target
                       with the small model as assistant (universal assisted generation when the
                       vocabularies differ)
``generate:small``     plain transformers ``model.generate`` of one model (the reference for ``specdec``
``generate:target``    and for numbers measured with ``generate``)
=====================  ===============================================================================

All systems take the same :class:`SampleOptions` (the run's budget, sampling and seed), so a
table compares like with like.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from spec_graph.generators.base import GenerateRequest, Generator
from spec_graph.generators.resolve import resolve_generator

__all__ = [
    "SYSTEM_KINDS",
    "Generation",
    "HFGenerateSystem",
    "SampleOptions",
    "SingleModelSystem",
    "SpecThinkingSystem",
    "System",
    "check_system",
    "make_system",
]

Role = Literal["small", "target"]
SYSTEM_KINDS = (
    "small",
    "target",
    "target:draft",
    "spec:<preset or yaml>",
    "spec:<policy>",
    "specdec",
    "generate:small",
    "generate:target",
)


@dataclass(frozen=True)
class SampleOptions:
    """How every system writes one answer: budget, sampling (``temperature=0``: greedy) and seed.

    The sampling values are checked by :class:`~spec_graph.sampling.SamplingParams` (a one-line
    :class:`~spec_graph.config_errors.ConfigError` naming the field).
    """

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 0.95
    top_k: int = 50
    seed: int | None = None

    def __post_init__(self) -> None:
        """Validate the sampling values and the budget."""
        from spec_graph.sampling import SamplingParams

        SamplingParams.check(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k, seed=self.seed)
        if self.max_new_tokens < 1:
            msg = f"max_new_tokens: must be >= 1, got {self.max_new_tokens}"
            raise ValueError(msg)


@dataclass
class Generation:
    """One answer and how it was made."""

    text: str
    finish_reason: str
    """``eos`` (the model ended its turn), ``length`` (budget used up), ``stop`` or ``time``."""
    output_tokens: dict[str, int]
    """Tokens of the answer by author (``small``/``target``), each in its own tokenizer."""
    interventions: list[dict[str, Any]] = field(default_factory=list)
    """Speculative thinking only: where the target wrote, and what."""
    draft_tokens: dict[str, int] = field(default_factory=dict)
    """Draft-and-verify in the target's stretches: tokens ``drafted`` and ``accepted``."""

    @property
    def num_output_tokens(self) -> int:
        """All tokens of the answer."""
        return sum(self.output_tokens.values())


@runtime_checkable
class System(Protocol):
    """Something that answers a conversation: one model, or a pair."""

    name: str

    def prepare(self) -> None:
        """Load weights now, so that timing excludes loading."""
        ...

    def generate(self, messages: Sequence[Mapping[str, Any]], options: SampleOptions) -> Generation:
        """Write the answer to ``messages`` (ending with a user turn)."""
        ...


def _load(gen: Generator) -> None:
    model = getattr(gen, "model", None)  # HFGenerator loads lazily on access; others have nothing to load
    del model


class SingleModelSystem:
    """One model alone, through its :class:`~spec_graph.generators.base.GeneratorSession`."""

    def __init__(self, name: str, generator: Generator, role: Role) -> None:
        """Wrap ``generator``; its tokens count under ``role``."""
        self.name, self.generator, self.role = name, generator, role

    def prepare(self) -> None:
        """Load the model."""
        _load(self.generator)

    def generate(self, messages: Sequence[Mapping[str, Any]], options: SampleOptions) -> Generation:
        """Write until end of turn or ``max_new_tokens``."""
        session = self.generator.start(messages)
        request = GenerateRequest(
            max_tokens=options.max_new_tokens,
            stop_at_trigger=False,
            temperature=options.temperature,
            top_p=options.top_p,
            top_k=options.top_k,
            seed=options.seed,
        )
        try:
            seg = session.generate([], request)
        finally:
            session.close()
        return Generation(seg.text, seg.finish_reason, {self.role: seg.num_tokens})


class SpecThinkingSystem:
    """Speculative thinking with a preset, a YAML file or a config object.

    The run's :class:`SampleOptions` override the config's budget, sampling and seed.
    """

    def __init__(self, name: str, small: Generator, target: Generator, config: Any) -> None:
        """Build the graph for ``small`` and ``target``."""
        from spec_graph.thinker import SpeculativeThinker

        self.name = name
        self.thinker = SpeculativeThinker(small, target, config)

    def prepare(self) -> None:
        """Load both models."""
        _load(self.thinker.small)
        _load(self.thinker.target)

    def generate(self, messages: Sequence[Mapping[str, Any]], options: SampleOptions) -> Generation:
        """Run the graph."""
        result = self.thinker.run(
            messages,
            max_new_tokens=options.max_new_tokens,
            temperature=options.temperature,
            top_p=options.top_p,
            top_k=options.top_k,
            seed=options.seed,
        )
        return Generation(
            text=result.text,
            finish_reason=result.finish_reason,
            output_tokens={k: int(v) for k, v in result.output_tokens.items()},
            interventions=[dict(i) for i in result.interventions],
            draft_tokens=dict(result.draft_tokens),
        )


class HFGenerateSystem:
    """``model.generate`` of a local transformers model, optionally with an assistant (speculative decoding).

    With an assistant whose vocabulary differs from the main model's, transformers' universal
    assisted generation is used (``tokenizer=``/``assistant_tokenizer=``). Sampled universal
    assisted generation prunes the assistant's LM head in place, so it then runs on a private
    copy of the assistant; the shared model other systems use is never modified.
    """

    def __init__(self, name: str, main: Any, assistant: Any = None, role: Role = "target") -> None:
        """``main``/``assistant`` are :class:`~spec_graph.generators.hf.HFGenerator` instances."""
        for gen in (main, assistant):
            if gen is not None and not _is_local(gen):
                msg = (
                    f"system {name!r} runs transformers' model.generate and needs local transformers models "
                    f"(HFGenerator or an embedded model name); got {type(gen).__name__}"
                )
                raise TypeError(msg)
        self.name, self.main, self.assistant, self.role = name, main, assistant, role
        self._private_assistant: Any = None

    def prepare(self) -> None:
        """Load the model(s)."""
        _load(self.main)
        if self.assistant is not None:
            _load(self.assistant)

    @property
    def universal(self) -> bool:
        """Whether main and assistant vocabularies differ (universal assisted generation)."""
        if self.assistant is None:
            return False
        size = self.main.model.config.get_text_config().vocab_size
        return bool(size != self.assistant.model.config.get_text_config().vocab_size)

    def _assistant_kwargs(self, sampling: bool) -> dict[str, Any]:
        if self.assistant is None:
            return {}
        model = self.assistant.model
        if not self.universal:
            return {"assistant_model": model}
        if sampling:  # see the class docstring
            if self._private_assistant is None:
                self._private_assistant = copy.deepcopy(model)
            model = self._private_assistant
        return {
            "assistant_model": model,
            "tokenizer": self.main.tokenizer,
            "assistant_tokenizer": self.assistant.tokenizer,
        }

    def generate(self, messages: Sequence[Mapping[str, Any]], options: SampleOptions) -> Generation:
        """Render the chat template, generate, and cut the prompt off."""
        import torch

        main = self.main
        sampling = options.temperature > 0
        ids = main.encode(main.render_prompt(messages))
        inputs = torch.tensor([ids], device=main.device)
        eos = sorted(main.eos_token_ids)
        kwargs: dict[str, Any] = {
            "max_new_tokens": options.max_new_tokens,
            "do_sample": sampling,
            "eos_token_id": eos,
            "pad_token_id": main.tokenizer.pad_token_id if main.tokenizer.pad_token_id is not None else eos[0],
            "attention_mask": torch.ones_like(inputs),
        }
        if sampling:
            kwargs.update(temperature=options.temperature, top_p=options.top_p, top_k=options.top_k)
        kwargs.update(self._assistant_kwargs(sampling))
        locks = [main.lock] + ([self.assistant.lock] if self.assistant is not None else [])
        with contextlib.ExitStack() as stack:
            for lock in locks:
                stack.enter_context(lock)
            stack.enter_context(torch.inference_mode())
            stack.enter_context(_quiet_transformers())
            if kwargs.get("assistant_model") is not None:
                stack.enter_context(_restored_generation_config(kwargs["assistant_model"]))
            if sampling and options.seed is not None:
                torch.manual_seed(options.seed)
            out = main.model.generate(inputs, **kwargs)
        new = [int(t) for t in out[0, len(ids) :].tolist()]
        finish = "eos" if new and new[-1] in eos else "length"
        text_ids = new[:-1] if finish == "eos" else new
        return Generation(main.decode(text_ids), finish, {self.role: len(new)})


@contextlib.contextmanager
def _restored_generation_config(model: Any) -> Iterator[None]:
    """Assisted generation adapts ``num_assistant_tokens`` in the assistant's config; undo it after."""
    saved = copy.deepcopy(model.generation_config)
    try:
        yield
    finally:
        model.generation_config = saved


def _is_local(gen: object) -> bool:
    """Whether ``gen`` is a local transformers model (what ``model.generate`` needs)."""
    from spec_graph.generators.hf import HFGenerator

    return isinstance(gen, HFGenerator)


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' per-call warnings (tokenizer clean-up notices of assisted generation)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    quiet: Any = hf_logging.set_verbosity_error  # untyped in transformers
    quiet()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


_PLAIN = ("small", "target", "target:draft", "specdec", "generate:small", "generate:target")


def _spec_config(name: str, overrides: Mapping[str, Any] | None = None) -> Any:
    """A ``spec[:<preset|yaml|policy>]`` system's config with ``overrides`` (checked: one line naming what is wrong)."""
    from spec_graph.config import PRESETS, resolve_config
    from spec_graph.config_errors import one_line
    from spec_graph.policy_config import parse_policy

    what = name.partition(":")[2] or "reasoning"
    try:
        if what.lower().endswith((".yml", ".yaml")) or what in PRESETS:
            return resolve_config(what, **(overrides or {}))
        return resolve_config(None, **{**(overrides or {}), "policy": parse_policy(what)})
    except (ValueError, OSError) as exc:
        msg = f"system {name!r}: {one_line(exc)}"
        if what not in PRESETS and "unknown policy" in str(exc):
            msg = f"system {name!r}: unknown preset or policy (presets: {', '.join(sorted(PRESETS))}; {exc})"
        raise ValueError(msg) from None


def check_system(spec: str) -> None:
    """Check a system's name (and a ``spec:`` system's preset, file or policy) without loading anything.

    Raises:
        ValueError: one line naming the system and what is accepted.
    """
    name = spec.strip()
    if name == "spec" or name.startswith("spec:"):
        _spec_config(name)
    elif name not in _PLAIN:
        msg = f"unknown system {spec!r}; choose from {', '.join(SYSTEM_KINDS)}"
        raise ValueError(msg)


def make_system(
    spec: str, small: Generator | str, target: Generator | str, overrides: Mapping[str, Any] | None = None
) -> System:
    """Build a system from its name (see the module docstring) for a small and a target model.

    Args:
        spec: ``small``, ``target``, ``spec:<preset or YAML path>`` (``spec`` alone means
            ``spec:reasoning``), ``spec:<policy>`` (e.g. ``spec:uncertainty:0.5``: the default
            config with that trigger policy), ``specdec``, ``generate:small`` or ``generate:target``.
        small: the small model (generator, embedded name, folder or hub id).
        target: the target model.
        overrides: config fields for the ``spec:`` systems (e.g. ``{"probe_tokens": 12}``); the
            policy named in the system wins over one given here.

    Raises:
        ValueError: an unknown system name or preset.
        TypeError: ``specdec``/``generate:*`` with models that are not local transformers models.
    """
    name = spec.strip()
    small_gen, target_gen = resolve_generator(small), resolve_generator(target)
    if name == "small":
        return SingleModelSystem(name, small_gen, "small")
    if name == "target":
        return SingleModelSystem(name, target_gen, "target")
    if name == "target:draft":
        from spec_graph.config import resolve_config

        for gen in (small_gen, target_gen):
            if not _is_local(gen):
                msg = f"system {name!r} needs two local transformers models; got {type(gen).__name__}"
                raise TypeError(msg)
        cfg = resolve_config(None, policy="always", target_drafting="auto")
        return SpecThinkingSystem(name, small_gen, target_gen, cfg)
    if name == "spec" or name.startswith("spec:"):
        what = name.partition(":")[2] or "reasoning"
        return SpecThinkingSystem(f"spec:{what}", small_gen, target_gen, _spec_config(name, overrides or {}))
    if name == "specdec":
        return HFGenerateSystem(name, target_gen, small_gen, role="target")
    if name in ("generate:small", "generate:target"):
        role: Role = "small" if name.endswith("small") else "target"
        return HFGenerateSystem(name, small_gen if role == "small" else target_gen, None, role=role)
    msg = f"unknown system {spec!r}; choose from {', '.join(SYSTEM_KINDS)}"
    raise ValueError(msg)
