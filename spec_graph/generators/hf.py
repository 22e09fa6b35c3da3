"""A local Hugging Face transformers model as a :class:`~spec_graph.generators.base.Generator`.

Per run, a session keeps the token ids whose keys and values sit in its KV cache. Before each
call it rebuilds the ids of the trace (its own spans and those of a same-tokenizer model pass
unchanged; text from a model with another tokenizer is re-tokenized at the seam), crops the
cache to the longest common prefix with what it holds, and prefills only the rest. Then one
forward pass per written token. A discarded probe is thus undone by cropping, never by copies.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from spec_graph.generators import hf_cache, precision
from spec_graph.generators.base import Capabilities, DeclaresCapabilities, GenerateRequest, Segment, Span
from spec_graph.generators.grammar import GrammarState
from spec_graph.generators.hf_decoding import Detokenizer, TokenStats, Warpers
from spec_graph.generators.hf_loading import (  # the loading API lives there; re-exported
    _check_local_path,
    default_device,
    default_dtype,
    load_pretrained,
    model_lock,
)
from spec_graph.generators.tokens import TraceIds, tokenizer_key
from spec_graph.generators.tool_prompt import ToolSpecs, prepare_chat
from spec_graph.generators.writer import SegmentWriter

__all__ = ["PLAIN_CHAT_TEMPLATE", "HFGenerator", "HFSession", "default_device", "default_dtype", "load_pretrained"]

PLAIN_CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] | capitalize }}: {{ m['content'] }}\n\n{% endfor %}"
    "{% if add_generation_prompt %}Assistant: {% endif %}"
)
"""A minimal template for models that ship none (pass it as ``chat_template=``)."""
HF_CAPABILITIES = Capabilities(
    prefix=True, token_stop=True, logprobs=True, entropies=True, token_ids=True, drafting=True, grammar=True
)
"""What a local transformers model can do: everything."""


class HFGenerator(DeclaresCapabilities):
    """A local transformers causal LM.

    Args:
        model: an embedded model name (see :mod:`spec_graph.models`), a local folder, a hub id,
            or an already loaded ``PreTrainedModel``.
        tokenizer: the tokenizer, required with a loaded model; loaded with the model otherwise.
        device: ``"cuda"``, ``"cpu"``, ... (default: CUDA when present). Ignored for a loaded model.
        dtype: ``auto`` (default), ``float32``, ``bfloat16``, ``float16`` or a torch dtype;
            ``auto`` is bfloat16 on a GPU that supports it and on a CPU with bf16 instructions
            (AVX512-BF16/AMX), else float32 (see :mod:`spec_graph.generators.precision`).
            Ignored for a loaded model.
        quantization: ``none`` (default) or ``int8`` (int8 weights; about 1.9× faster decoding
            on a CPU). Only for a model given by name or path.
        chat_template: a Jinja chat template to use instead of the tokenizer's.
        use_cache: ``False`` recomputes every step without a KV cache (slow; for checking).
        trust_remote_code: passed to transformers; off unless you set it. ``model_kwargs``: more
            arguments for ``from_pretrained`` (e.g. ``{"attn_implementation": "sdpa"}``).
        name: display name (default: the model id).
    """

    def __init__(
        self,
        model: str | Any,
        tokenizer: PreTrainedTokenizerBase | None = None,
        *,
        device: str | None = None,
        dtype: torch.dtype | str | None = None,
        quantization: str | None = None,
        chat_template: str | None = None,
        use_cache: bool = True,
        trust_remote_code: bool = False,
        model_kwargs: Mapping[str, Any] | None = None,
        name: str | None = None,
    ) -> None:
        """Remember how to load the model; weights load on first use.

        Raises:
            ValueError: an unknown dtype or quantization, or a quantization for a loaded model.
        """
        precision.check_dtype(dtype)
        self.quantization = precision.check_quantization(quantization)
        if not isinstance(model, str) and tokenizer is None:
            msg = "a loaded model needs its tokenizer: HFGenerator(model, tokenizer)"
            raise TypeError(msg)
        if not isinstance(model, str) and self.quantization != "none":
            msg = (
                f"quantization={quantization!r} applies to models loaded by name or path; quantize a loaded "
                "model yourself: spec_graph.generators.precision.quantize(model, 'int8', device)"
            )
            raise ValueError(msg)
        if isinstance(model, str):
            _check_local_path(model)  # a missing folder fails here, before any loading
        self._spec = model
        self._model: Any = None if isinstance(model, str) else model
        self._tokenizer = tokenizer
        self._device, self._dtype, self._trust = device, dtype, trust_remote_code
        self._model_kwargs = dict(model_kwargs or {})
        self.chat_template = chat_template
        self.use_cache = use_cache
        self.name = name or (model if isinstance(model, str) else str(getattr(model, "name_or_path", "model")))

    # -- loading -----------------------------------------------------------------------------
    @property
    def model(self) -> Any:
        """The loaded model (loads it on first access)."""
        if self._model is None:
            self._model, tok = load_pretrained(
                self._spec,
                device=self._device,
                dtype=self._dtype,
                quantization=self.quantization,
                trust_remote_code=self._trust,
                model_kwargs=self._model_kwargs,
            )
            self._tokenizer = self._tokenizer or tok
        return self._model

    @property
    def lock(self) -> threading.RLock:
        """Held while the model runs: a model object never serves two threads at once."""
        return model_lock(self.model)

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        """The tokenizer (loads the model on first access)."""
        if self._tokenizer is None:
            _ = self.model
        assert self._tokenizer is not None
        return self._tokenizer

    @property
    def tokenizer_key(self) -> str:
        """See :func:`tokenizer_key`."""
        return tokenizer_key(self.tokenizer)

    @property
    def device(self) -> torch.device:
        """Where the model's weights are."""
        param: torch.nn.Parameter = next(self.model.parameters())
        return param.device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the model's (unquantized) weights and activations."""
        param: torch.nn.Parameter = next(self.model.parameters())
        return param.dtype

    @property
    def eos_token_ids(self) -> frozenset[int]:
        """End-of-turn ids: the generation config's ``eos_token_id`` plus the tokenizer's."""
        ids: set[int] = set()
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        ids.update([eos] if isinstance(eos, int) else (eos or []))
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return frozenset(ids)

    @property
    def context_window(self) -> int | None:
        """The model's maximum sequence length, when its config says."""
        return getattr(self.model.config, "max_position_embeddings", None)

    # -- text <-> ids ------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``, special tokens kept, no clean-up of spaces."""
        text = self.tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)
        return str(text)

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` in this model's tokenizer."""
        return len(self.encode(text))

    def render_prompt(self, messages: Sequence[Mapping[str, Any]], tools: ToolSpecs | None = None) -> str:
        """The conversation (and ``tools``, see :func:`prepare_chat`) in this model's chat template."""
        template = self.chat_template or getattr(self.tokenizer, "chat_template", None)
        if not template:
            msg = (
                f"the tokenizer of {self.name!r} has no chat template; pass chat_template= "
                "(e.g. spec_graph.generators.hf.PLAIN_CHAT_TEMPLATE)"
            )
            raise ValueError(msg)
        convo, tool_specs = prepare_chat(messages, tools, template)
        return str(
            self.tokenizer.apply_chat_template(
                convo, tools=tool_specs, chat_template=template, tokenize=False, add_generation_prompt=True
            )
        )

    @property
    def capabilities(self) -> Capabilities:
        """Those of its sessions (:data:`HF_CAPABILITIES`)."""
        return HF_CAPABILITIES

    def start(self, messages: Sequence[Mapping[str, Any]], tools: ToolSpecs | None = None) -> HFSession:
        """Open a session: render and tokenize the prompt (no model work yet).

        Raises ``ValueError`` when the prompt does not fit the model's context window (no
        truncation: cutting a question silently changes it).
        """
        prompt = self.encode(self.render_prompt(messages, tools))
        window = self.context_window
        if window is not None and len(prompt) >= window:
            msg = (
                f"the prompt is {len(prompt)} tokens but {self.name!r} has a context window of {window}: "
                "shorten the conversation"
            )
            raise ValueError(msg)
        return HFSession(self, prompt)


class HFSession(DeclaresCapabilities):
    """One run of an :class:`HFGenerator`: the run's token ids, KV cache and random state."""

    def __init__(self, gen: HFGenerator, prompt_ids: list[int]) -> None:
        """Start empty: the prompt is prefilled on the first call."""
        self._gen = gen
        self._prompt = prompt_ids
        self._cache = hf_cache.new_cache() if gen.use_cache else None
        self._cached: list[int] = []  # ids whose keys/values are in the cache, in order
        self._trace_ids = TraceIds(gen.encode, gen.decode, gen.tokenizer_key)
        self._warpers = Warpers()
        self._grammar: tuple[object, GrammarState] | None = None  # (the request's grammar, its state)

    @property
    def prompt_tokens(self) -> int:
        """Tokens of the rendered prompt."""
        return len(self._prompt)

    @property
    def capabilities(self) -> Capabilities:
        """Everything: a prefix it still caches, token stops, whole distributions, token-level access."""
        return HF_CAPABILITIES

    @property
    def tokenizer_key(self) -> str:
        """The generator's tokenizer key."""
        return self._gen.tokenizer_key

    # -- trace -> ids ------------------------------------------------------------------------
    def trace_ids(self, trace: Sequence[Span]) -> list[int]:
        """Ids of the trace in this model's tokenizer (see :class:`TraceIds`)."""
        return self._trace_ids(trace)

    # -- model calls -------------------------------------------------------------------------
    def _forward(self, ids: Sequence[int], keep: int = 1) -> torch.Tensor:
        model = self._gen.model
        if self._cache is None:  # recompute mode: the whole sequence every time
            self._cached.extend(ids)
            inp = torch.tensor([self._cached], device=self._gen.device)
            return hf_cache.forward_logits(model, inp, None, keep)
        inp = torch.tensor([list(ids)], device=self._gen.device)
        logits = hf_cache.forward_logits(model, inp, self._cache, keep)
        self._cached.extend(ids)
        return logits

    def _sync(self, target: list[int], keep: int = 1) -> tuple[torch.Tensor, int]:
        """Crop the cache to the common prefix with ``target`` and prefill the rest.

        Returns the logits after each of the last ``keep`` tokens of ``target`` (at least
        ``keep`` tokens are run, so none is missing) and the number of tokens that were run.
        """
        n = min(len(self._cached), len(target) - keep)
        if self._cached[:n] != target[:n]:
            n = next(i for i, (a, b) in enumerate(zip(self._cached, target, strict=False)) if a != b)
        if self._cache is not None:
            hf_cache.crop(self._cache, n)
        del self._cached[n:]
        return self._forward(target[n:], keep), len(target) - n

    def next_token_logits(self, trace: Sequence[Span]) -> torch.Tensor:
        """Logits for the token after ``trace`` (syncing the cache to it), shape ``(1, vocab)``."""
        with self._gen.lock, torch.inference_mode():
            return self._sync(self._prompt + self.trace_ids(trace))[0]

    def select(self, logits: torch.Tensor, req: GenerateRequest) -> int:
        """Pick the next token from ``logits`` (shape ``(1, vocab)``): greedy, or sampled as the request says."""
        if req.temperature == 0:
            return int(torch.argmax(logits, dim=-1).item())
        return int(torch.multinomial(self.probs(logits, req), 1, generator=self.rng(req, logits.device)).item())

    def probs(self, logits: torch.Tensor, req: GenerateRequest) -> torch.Tensor:
        """The sampling distribution of ``logits`` (shape ``(1, vocab)``) after temperature, top-k and top-p."""
        return self._warpers.probs(logits, req.temperature, req.top_p, req.top_k)

    def rng(self, req: GenerateRequest, device: torch.device) -> torch.Generator:
        """The session's random generator, seeded from the request on first use."""
        return self._warpers.rng(req.seed, device)

    def generate(self, trace: Sequence[Span], request: GenerateRequest) -> Segment:
        """Catch up on ``trace``, then write until a trigger, end of turn, a stop string or the limit.

        With ``request.token_stop`` it also stops before a token whose distribution the
        condition flags; with ``request.logprobs`` it records each token's statistics.
        """
        t0 = time.perf_counter()
        req = request
        stats: TokenStats | None = TokenStats() if (req.logprobs or req.token_stop) else None
        with self._gen.lock, torch.inference_mode():
            if (stopped := req.interrupted()) is not None:
                return Segment("", [], stopped, elapsed=time.perf_counter() - t0)
            target = self.context_ids(trace)
            max_tokens = self.room(target, req.max_tokens)
            if max_tokens <= 0:  # the model's context window is full
                return Segment("", [], "context", elapsed=time.perf_counter() - t0)
            replay = iter(req.prefix_ids)  # already written and cached: replayed, not sampled
            logits, prefill = self._sync(target + req.prefix_ids)
            grammar = self.grammar_state(req, target, logits.shape[-1])  # synced to the trace, whoever wrote it
            detok = self.detokenizer(target)
            writer = SegmentWriter(req, trace, self._gen.eos_token_ids, detok.push, max_tokens)
            while True:
                token = next(replay, None)
                replaying = token is not None
                if token is None:
                    if grammar is not None:
                        grammar.mask(logits)  # what the grammar forbids next gets -inf
                    if stats is not None:
                        top1, entropy = stats.measure(logits)
                        stop = req.token_stop
                        if stop is not None and len(writer.ids) >= stop.min_tokens and stop.met(top1, entropy):
                            writer.finish = "uncertain"
                            break
                    token = self.select(logits, req)
                    if stats is not None:
                        stats.take(token)
                elif stats is not None:
                    stats.unknown()
                if grammar is not None and not grammar.accept(token):  # a replayed token it rejects
                    break
                if writer.push(token):
                    break
                if not replaying:
                    logits = self._forward([token])
            writer.flush(detok.flush())
        seg = writer.segment(
            prefill=prefill, elapsed=time.perf_counter() - t0, reused=min(len(req.prefix_ids), len(writer.ids))
        )
        if stats is not None and req.logprobs:
            seg.logprobs, seg.top1_probs, seg.entropies = stats.logprobs, stats.top1, stats.entropy
        return seg

    def grammar_state(self, req: GenerateRequest, context: list[int], vocab_size: int) -> GrammarState | None:
        """The request's grammar state synced to ``context``'s trace ids (``None`` without a grammar)."""
        if req.grammar is None:
            return None
        if self._grammar is None or self._grammar[0] is not req.grammar:
            gen = self._gen
            state = req.grammar.state(gen.tokenizer, gen.tokenizer_key, vocab_size, sorted(gen.eos_token_ids))
            self._grammar = (req.grammar, state)
        self._grammar[1].sync(context[len(self._prompt) :])
        return self._grammar[1]

    # -- token-level access (draft-and-verify) -------------------------------------------------
    def context_ids(self, trace: Sequence[Span]) -> list[int]:
        """The prompt and the trace in this model's tokens (a new list)."""
        return self._prompt + self.trace_ids(trace)

    def room(self, context: Sequence[int], wanted: int) -> int:
        """Tokens that may follow ``context``: ``wanted``, or less where the context window ends."""
        window = self._gen.context_window
        return min(wanted, window - len(context)) if window else wanted

    def next_logits(self, ids: list[int], keep: int = 1) -> tuple[torch.Tensor, int]:
        """Sync the cache to ``ids`` and return the logits after each of its last ``keep`` tokens.

        Row ``i`` of the ``(keep, vocab)`` result predicts the token after ``ids[: len(ids) - keep + i + 1]``.
        Also returns how many tokens had to be run. Call it holding :attr:`lock`, in inference mode.
        """
        return self._sync(ids, keep)

    @property
    def lock(self) -> threading.RLock:
        """The model's lock (one thread runs a model at a time)."""
        return self._gen.lock

    @property
    def eos_token_ids(self) -> frozenset[int]:
        """End-of-turn ids."""
        return self._gen.eos_token_ids

    def detokenizer(self, context: Sequence[int]) -> Detokenizer:
        """An incremental decoder for tokens that follow ``context``."""
        return Detokenizer(self._gen.decode, context)

    def close(self) -> None:
        """Drop the KV cache."""
        self._cache = hf_cache.new_cache() if self._cache is not None else None
        self._cached = []
