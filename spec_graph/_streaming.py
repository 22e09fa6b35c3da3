"""The chat model's streaming parser: a run's text events -> LangChain chunks.

Stop strings cut the text (and what may start one is held back), ``<think>...</think>``
reasoning is split from the answer as it streams, and every chunk keeps who wrote it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from langchain_core.messages import AIMessageChunk
from langchain_core.outputs import ChatGenerationChunk

from spec_graph.thinker import THINK_END, SpecResult

__all__ = ["AUTHORS_KEY", "THINK_START", "Assembler", "StopFilter", "chunks"]

AUTHORS_KEY = "authors"
"""The ``response_metadata`` key holding ``[author]`` on the chunk where the pen changes hands
(the first chunk, and each chunk whose author differs from the one before). A list, so merging
chunks appends: the aggregated message holds each turn of the pen once, in order, not one entry
per chunk."""
THINK_START = "<think>"


class _Pieces:
    """Text as runs of ``[author, text]``, cut by character counts."""

    def __init__(self) -> None:
        self.runs: list[list[str]] = []
        self.size = 0

    def append(self, author: str, text: str) -> None:
        if not text:
            return
        if self.runs and self.runs[-1][0] == author:
            self.runs[-1][1] += text
        else:
            self.runs.append([author, text])
        self.size += len(text)

    def text(self) -> str:
        return "".join(t for _, t in self.runs)

    def take(self, n: int) -> list[tuple[str, str]]:
        """Remove and return the first ``n`` characters as ``(author, text)`` runs."""
        out: list[tuple[str, str]] = []
        while n > 0 and self.runs:
            author, text = self.runs[0]
            if len(text) <= n:
                out.append((author, text))
                self.runs.pop(0)
                n -= len(text)
                self.size -= len(text)
            else:
                out.append((author, text[:n]))
                self.runs[0][1] = text[n:]
                self.size -= n
                n = 0
        return out


def _held_prefix(text: str, needles: Sequence[str]) -> int:
    """Length of the longest end of ``text`` that is the start (not the whole) of a needle."""
    best = 0
    for needle in needles:
        for k in range(min(len(needle) - 1, len(text)), best, -1):
            if text.endswith(needle[:k]):
                best = k
                break
    return best


class StopFilter:
    """Cuts the text before the first stop string; holds back what may start one."""

    def __init__(self, stop: Sequence[str]) -> None:
        self.stop = tuple(stop)
        self.buf = _Pieces()
        self.stopped = False

    def feed(self, author: str, text: str) -> list[tuple[str, str]]:
        if self.stopped:
            return []
        self.buf.append(author, text)
        if not self.stop:
            return self.buf.take(self.buf.size)
        full = self.buf.text()
        hits = [i for i in (full.find(s) for s in self.stop) if i >= 0]
        if hits:
            self.stopped = True
            out = self.buf.take(min(hits))
            self.buf = _Pieces()
            return out
        return self.buf.take(self.buf.size - _held_prefix(full, self.stop))

    def flush(self) -> list[tuple[str, str]]:
        return self.buf.take(self.buf.size)


Kind = Literal["reasoning", "text"]


class _ThinkSplitter:
    """Splits ``<think>...</think>`` reasoning from the answer as text streams in.

    Mirrors :func:`spec_graph.thinker.split_reasoning`: reasoning without the tags and
    surrounding whitespace, answer without leading whitespace.
    """

    def __init__(self, *, enabled: bool, in_reasoning: bool) -> None:
        self.mode = "answer" if not enabled else ("reasoning_lead" if in_reasoning else "start")
        self.buf = _Pieces()
        self.saw_reasoning = in_reasoning and enabled

    def feed(self, author: str, text: str) -> list[tuple[Kind, str, str]]:
        self.buf.append(author, text)
        out: list[tuple[Kind, str, str]] = []
        while self.buf.size:
            full = self.buf.text()
            if self.mode == "answer":
                out += [("text", a, t) for a, t in self.buf.take(self.buf.size)]
            elif self.mode == "start":
                body = full.lstrip()
                if not body or (THINK_START.startswith(body) and body != THINK_START):
                    break  # could still become "<think>"
                if body.startswith(THINK_START):
                    self.buf.take(len(full) - len(body) + len(THINK_START))
                    self.mode, self.saw_reasoning = "reasoning_lead", True
                else:
                    self.mode = "answer"
            elif self.mode in ("reasoning_lead", "answer_lead"):
                body = full.lstrip()
                self.buf.take(len(full) - len(body))
                if body:
                    self.mode = "reasoning" if self.mode == "reasoning_lead" else "answer"
            else:  # reasoning
                end = full.find(THINK_END)
                if end >= 0:
                    keep = len(full[:end].rstrip())
                    out += [("reasoning", a, t) for a, t in self.buf.take(keep)]
                    self.buf.take(end - keep + len(THINK_END))
                    self.mode = "answer_lead"
                    continue
                held = _held_prefix(full, [THINK_END])
                body = full[: len(full) - held]
                held += len(body) - len(body.rstrip())
                out += [("reasoning", a, t) for a, t in self.buf.take(self.buf.size - held)]
                break
        return out

    def flush(self) -> list[tuple[Kind, str, str]]:
        full = self.buf.text()
        if self.mode in ("reasoning_lead", "answer_lead"):
            return []
        if self.mode == "reasoning":
            return [("reasoning", a, t) for a, t in self.buf.take(len(full.rstrip()))]
        return [("text", a, t) for a, t in self.buf.take(self.buf.size)]


class Assembler:
    """Turns a run's text events into chunks: stop strings cut, reasoning split, authors kept.

    ``reasoning`` has ChatOllama's meaning: ``True`` splits ``<think>...</think>`` text into
    ``additional_kwargs["reasoning_content"]``, ``False`` splits it off and drops it (not
    emitted), ``None`` leaves the text as the model wrote it, tags included.
    """

    def __init__(self, stop: Sequence[str], *, reasoning: bool | None, in_reasoning: bool) -> None:
        self.stop = StopFilter(stop)
        self.think = _ThinkSplitter(enabled=reasoning is not None, in_reasoning=in_reasoning)
        self.emit_reasoning = reasoning is True
        self.seen = ""
        """All text received, before cutting."""
        self.last_author: str | None = None
        """The author of the last chunk made (authors are named where they change)."""

    def _chunks(self, pieces: list[tuple[Kind, str, str]]) -> list[ChatGenerationChunk]:
        if not self.emit_reasoning:
            pieces = [p for p in pieces if p[0] != "reasoning"]
        out = chunks(pieces, after=self.last_author)
        self.last_author = next((a for _, a, t in reversed(pieces) if t), self.last_author)
        return out

    def feed(self, author: str, text: str) -> list[ChatGenerationChunk]:
        self.seen += text
        pieces: list[tuple[Kind, str, str]] = []
        for a, t in self.stop.feed(author, text):
            pieces += self.think.feed(a, t)
        return self._chunks(pieces)

    def finish(self, result: SpecResult) -> list[ChatGenerationChunk]:
        """The rest: text the events did not carry (a generator without ``on_text``), and held text."""
        pieces: list[tuple[Kind, str, str]] = []
        full = "".join(s["text"] for s in result.spans)
        if len(full) > len(self.seen) and full.startswith(self.seen):
            pos = 0
            for span in result.spans:
                start, pos = pos, pos + len(span["text"])
                if pos > len(self.seen):
                    piece = span["text"][max(0, len(self.seen) - start) :]
                    self.seen += piece
                    for a, t in self.stop.feed(span["author"], piece):
                        pieces += self.think.feed(a, t)
        for a, t in self.stop.flush():
            pieces += self.think.feed(a, t)
        pieces += self.think.flush()
        return self._chunks(pieces)


def chunks(pieces: list[tuple[Kind, str, str]], *, after: str | None = None) -> list[ChatGenerationChunk]:
    """One chunk per run of the same kind and author: reasoning-only or text-only.

    A chunk names its author (``response_metadata["authors"] = [author]``) when it differs
    from the one before (``after`` is the author of the chunk before these).
    """
    merged: list[list[str]] = []
    for kind, author, text in pieces:
        if merged and merged[-1][0] == kind and merged[-1][1] == author:
            merged[-1][2] += text
        elif text:
            merged.append([kind, author, text])
    out = []
    for kind_name, author, text in merged:
        meta: dict[str, Any] = {AUTHORS_KEY: [author]} if author != after else {}
        after = author
        if kind_name == "reasoning":
            msg = AIMessageChunk(content="", additional_kwargs={"reasoning_content": text}, response_metadata=meta)
        else:
            msg = AIMessageChunk(content=text, response_metadata=meta)
        out.append(ChatGenerationChunk(message=msg))
    return out
