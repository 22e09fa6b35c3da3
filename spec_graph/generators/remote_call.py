"""One request to a served model: the body of each attempt, the streamed text checked piece by piece, the segment.

:class:`Call` is what :meth:`~spec_graph.generators.remote.RemoteSession.generate` runs, through
:func:`~spec_graph.generators.remote_retry.run` (the module doc of :mod:`spec_graph.generators.remote`
says what is sent and how faults are handled).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from spec_graph.generators.base import GenerateRequest, Segment, SegmentFinish, Span, find_trigger
from spec_graph.generators.remote_answer import choice_text, stripped_stop, token_logprobs, usage_counts
from spec_graph.generators.remote_errors import RetryableAttempt
from spec_graph.generators.remote_http import Server
from spec_graph.generators.remote_options import RemoteOptions
from spec_graph.generators.remote_tokenizer import ServedTokenizer
from spec_graph.generators.tool_prompt import ToolSpecs, wire_messages

__all__ = ["Call", "Plan"]


@dataclass(frozen=True)
class Plan:
    """What one call continues and within which limit, settled by its session."""

    index: int
    """The call's number in its session (1 for the first): a fresh, reproducible seed per call."""
    messages: Sequence[Mapping[str, Any]]
    prompt_text: str | None
    """The rendered conversation (``api="completions"``)."""
    base_ids: list[int] | None
    """Ids of the prompt and the trace (built when ``prompt_format="ids"`` or a context window needs them)."""
    max_tokens: int
    context_limited: bool = False
    """``max_tokens`` is what the context window leaves (a full budget is then finish ``"context"``)."""
    tools: ToolSpecs | None = None
    """Bound tools (OpenAI format), sent to the server with ``api="chat"``."""


