"""Running one call to a served model to its end: which failures are retried, how long to wait, when to stop.

The loop is written here rather than with ``tenacity``: a retry continues the stream from the text
already received (the call's state), a wait ends early when the run is cancelled, and a deadline
or a full context ends the call with a finish reason instead of an error (``docs/serving.md``,
"Why not the openai SDK for the requests, or tenacity for the retries").
"""

from __future__ import annotations

import logging
import random
import time

import httpx

from spec_graph.generators.remote_call import Call
from spec_graph.generators.remote_errors import (
    FatalAttempt,
    RemoteGeneratorError,
    RetryableAttempt,
    says_context_is_full,
)

__all__ = ["run"]

logger = logging.getLogger("spec_graph.generators.remote")

FAILURES = (FatalAttempt, RetryableAttempt, httpx.TransportError, httpx.HTTPStatusError)
"""What a failed attempt raises (anything else is a bug and propagates as it is)."""


def run(call: Call) -> None:
    """Send ``call``'s attempts until it has a finish reason; raise :class:`RemoteGeneratorError` when it cannot."""
    req = call.req
    while call.finish is None:
        try:
            call.start_attempt()
            if call.finish is not None:
                break
            call.server.resolve()
            call.server.post(call.endpoint, call.body(), req.deadline, call.on_payload)
            call.end_attempt()
        except FAILURES as exc:
            delay = _after_failure(call, exc)
            if delay is None:
                break
            if req.cancel is not None:
                if req.cancel.wait(delay):
                    call.finish = "cancelled"
            else:
                time.sleep(delay)
        if call.finish is None and (stopped := req.interrupted()) is not None:
            call.finish = stopped


def _after_failure(call: Call, exc: Exception) -> float | None:
    """Raise when a failed attempt is final; else the seconds to wait (``None``: the call has ended)."""
    if isinstance(exc, FatalAttempt):
        if says_context_is_full(exc):  # the prompt does not fit: the call ends with finish "context"
            call.finish = "context"
            return None
        raise _error(call, exc, retryable=False) from exc
    if isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code < 500:
        raise _error(call, exc, retryable=False) from exc
    deadline = call.req.deadline
    if deadline is not None and time.monotonic() >= deadline:
        call.finish = "time"
        return None
    call.failures += 1
    if call.failures > call.options.retries:
        raise _error(call, exc, retryable=True) from exc
    delay = call.options.backoff_delay(call.failures, random.uniform(0.5, 1.0))
    if deadline is not None and time.monotonic() + delay >= deadline:
        call.finish = "time"
        return None
    what, _ = _describe(exc)
    retries = call.options.retries
    logger.warning(
        "%s at %s: %s; retry %d of %d in %.2fs", call.name, call.server.url, what, call.failures, retries, delay
    )
    return delay


def _describe(exc: BaseException) -> tuple[str, int | None]:
    """What went wrong, for messages, and the HTTP status when there was one."""
    if isinstance(exc, RetryableAttempt | FatalAttempt):
        return str(exc), exc.status
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer within the timeout ({type(exc).__name__})", None
    return f"{type(exc).__name__}: {exc}", None


def _error(call: Call, exc: BaseException, *, retryable: bool) -> RemoteGeneratorError:
    """The error a failed call raises, carrying what it had received."""
    what, status = _describe(exc)
    tries = f"after {call.attempts} attempt{'s' * (call.attempts != 1)}"
    msg = f"{call.name!r} at {call.server.url}: {what} ({tries}); {len(call.text)} characters were written"
    return RemoteGeneratorError(
        msg,
        url=call.server.url,
        model=call.server.model_name or "?",
        attempts=call.attempts,
        status=status,
        retryable=retryable,
        partial_text=call.text,
        partial_token_ids=call.token_ids()[0],
    )
