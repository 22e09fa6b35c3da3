r"""A scripted generator: returns given text, for tests of every branch and for docs.

Text is split into word-like tokens (``"\\n\\n"`` is a token of its own), so token limits,
trigger strings, end of turn and stop strings behave as they do with a real model.
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

from spec_graph.generators.base import (
    Capabilities,
    DeclaresCapabilities,
    GenerateRequest,
    Segment,
    SegmentFinish,
    Span,
    find_trigger,
)
from spec_graph.generators.tool_prompt import ToolSpecs

EOS = "<eos>"
"""Put this at the end of a scripted text to make the model end its turn there."""

_TOKEN_RE = re.compile(r"\n\n|<eos>|\s?[^\s<]+|<|\s")
_VOCAB: dict[str, int] = {}


def scripted_tokens(text: str) -> list[str]:
    """Split text into the scripted tokenizer's tokens."""
    return _TOKEN_RE.findall(text)


def _token_id(tok: str) -> int:
    if tok not in _VOCAB:
        _VOCAB[tok] = len(_VOCAB) + 1
        _TOKENS[_VOCAB[tok]] = tok
    return _VOCAB[tok]


_TOKENS: dict[int, str] = {}


Script = Callable[[str, int], str]
"""``(trace_text, call_index) -> text the model writes next``."""

Confidence = Callable[[str], float] | Mapping[str, float]
"""The top-1 probability of the distribution each scripted token is written from: a function of
the token or a mapping from the token's text (without its leading space) to it; 1.0 elsewhere."""


def token_distribution(top1: float) -> tuple[float, float, float]:
    """``(top1, entropy, logprob)`` of a scripted position: the rest of the mass on one other token."""
    rest = 1.0 - top1
    entropy = -(top1 * math.log(top1) if top1 > 0 else 0.0) - (rest * math.log(rest) if rest > 0 else 0.0)
    return top1, entropy, math.log(top1) if top1 > 0 else float("-inf")


@dataclass
class ScriptedGenerator:
    """A fake model that writes what a script says.

    Build it with :meth:`from_responses` (a queue of texts, one per call; the last one
    repeats) or :meth:`from_document` (continues a fixed document from wherever the trace is,
    like a deterministic model would).
    """

    script: Script
    name: str = "scripted"
    tokenizer_key: str = "scripted-words"
    supports_prefix: bool = False
    """Accept requests that start with tokens the model already wrote (see
    :attr:`GenerateRequest.prefix_ids`); off by default so that a response queue advances
    once per call."""
    confidence: Confidence | None = None
    """Top-1 probability per token (see :data:`Confidence`); drives ``logprobs`` statistics and
    :class:`~spec_graph.generators.base.TokenStop` conditions."""
    supports_drafting: bool = False
    """Token-level access for draft-and-verify (greedy): the next token after any token ids is
    the first token the script writes for their text (use with :meth:`from_document`)."""
    calls: list[dict[str, Any]] = field(default_factory=list)
    """Every call made: ``{"trace": str, "max_tokens": int, "stop_at_trigger": bool}``."""
    last_tools: list[dict[str, Any]] | None = None
    """The tools the last :meth:`start` received (``None`` without tools)."""

    supports_token_stop = True

    @classmethod
    def from_responses(
        cls, responses: Sequence[str], name: str = "scripted", confidence: Confidence | None = None
    ) -> ScriptedGenerator:
        """A model that writes ``responses[i]`` on its i-th call (the last one repeats)."""
        if not responses:
            msg = "responses must not be empty"
            raise ValueError(msg)
        items = list(responses)
        return cls(lambda _trace, i: items[min(i, len(items) - 1)], name=name, confidence=confidence)

    @classmethod
    def from_document(
        cls,
        document: str,
        name: str = "scripted",
        filler: str = " x",
        confidence: Confidence | None = None,
        *,
        supports_drafting: bool = False,
    ) -> ScriptedGenerator:
        """A model that continues ``document`` when the trace is a prefix of it, else ``filler``."""

        def script(trace: str, _i: int) -> str:
            if document.startswith(trace):
                return document[len(trace) :]
            return filler * 64

        return cls(script, name=name, confidence=confidence, supports_drafting=supports_drafting)

    def top1(self, token: str) -> float:
        """The top-1 probability the script gives ``token``."""
        conf = self.confidence
        if conf is None:
            return 1.0
        if callable(conf):
            return float(conf(token))
        return float(conf.get(token.strip(), conf.get(token, 1.0)))

    @property
    def capabilities(self) -> Capabilities:
        """Token stops and distributions always; a prefix and token-level access as set."""
        return Capabilities(
            prefix=self.supports_prefix,
            token_stop=True,
            logprobs=True,
            entropies=True,
            token_ids=True,
            drafting=self.supports_drafting,
        )

    def start(self, messages: Sequence[Mapping[str, Any]], tools: ToolSpecs | None = None) -> ScriptedSession:
        """Open a session (the conversation and the tools' names only count towards the prompt size)."""
        self.last_tools = [dict(t) for t in tools] if tools else None
        names = " ".join(str(t.get("function", t).get("name", "")) for t in tools or ())
        prompt = "".join(str(m.get("content", "")) for m in messages) + (f" {names}" if names else "")
        return ScriptedSession(self, len(scripted_tokens(prompt)))

    def count_tokens(self, text: str) -> int:
        """Scripted tokens in ``text``."""
        return len(scripted_tokens(text))


