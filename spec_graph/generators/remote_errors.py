"""How a call to a served model fails: the error a user sees, and the two kinds of failed attempt."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["FatalAttempt", "RemoteGeneratorError", "RetryableAttempt", "check_status", "says_context_is_full"]

RETRY_STATUS = frozenset({408, 429})
"""4xx answers worth retrying (with every 5xx)."""
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
        partial_token_ids: its token ids (placeholders, ``-1``, without a local tokenizer).
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
        """Keep the details next to the message."""
        super().__init__(message)
        self.url, self.model, self.attempts, self.status = url, model, attempts, status
        self.retryable = retryable
        self.partial_text = partial_text
        self.partial_token_ids = list(partial_token_ids)


class RetryableAttempt(Exception):
    """One attempt failed in a way worth retrying (a 5xx, a 408/429, a cut or unreadable stream)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        """``status``: the HTTP status, when there was one."""
        super().__init__(message)
        self.status = status


class FatalAttempt(Exception):
    """One attempt failed in a way retrying cannot fix (another 4xx answer)."""

    def __init__(self, message: str, status: int) -> None:
        """``status``: the HTTP status."""
        super().__init__(message)
        self.status = status


def check_status(status: int, text: str) -> None:
    """Raise :class:`RetryableAttempt` or :class:`FatalAttempt` for an HTTP error status (``text``: its body)."""
    if status < 400:
        return
    msg = f"HTTP {status}: {text.strip().replace(chr(10), ' ')[:500]}"
    if status >= 500 or status in RETRY_STATUS:
        raise RetryableAttempt(msg, status)
    raise FatalAttempt(msg, status)


def says_context_is_full(exc: FatalAttempt) -> bool:
    """A 400 that says the prompt does not fit the model's context window."""
    return exc.status == 400 and any(k in str(exc).lower() for k in _CONTEXT_ERRORS)