class Call:
    """One :meth:`RemoteSession.generate` call: the request bodies, the streamed text, the checks."""

    def __init__(
        self,
        server: Server,
        tokens: ServedTokenizer,
        options: RemoteOptions,
        plan: Plan,
        trace: Sequence[Span],
        req: GenerateRequest,
    ) -> None:
        """Set up the call; it is sent by :meth:`run`."""
        self.t0 = time.perf_counter()
        self.server, self.tokens, self.options, self.plan, self.req = server, tokens, options, plan, req
        tail_len = max(len(t) for t in (*req.triggers, *req.stop, "x"))
        self.tail = "".join(s["text"] for s in trace[-8:])[-tail_len:]
        self.trace_text = "".join(s["text"] for s in trace)
        self.text = ""
        self.chunks = 0
        self.boundary: tuple[int, int] | None = None  # (chunks, chars)
        self.finish: SegmentFinish | None = None
        self.server_finish: str | None = None
        self.usage_tokens = 0  # completion tokens the server reported
        self.usage_seen = False  # in the current attempt
        self.prefill = 0
        self.prompt_tokens: int | None = None
        """The server's count of the prompt (the first it reported)."""
        self.logprobs: list[float] = []
        self.top1: list[float] = []
        self.wants_logprobs = options.logprobs or req.logprobs
        self.attempts = 0
        self.failures = 0
        self.truncated = False  # the server wrote more than we kept
        self.max_tokens, self.context_limited = plan.max_tokens, plan.context_limited
        if (stopped := req.interrupted()) is not None:
            self.finish = stopped
        elif self.max_tokens <= 0:
            self.finish = "context"

    @property
    def name(self) -> str:
        """The model's display name."""
        return self.options.name or self.server.label

    # -- requests ----------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        """The URL the request goes to (completions or chat completions)."""
        return f"{self.server.base_url}/{'chat/completions' if self.options.api == 'chat' else 'completions'}"

    def written_tokens(self) -> int:
        """Tokens received so far (for the budget of a continuation)."""
        if not self.text:
            return 0
        if self.tokens.tokenizer is not None:
            return len(self.tokens.encode(self.text))
        return self.chunks

    def body(self) -> dict[str, Any]:
        """The JSON body of the next attempt (a retry continues after the text already received)."""
        opts, req, engine = self.options, self.req, self.server.engine
        body: dict[str, Any] = {"model": self.server.model_name}
        if opts.api == "chat":
            messages = wire_messages(self.plan.messages)
            prefix = self.trace_text + self.text
            if prefix:
                messages.append({"role": "assistant", "content": prefix})
                body.update(continue_final_message=True, add_generation_prompt=False)
            body["messages"] = messages
            if self.plan.tools:
                body["tools"] = [dict(t) for t in self.plan.tools]
        elif opts.prompt_format == "ids":
            assert self.plan.base_ids is not None
            body["prompt"] = self.plan.base_ids + (self.tokens.encode(self.text) if self.text else [])
        else:
            assert self.plan.prompt_text is not None
            body["prompt"] = self.plan.prompt_text + self.trace_text + self.text
        body["max_tokens"] = self.max_tokens - self.written_tokens()
        body["temperature"] = req.temperature
        if req.temperature > 0 and req.top_p < 1.0:
            body["top_p"] = req.top_p
        if req.response_format and engine in ("vllm", "sglang") and not (self.trace_text or self.text):
            body["response_format"] = dict(req.response_format)  # guided decoding from the answer's start
        if req.seed is not None:
            body["seed"] = req.seed + self.plan.index - 1  # a fresh random stream per call, reproducible
        stops = [*(req.triggers if req.stop_at_trigger else ()), *req.stop]
        if stops:
            body["stop"] = list(dict.fromkeys(stops))
        if opts.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        if self.wants_logprobs:  # with the top token, for its probability (Segment.top1_probs)
            if opts.api == "chat":
                body["logprobs"], body["top_logprobs"] = True, 1
            else:
                body["logprobs"] = 1
        if engine == "vllm":
            body["include_stop_str_in_output"] = True
        elif engine == "sglang":
            body["no_stop_trim"] = True
        if engine in ("vllm", "sglang") and req.top_k > 0 and req.temperature > 0:
            body["top_k"] = req.top_k
        body.update(opts.extra_body)
        return body

    # -- what comes back ---------------------------------------------------------------------
    def on_delta(self, delta: str) -> None:
        """Take one streamed piece of text (a token), checked as the local generator checks it."""
        if not delta:
            return
        if self.finish is not None:  # the server wrote on past an end we saw (e.g. a seam trigger)
            self.truncated = True
            return
        req = self.req
        base = len(self.tail) + len(self.text)
        window = self.tail + self.text + delta
        stop_end = find_trigger(window, req.stop, base) if req.stop else None
        trig_end = find_trigger(window, req.triggers, base) if self.boundary is None else None
        stop_at = None if stop_end is None else self._token_end(delta, stop_end - base)
        trig_at = None if trig_end is None else self._token_end(delta, trig_end - base)
        if trig_at is not None and stop_at is not None and trig_at >= stop_at:
            trig_at = None  # the stop string ends the call first (the local generator checks it first)
        cut: int | None = None
        if stop_at is not None:
            self.finish, cut = "stop", stop_at
        elif trig_at is not None and req.stop_at_trigger:
            self.finish, cut = "trigger", trig_at
        if cut is not None and cut < len(delta):
            delta, self.truncated = delta[:cut], True
        if trig_at is not None:
            self.boundary = (self.chunks + 1, len(self.text) + trig_at)
        self.text += delta
        self.chunks += 1
        if req.on_text is not None:
            req.on_text(delta)
        if self.finish is None and (stopped := req.interrupted()) is not None:
            self.finish = stopped

    def _token_end(self, delta: str, end: int) -> int:
        """Length of ``delta`` up to the end of the token holding its character ``end - 1``."""
        if end >= len(delta):
            return len(delta)
        pos = 0
        for piece in self.tokens.pieces(delta):
            pos += len(piece)
            if pos >= end:
                return pos
        return len(delta)

    def on_payload(self, data: Mapping[str, Any]) -> bool:
        """Take one JSON answer or stream event; ``True`` when reading must stop now.

        After the text is complete (a stop string or trigger) the stream is read on until the
        server's closing event, for its token counts, but no further than one more token.
        """
        if "error" in data and not data.get("choices"):
            err = data["error"]
            msg = f"the server reported an error mid-answer: {err}"
            raise RetryableAttempt(msg)
        usage = data.get("usage")
        if isinstance(usage, Mapping):
            self._take_usage(usage)
        for choice in data.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            text = choice_text(choice, self.options.api == "chat")
            if text and self.finish is not None:
                self.truncated = True
                return True
            if self.finish is None and self.wants_logprobs:
                for logprob, top1 in token_logprobs(choice.get("logprobs")):
                    self.logprobs.append(logprob)
                    self.top1.append(top1)
            self.on_delta(text)
            if self.finish in ("time", "cancelled"):
                return True
            reason = choice.get("finish_reason")
            if reason:
                matched = stripped_stop(choice)
                if self.finish is None and matched is not None and not self.text.endswith(matched):
                    self.on_delta(matched)  # the server stripped the stop string: put it back
                self.server_finish = str(reason)
        return False

    def _take_usage(self, usage: Mapping[str, Any]) -> None:
        completion, prompt, run = usage_counts(usage)
        if completion is not None:
            self.usage_tokens += completion
            self.usage_seen = True
        self.prefill += run
        if prompt is not None and self.prompt_tokens is None:
            self.prompt_tokens = prompt

    def end_attempt(self) -> None:
        """After a stream or answer ended: settle the finish, or raise to retry a cut stream."""
        if self.finish is not None:
            return
        if self.server_finish is None:
            msg = "the answer ended before the server said why it stopped"
            raise RetryableAttempt(msg)
        if self.server_finish == "length":
            self.finish = "context" if self.context_limited else "length"
        elif self.server_finish in ("abort", "error"):
            msg = f"the server ended the answer with {self.server_finish!r}"
            raise RetryableAttempt(msg)
        else:
            self.finish = "eos"

    def start_attempt(self) -> None:
        """Count an attempt and reset its per-attempt state; end the call if no budget is left."""
        self.attempts += 1
        self.server_finish = None
        self.usage_seen = False
        if self.max_tokens - self.written_tokens() <= 0:
            self.finish = "context" if self.context_limited else "length"

    # -- the result --------------------------------------------------------------------------
    def token_ids(self) -> tuple[list[int], int | None]:
        """Ids of the text (and the token count of its first boundary)."""
        tokens = self.tokens
        eos = self.finish == "eos"
        n_head: int | None = None
        if tokens.tokenizer is not None:
            head = self.text[: self.boundary[1]] if self.boundary else self.text
            ids = tokens.encode(head) if head else []
            n_head = len(ids) if self.boundary else None
            rest = self.text[len(head) :]
            if rest:
                ids += tokens.encode(rest)
            if eos and tokens.eos_token_id is not None:
                ids.append(tokens.eos_token_id)
            return ids, n_head
        n = self.chunks + (1 if eos else 0)
        if not self.truncated and self.attempts == 1 and self.usage_seen and self.usage_tokens:
            n = self.usage_tokens  # the server's own count, when we kept all it wrote
        if self.boundary is not None:
            chunks, chars = self.boundary
            n_head = chunks if self.options.stream else max(1, round(n * chars / max(1, len(self.text))))
            n = max(n, n_head)
        return [-1] * n, n_head

    def segment(self) -> Segment:
        """The finished call as a :class:`~spec_graph.generators.base.Segment`."""
        ids, n_head = self.token_ids()
        first_boundary = (n_head, self.boundary[1]) if self.boundary is not None and n_head is not None else None
        return Segment(
            text=self.text,
            token_ids=ids,
            finish_reason=self.finish or "length",
            first_boundary=first_boundary,
            prefill_tokens=self.prefill,
            elapsed=time.perf_counter() - self.t0,
            logprobs=self.logprobs if self.wants_logprobs else None,
            top1_probs=self.top1 if self.wants_logprobs else None,
        )