class ScriptedSession(DeclaresCapabilities):
    """One run of a :class:`ScriptedGenerator`."""

    def __init__(self, generator: ScriptedGenerator, prompt_tokens: int) -> None:
        """Bind to the generator."""
        self._gen = generator
        self._prompt_tokens = prompt_tokens

    @property
    def prompt_tokens(self) -> int:
        """Tokens in the conversation."""
        return self._prompt_tokens

    @property
    def tokenizer_key(self) -> str:
        """The generator's tokenizer key."""
        return self._gen.tokenizer_key

    @property
    def capabilities(self) -> Capabilities:
        """The generator's (a prefix and token-level access as it is set when the call comes)."""
        return self._gen.capabilities

    def generate(self, trace: Sequence[Span], request: GenerateRequest) -> Segment:
        """Write the script's text for this trace within the request's limits."""
        t0 = time.perf_counter()
        trace_text = "".join(s["text"] for s in trace)
        call = len(self._gen.calls)
        self._gen.calls.append(
            {"trace": trace_text, "max_tokens": request.max_tokens, "stop_at_trigger": request.stop_at_trigger}
        )
        prefix = scripted_tokens(request.prefix_text) if request.prefix_ids else []
        tokens = prefix + scripted_tokens(self._gen.script(trace_text + request.prefix_text, call))
        text, ids = "", list[int]()
        finish: SegmentFinish = "length"
        first_boundary: tuple[int, int] | None = None
        tail_len = max([len(t) for t in (*request.triggers, *request.stop)] or [1])
        stats: tuple[list[float], list[float], list[float]] = ([], [], [])
        for n, tok in enumerate(tokens):
            if (stopped := request.interrupted()) is not None:
                finish = stopped
                break
            top1, entropy, logprob = token_distribution(1.0 if n < len(prefix) else self._gen.top1(tok))
            stop = request.token_stop
            if stop is not None and n >= len(prefix) and len(ids) >= stop.min_tokens and stop.met(top1, entropy):
                finish = "uncertain"
                break
            for values, value in zip(stats, (logprob, top1, entropy), strict=True):
                values.append(value)
            ids.append(_token_id(tok))
            if tok == EOS:
                finish = "eos"
                break
            start = len(text)
            text += tok
            if request.on_text is not None:
                request.on_text(tok)
            window = trace_text[-tail_len:] + text
            offset = len(window) - len(text)
            if request.stop and find_trigger(window, request.stop, offset + start) is not None:
                finish = "stop"
                break
            if first_boundary is None and find_trigger(window, request.triggers, offset + start) is not None:
                first_boundary = (len(ids), len(text))
                if request.stop_at_trigger:
                    finish = "trigger"
                    break
            if len(ids) >= request.max_tokens:
                break
        else:
            if len(ids) < request.max_tokens and finish == "length":
                finish = "eos"  # the script ran out: treat as end of turn
        return Segment(
            text=text,
            token_ids=ids,
            finish_reason=finish,
            first_boundary=first_boundary,
            elapsed=time.perf_counter() - t0,
            reused_tokens=min(len(prefix), len(ids)),
            logprobs=stats[0] if request.logprobs else None,
            top1_probs=stats[1] if request.logprobs else None,
            entropies=stats[2] if request.logprobs else None,
        )

    # -- token-level access (draft-and-verify; see ScriptedGenerator.supports_drafting) --------
    lock = contextlib.nullcontext()
    """Scripted models need no lock."""

    @property
    def eos_token_ids(self) -> frozenset[int]:
        """The id of :data:`EOS`."""
        return frozenset({_token_id(EOS)})

    def context_ids(self, trace: Sequence[Span]) -> list[int]:
        """The trace in scripted token ids (the prompt is not part of a script's input)."""
        return [_token_id(t) for t in scripted_tokens("".join(s["text"] for s in trace))]

    def room(self, context: Sequence[int], wanted: int) -> int:
        """No context window."""
        return wanted

    def next_logits(self, ids: list[int], keep: int = 1) -> tuple[torch.Tensor, int]:
        """One-hot logits of the script's next token after each of the last ``keep`` prefixes of ``ids``."""
        import torch  # only for token-level use: scripted runs need no torch

        nexts = []
        for end in range(len(ids) - keep + 1, len(ids) + 1):
            text = "".join(_TOKENS[i] for i in ids[:end])
            written = scripted_tokens(self._gen.script(text, len(self._gen.calls)))
            nexts.append(_token_id(written[0] if written else EOS))
        logits = torch.full((keep, len(_VOCAB) + 1), -1e4)
        logits[torch.arange(keep), torch.tensor(nexts)] = 0.0
        return logits, keep

    def select(self, logits: torch.Tensor, req: GenerateRequest) -> int:
        """The script's token (scripted models are greedy)."""
        import torch

        return int(torch.argmax(logits[-1]).item())

    def probs(self, logits: torch.Tensor, req: GenerateRequest) -> torch.Tensor:
        """One-hot: the script's token has all the mass."""
        import torch

        return torch.softmax(logits, dim=-1)

    def rng(self, req: GenerateRequest, device: Any) -> torch.Generator:
        """A generator seeded from the request."""
        import torch

        return torch.Generator().manual_seed(req.seed or 0)

    def detokenizer(self, context: Sequence[int]) -> _Detok:
        """Scripted tokens are their own text."""
        return _Detok()

    def close(self) -> None:
        """Nothing to free."""


class _Detok:
    """Decodes scripted token ids one at a time."""

    def push(self, token: int) -> str:
        return _TOKENS[token]

    def flush(self) -> str:
        return ""
