"""What a session does with each token it writes, however the token was chosen.

:class:`SegmentWriter` turns a stream of token ids into a :class:`Segment`: it decodes them,
streams the text, and ends the segment at an end-of-turn token, a user stop string, a trigger
(or only records it), the token limit, a cancelled run or the deadline. Plain decoding and
draft-and-verify (:mod:`spec_graph.generators.drafting`) share it, so both end a segment
at exactly the same token.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

from spec_graph.generators.base import GenerateRequest, Segment, SegmentFinish, Span, find_trigger


class SegmentWriter:
    """Accumulates the tokens of one call and decides when the call is over.

    Args:
        request: the call's request (triggers, stop strings, limits, callbacks).
        trace: the trace the call continues (its tail is searched for strings that the new
            text completes).
        eos: end-of-turn token ids.
        push_text: decodes one more token id, returning the new text (``""`` while a
            multi-byte character is incomplete).
        max_tokens: the call's token limit (the request's, or less where the context window
            is nearly full: reaching it then ends the call with ``"context"``).
    """

    def __init__(
        self,
        request: GenerateRequest,
        trace: Sequence[Span],
        eos: Collection[int],
        push_text: Callable[[int], str],
        max_tokens: int,
    ) -> None:
        """Start an empty segment."""
        self.request = request
        self._tail = "".join(s["text"] for s in trace[-8:])
        self._tail_len = max(len(t) for t in (*request.triggers, *request.stop, "x"))
        self._eos = eos
        self._push_text = push_text
        self.max_tokens = max_tokens
        self.ids: list[int] = []
        self.text = ""
        self.finish: SegmentFinish = "length"
        self.first_boundary: tuple[int, int] | None = None

    @property
    def room(self) -> int:
        """Tokens the call may still write."""
        return self.max_tokens - len(self.ids)

    def push(self, token: int) -> bool:
        """Add a written token; ``True`` when the call is over (then :attr:`finish` says why)."""
        req = self.request
        self.ids.append(token)
        if token in self._eos:
            self.finish = "eos"
            return True
        delta = self._push_text(token)
        if delta and self._text(delta):
            return True
        if len(self.ids) >= self.max_tokens:
            self.finish = "length" if self.max_tokens == req.max_tokens else "context"
            return True
        if (stopped := req.interrupted()) is not None:
            self.finish = stopped
            return True
        return False

    def _text(self, delta: str) -> bool:
        """Append decoded text; ``True`` when a stop string or a stopping trigger completed."""
        req = self.request
        start = len(self.text)
        self.text += delta
        if req.on_text is not None:
            req.on_text(delta)
        window = self._tail[-self._tail_len :] + self.text
        offset = len(window) - len(self.text) + start
        if req.stop and find_trigger(window, req.stop, offset) is not None:
            self.finish = "stop"
            return True
        if self.first_boundary is None and find_trigger(window, req.triggers, offset) is not None:
            self.first_boundary = (len(self.ids), len(self.text))
            if req.stop_at_trigger:
                self.finish = "trigger"
                return True
        return False

    def flush(self, rest: str) -> None:
        """Append the text a detokenizer held back at the end of the call."""
        if rest:
            self.text += rest
            if self.request.on_text is not None:
                self.request.on_text(rest)

    def segment(self, *, prefill: int, elapsed: float, reused: int = 0) -> Segment:
        """The finished :class:`Segment` (statistics fields are left for the caller to fill)."""
        return Segment(
            text=self.text,
            token_ids=self.ids,
            finish_reason=self.finish,
            first_boundary=self.first_boundary,
            prefill_tokens=prefill,
            reused_tokens=reused,
            elapsed=elapsed,
        )
