"""Tokenizer plumbing shared by the generators (no torch): fingerprints and trace ids."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

from spec_graph.generators.base import Span

_KEYS: dict[int, str] = {}


def tokenizer_key(tok: Any) -> str:
    """A fingerprint of a tokenizer's vocabulary: equal keys mean interchangeable token ids."""
    if id(tok) not in _KEYS:
        vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
        digest = hashlib.sha256("\x00".join(f"{t}\x01{i}" for t, i in vocab).encode()).hexdigest()[:16]
        _KEYS[id(tok)] = f"{type(tok).__name__}:{len(vocab)}:{digest}"
    return _KEYS[id(tok)]


class TraceIds:
    r"""Token ids of a trace in one tokenizer, memoized (the trace only grows).

    Spans written under ``key`` (by this model, or another with the same tokenizer) pass their
    ids unchanged; text of any other author is appended by re-tokenizing it together with the
    last two tokens before it, so that merges at the seam are right (``".\n" + "\nWait"``
    becomes ``".\n\n", "Wait"`` in Qwen's tokenizer).
    """

    def __init__(self, encode: Callable[[str], list[int]], decode: Callable[[Sequence[int]], str], key: str) -> None:
        """Bind to a tokenizer's encode/decode and its key."""
        self._encode, self._decode, self._key = encode, decode, key
        self._spans = 0
        self._last = ""
        self.ids: list[int] = []

    def __call__(self, trace: Sequence[Span]) -> list[int]:
        """The ids of ``trace`` (a list owned by this object: copy it to keep it)."""
        n = self._spans
        if n > len(trace) or (n and trace[n - 1]["text"] != self._last):
            n, self.ids = 0, []
        for span in trace[n:]:
            if span["tokenizer"] == self._key:
                self.ids.extend(span["token_ids"])
            elif span["text"]:
                self._append_text(span["text"])
        self._spans = len(trace)
        self._last = trace[-1]["text"] if trace else ""
        return self.ids

    def _append_text(self, text: str) -> None:
        ids = self.ids
        back = min(2, len(ids))
        while back and "\ufffd" in self._decode(ids[-back:]):
            back -= 1
        prev = self._decode(ids[-back:]) if back else ""
        new = self._encode(prev + text)
        if self._decode(new) != prev + text:  # the tokenizer adds or drops characters at a seam
            back, new = 0, self._encode(text)
        del ids[len(ids) - back :]
        ids.extend(new)
