"""One request to a served model: the body, the streamed text checked piece by piece, retries.

:class:`Call` is what :meth:`~spec_graph.generators.remote.RemoteSession.generate` runs (the
module doc of :mod:`spec_graph.generators.remote` says what is sent and how faults are handled).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import httpx

from spec_graph.generators.base import GenerateRequest, Segment, SegmentFinish, Span, find_trigger

if TYPE_CHECKING:
    from spec_graph.generators.remote import RemoteSession

__all__ = ["Call", "RemoteGeneratorError"]

logger = logging.getLogger("spec_graph.generators.remote")

_RETRY_STATUS = frozenset({408, 429})
_CONTEXT_ERRORS = ("maximum context length", "context length", "context_length_exceeded", "too long")


class RemoteGeneratorError(RuntimeError):
    """A served model could not write: retries used up, or an answer that retrying cannot fix.

    Attributes:
        url: the endpoint (without credentials).
        model: the served model's name.
        attempts: requests made for the failing call.
        status: the last HTTP status, ``None`` for a timeout or connection error.
        retryable: whether the failure was of a retried kind (and retries ran out).
        partial_text: what the failing call had received (and streamed) before it failed.
        partial_token_ids: its token ids (see the module doc; placeholders without a tokenizer).
    """

    def __init__(
        self,
        message: str,
        *,
        url: str,
        model: str,
        attempts: int,
        status: int | None = None,
        retryable: bool = True,
        partial_text: str = "",
        partial_token_ids: Sequence[int] = (),
    ) -> None:
        super().__init__(message)
        self.url, self.model, self.attempts, self.status = url, model, attempts, status
        self.retryable = retryable
        self.partial_text = partial_text
        self.partial_token_ids = list(partial_token_ids)


class _Retryable(Exception):
    """One attempt failed in a way worth retrying."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class _Fatal(Exception):
    """One attempt failed in a way retrying cannot fix (a 4xx answer)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class Call:
    """One :meth:`RemoteSession.generate` call: the request bodies, the streamed text, the checks."""

    def __init__(self, session: RemoteSession, trace: Sequence[Span], req: GenerateRequest, index: int) -> None:
        self.t0 = time.perf_counter()
        self.s, self.gen, self.req, self.index = session, session._gen, req, index
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
        self.logprobs: list[float] = []
        self.top1: list[float] = []
        self.wants_logprobs = session._gen.logprobs or req.logprobs
        self.attempts = 0
        self.failures = 0
        self.truncated = False  # the server wrote more than we kept
        self.max_tokens = req.max_tokens
        self.context_limited = False
        self.base_ids: list[int] | None = None
        if (stopped := req.interrupted()) is not None:
            self.finish = stopped
            return
        needs_ids = self.gen.prompt_format == "ids" or self.gen.context_window is not None
        if session._trace_ids is not None and session._prompt_ids is not None and needs_ids:
            self.base_ids = session._prompt_ids + session.trace_ids(trace)
            window = self.gen.context_window
            if window is not None:
                room = window - len(self.base_ids)
                if room <= 0:
                    self.finish = "context"
                    return
                if room < self.max_tokens:
                    self.max_tokens, self.context_limited = room, True

    # -- requests ----------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        """The URL the request goes to (completions or chat completions)."""
        return f"{self.gen.base_url}/{'chat/completions' if self.gen.api == 'chat' else 'completions'}"

    def written_tokens(self) -> int:
        """Tokens received so far (for the budget of a continuation)."""
        if not self.text:
            return 0
        if self.gen.tokenizer is not None:
            return len(self.gen.encode(self.text))
        return self.chunks

    def body(self) -> dict[str, Any]:
        """The JSON body of the next attempt (a retry continues after the text already received)."""
        gen, req = self.gen, self.req
        body: dict[str, Any] = {"model": gen.model}
        if gen.api == "chat":
            messages = list(self.s.messages)
            prefix = self.trace_text + self.text
            if prefix:
                messages.append({"role": "assistant", "content": prefix})
                body.update(continue_final_message=True, add_generation_prompt=False)
            body["messages"] = messages
        elif gen.prompt_format == "ids":
            assert self.base_ids is not None
            body["prompt"] = self.base_ids + (gen.encode(self.text) if self.text else [])
        else:
            assert self.s.prompt_text is not None
            body["prompt"] = self.s.prompt_text + self.trace_text + self.text
        body["max_tokens"] = self.max_tokens - self.written_tokens()
        body["temperature"] = req.temperature
        if req.temperature > 0 and req.top_p < 1.0:
            body["top_p"] = req.top_p
        if req.seed is not None:
            body["seed"] = req.seed + self.index - 1  # a fresh random stream per call, reproducible
        stops = [*(req.triggers if req.stop_at_trigger else ()), *req.stop]
        if stops:
            body["stop"] = list(dict.fromkeys(stops))
        if gen.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        if self.wants_logprobs:  # with the top token, for its probability (Segment.top1_probs)
            if gen.api == "chat":
                body["logprobs"], body["top_logprobs"] = True, 1
            else:
                body["logprobs"] = 1
        if gen.engine == "vllm":
            body["include_stop_str_in_output"] = True
        elif gen.engine == "sglang":
            body["no_stop_trim"] = True
        if gen.engine in ("vllm", "sglang") and req.top_k > 0 and req.temperature > 0:
            body["top_k"] = req.top_k
        body.update(gen.extra_body)
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
        for piece in self.gen.pieces(delta):
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
            raise _Retryable(msg)
        usage = data.get("usage")
        if isinstance(usage, Mapping):
            self._take_usage(usage)
        for choice in data.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            if self.gen.api == "chat":
                part = choice.get("delta") or choice.get("message") or {}
                text = part.get("content") or ""
            else:
                text = choice.get("text") or ""
            if text and self.finish is not None:
                self.truncated = True
                return True
            if self.finish is None:
                self._take_logprobs(choice.get("logprobs"))
            self.on_delta(text)
            if self.finish in ("time", "cancelled"):
                return True
            reason = choice.get("finish_reason")
            if reason:
                matched = choice.get("stop_reason", choice.get("matched_stop"))
                if self.finish is None and isinstance(matched, str) and matched and not self.text.endswith(matched):
                    self.on_delta(matched)  # the server stripped the stop string: put it back
                self.server_finish = str(reason)
        return False

    def _take_usage(self, usage: Mapping[str, Any]) -> None:
        if isinstance(usage.get("completion_tokens"), int):
            self.usage_tokens += usage["completion_tokens"]
            self.usage_seen = True
        prompt = usage.get("prompt_tokens")
        if isinstance(prompt, int):
            details = usage.get("prompt_tokens_details") or {}
            cached = details.get("cached_tokens") if isinstance(details, Mapping) else None
            self.prefill += prompt - (cached or 0)
            if self.s._prompt_tokens == 0 and self.index == 1:
                self.s._prompt_tokens = prompt  # no tokenizer: the server's count of the first prompt

    def _take_logprobs(self, lp: Any) -> None:
        if not self.wants_logprobs or not isinstance(lp, Mapping):
            return
        if isinstance(lp.get("token_logprobs"), list):  # completions
            chosen = [float(x) for x in lp["token_logprobs"] if x is not None]
            tops: list[Any] = lp["top_logprobs"] if isinstance(lp.get("top_logprobs"), list) else []
            best: list[float | None] = [float(max(t.values())) if isinstance(t, Mapping) and t else None for t in tops]
        elif isinstance(lp.get("content"), list):  # chat
            items = [x for x in lp["content"] if isinstance(x, Mapping)]
            chosen = [float(x["logprob"]) for x in items]
            best = [max((float(t["logprob"]) for t in x.get("top_logprobs") or []), default=None) for x in items]
        else:
            return
        self.logprobs.extend(chosen)
        # The top token is at least as likely as the chosen one (servers may omit top_logprobs).
        for i, value in enumerate(chosen):
            top = best[i] if i < len(best) else None
            self.top1.append(math.exp(max(top if top is not None else value, value)))

    def end_attempt(self) -> None:
        """After a stream or answer ended: settle the finish, or raise to retry a cut stream."""
        if self.finish is not None:
            return
        if self.server_finish is None:
            msg = "the answer ended before the server said why it stopped"
            raise _Retryable(msg)
        if self.server_finish == "length":
            self.finish = "context" if self.context_limited else "length"
        elif self.server_finish in ("abort", "error"):
            msg = f"the server ended the answer with {self.server_finish!r}"
            raise _Retryable(msg)
        else:
            self.finish = "eos"

    def start_attempt(self) -> None:
        """Count an attempt and reset its per-attempt state; end the call if no budget is left."""
        self.attempts += 1
        self.server_finish = None
        self.usage_seen = False
        if self.max_tokens - self.written_tokens() <= 0:
            self.finish = "context" if self.context_limited else "length"

    # -- retries -----------------------------------------------------------------------------
    def _describe(self, exc: BaseException) -> tuple[str, int | None]:
        if isinstance(exc, _Retryable | _Fatal):
            return str(exc), exc.status
        if isinstance(exc, httpx.TimeoutException):
            return f"no answer within the timeout ({type(exc).__name__})", None
        return f"{type(exc).__name__}: {exc}", None

    def _error(self, exc: BaseException, *, retryable: bool) -> RemoteGeneratorError:
        what, status = self._describe(exc)
        tries = f"after {self.attempts} attempt{'s' * (self.attempts != 1)}"
        msg = f"{self.gen.name!r} at {self.gen.url}: {what} ({tries}); {len(self.text)} characters were written"
        return RemoteGeneratorError(
            msg,
            url=self.gen.url,
            model=self.gen._model or "?",
            attempts=self.attempts,
            status=status,
            retryable=retryable,
            partial_text=self.text,
            partial_token_ids=self.token_ids()[0],
        )

    def _on_failure(self, exc: Exception) -> float | None:
        """Raise when a failed attempt is final, else the seconds to wait (``None``: stop trying)."""
        if isinstance(exc, _Fatal):
            if self._context_full(exc):
                return None
            raise self._error(exc, retryable=False) from exc
        if isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code < 500:
            raise self._error(exc, retryable=False) from exc
        return self._after_failure(exc)

    def _after_failure(self, exc: BaseException) -> float | None:
        """Raise when retries are used up; else the seconds to wait (``None``: the deadline passed)."""
        if self.req.deadline is not None and time.monotonic() >= self.req.deadline:
            self.finish = "time"
            return None
        self.failures += 1
        if self.failures > self.gen.retries:
            raise self._error(exc, retryable=True) from exc
        delay = min(self.gen.max_backoff, self.gen.backoff * 2 ** (self.failures - 1)) * random.uniform(0.5, 1.0)
        if self.req.deadline is not None and time.monotonic() + delay >= self.req.deadline:
            self.finish = "time"
            return None
        what, _ = self._describe(exc)
        logger.warning(
            "%s at %s: %s; retry %d of %d in %.2fs",
            self.gen.name,
            self.gen.url,
            what,
            self.failures,
            self.gen.retries,
            delay,
        )
        return delay

    def _context_full(self, exc: _Fatal) -> bool:
        """A 400 that says the prompt does not fit: the call ends with finish ``"context"``."""
        if exc.status == 400 and any(k in str(exc).lower() for k in _CONTEXT_ERRORS):
            self.finish = "context"
            return True
        return False

    @staticmethod
    def _check_status(status: int, text: str) -> None:
        if status < 400:
            return
        detail = text.strip().replace("\n", " ")[:500]
        if status >= 500 or status in _RETRY_STATUS:
            msg = f"HTTP {status}: {detail}"
            raise _Retryable(msg, status)
        msg = f"HTTP {status}: {detail}"
        raise _Fatal(msg, status)

    def _feed_lines(self, line: str) -> bool:
        line = line.strip()
        if not line.startswith("data:"):
            return False
        payload = line[5:].strip()
        if payload == "[DONE]":
            return True
        try:
            data = json.loads(payload)
        except json.JSONDecodeError as exc:
            msg = f"the server sent an unreadable event: {payload[:200]!r}"
            raise _Retryable(msg) from exc
        return self.on_payload(data)

    def run_sync(self) -> None:
        """Run the call to its end on the shared ``httpx.Client``, retrying as configured."""
        gen = self.gen
        while self.finish is None:
            try:
                self.start_attempt()
                if self.finish is not None:
                    break
                gen.resolve()
                with gen._slots or contextlib.nullcontext():
                    self._attempt_sync()
                self.end_attempt()
            except (_Fatal, _Retryable, httpx.TransportError, httpx.HTTPStatusError) as exc:
                delay = self._on_failure(exc)
                if delay is None:
                    break
                if self.req.cancel is not None:
                    if self.req.cancel.wait(delay):
                        self.finish = "cancelled"
                else:
                    time.sleep(delay)
            if self.finish is None and (stopped := self.req.interrupted()) is not None:
                self.finish = stopped

    def _attempt_sync(self) -> None:
        gen = self.gen
        timeout = gen._http_timeout(self.req.deadline)
        with gen.client.stream("POST", self.endpoint, json=self.body(), timeout=timeout) as resp:
            if resp.status_code >= 400:
                resp.read()
                self._check_status(resp.status_code, resp.text)
            if gen.stream:
                for line in resp.iter_lines():
                    if self._feed_lines(line):
                        break
            else:
                self.on_payload(json.loads(resp.read()))

    async def run_async(self) -> None:
        """Run the call to its end on the event loop's ``httpx.AsyncClient``, retrying as configured."""
        gen = self.gen
        while self.finish is None:
            try:
                self.start_attempt()
                if self.finish is not None:
                    break
                await gen.aresolve()
                slot = gen._aslot()
                async with slot or contextlib.nullcontext():
                    await self._attempt_async()
                self.end_attempt()
            except (_Fatal, _Retryable, httpx.TransportError, httpx.HTTPStatusError) as exc:
                delay = self._on_failure(exc)
                if delay is None:
                    break
                await asyncio.sleep(delay)
            if self.finish is None and (stopped := self.req.interrupted()) is not None:
                self.finish = stopped

    async def _attempt_async(self) -> None:
        gen = self.gen
        timeout = gen._http_timeout(self.req.deadline)
        async with gen.aclient().stream("POST", self.endpoint, json=self.body(), timeout=timeout) as resp:
            if resp.status_code >= 400:
                await resp.aread()
                self._check_status(resp.status_code, resp.text)
            if gen.stream:
                async for line in resp.aiter_lines():
                    if self._feed_lines(line):
                        break
            else:
                self.on_payload(json.loads(await resp.aread()))

    # -- the result --------------------------------------------------------------------------
    def token_ids(self) -> tuple[list[int], int | None]:
        """Ids of the text (and the token count of its first boundary)."""
        gen = self.gen
        eos = self.finish == "eos"
        n_head: int | None = None
        if gen.tokenizer is not None:
            head = self.text[: self.boundary[1]] if self.boundary else self.text
            ids = gen.encode(head) if head else []
            n_head = len(ids) if self.boundary else None
            rest = self.text[len(head) :]
            if rest:
                ids += gen.encode(rest)
            if eos and gen.eos_token_id is not None:
                ids.append(gen.eos_token_id)
            return ids, n_head
        n = self.chunks + (1 if eos else 0)
        if not self.truncated and self.attempts == 1 and self.usage_seen and self.usage_tokens:
            n = self.usage_tokens  # the server's own count, when we kept all it wrote
        if self.boundary is not None:
            chunks, chars = self.boundary
            n_head = chunks if self.gen.stream else max(1, round(n * chars / max(1, len(self.text))))
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
