"""Tool calls in the chat model's stream: the text inside call tags becomes ``tool_call_chunks``.

:class:`ToolCallStream` sits after the streaming parser (stop strings, reasoning): content text
outside call tags streams on (what may start a tag is held back), a call streams as one chunk
with one complete ``tool_call_chunk`` when its closing tag arrives (LangChain rebuilds
``tool_calls`` from them). A call that cannot run (malformed JSON, a tool that is not bound, a
second call with ``parallel_tool_calls=False``) streams as the text the model wrote, so nothing
is lost; :func:`finish_message` moves it to ``invalid_tool_calls`` (with the reason) in the
message ``invoke`` returns. An answer that starts like JSON (``{``, ``[`` or a code fence) is held
back to its end, since it may be a bare call (see :mod:`.parsers`); if it is not, it streams then.
"""

from __future__ import annotations

import json
from typing import cast

from langchain_core.messages import AIMessage, AIMessageChunk, ToolCall
from langchain_core.messages.tool import invalid_tool_call, tool_call_chunk
from langchain_core.outputs import ChatGenerationChunk

from spec_graph.tools.request import ToolRequest

__all__ = ["UNMET_KEY", "ToolCallStream", "finish_message"]

UNMET_KEY = "tool_choice_unmet"
"""``response_metadata`` key set to ``True`` when a forcing ``tool_choice`` got no valid call."""
AUTHORS_KEY = "authors"


def _held(text: str, tag: str) -> int:
    """Length of the longest end of ``text`` that starts ``tag`` (and may still become it)."""
    for k in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:k]):
            return k
    return 0


def _text_chunk(author: str, text: str) -> ChatGenerationChunk:
    return ChatGenerationChunk(message=AIMessageChunk(content=text, response_metadata={AUTHORS_KEY: [author]}))


class ToolCallStream:
    """Splits a stream's content chunks into text and tool-call chunks (see the module doc)."""

    def __init__(self, request: ToolRequest) -> None:
        self.request = request
        self.parser = request.parser
        self.names = request.callable_names
        self.outside = ""
        """Text held back because it may start an opening tag."""
        self.inside: str | None = None
        """The open call's text so far (``None`` outside a call)."""
        self.authors: list[str] = []
        """Who wrote the open call."""
        self.calls = 0
        """Valid calls streamed."""
        self.lead: str | None = ""
        """The answer's start while it may still be a bare call (``None`` once it cannot)."""

    def feed(self, chunk: ChatGenerationChunk) -> list[ChatGenerationChunk]:
        """The chunks ``chunk`` turns into (reasoning and metadata chunks pass unchanged)."""
        content = chunk.message.content
        if self.request.choice == "none" or not isinstance(content, str) or not content:
            return [chunk]
        authors = chunk.message.response_metadata.get(AUTHORS_KEY) or ["small"]
        if self.lead is not None:
            self.lead += content
            self.authors += [str(a) for a in authors if a not in self.authors]
            body = self.lead.lstrip()
            if not body or body[0] in "{[`":
                return []  # may be a bare call: held to the end
            content, self.lead = self.lead, None
        return self._text(str(authors[0]), content)

    def _text(self, author: str, text: str) -> list[ChatGenerationChunk]:
        out: list[ChatGenerationChunk] = []
        open_tag, close_tag = self.parser.open_tag, self.parser.close_tag
        while text:
            if self.inside is None:
                buf = self.outside + text
                start = buf.find(open_tag)
                if start < 0:
                    keep = _held(buf, open_tag)
                    self.outside, text = buf[len(buf) - keep :], ""
                    if buf[: len(buf) - keep]:
                        out.append(_text_chunk(author, buf[: len(buf) - keep]))
                    break
                if buf[:start]:
                    out.append(_text_chunk(author, buf[:start]))
                self.outside, self.inside, self.authors = "", "", []
                text = buf[start + len(open_tag) :]
            else:
                if author not in self.authors:
                    self.authors.append(author)
                buf = self.inside + text
                end = buf.find(close_tag)
                if end < 0:
                    self.inside, text = buf, ""
                    break
                out.append(self._call(buf[:end], closed=True))
                self.inside, text = None, buf[end + len(close_tag) :]
        return out

    def _call(self, block: str, *, closed: bool) -> ChatGenerationChunk:
        """The chunk of one call: a tool-call chunk when it can run, else the model's text."""
        item = self.parser.call(block, self.names)
        authors = self.authors or ["small"]
        call = cast("ToolCall", item)
        if (
            item.get("type") == "tool_call"
            and (self.calls == 0 or self.request.parallel)
            and not self.request.repeats(call)
        ):
            return self._call_chunk(call, authors)
        raw = f"{self.parser.open_tag}{block}{self.parser.close_tag if closed else ''}"
        return _text_chunk(authors[0], raw)

    def _bare(self, text: str) -> list[ChatGenerationChunk]:
        """A held answer: its bare calls as tool-call chunks, else its text as usual."""
        self.lead = None
        authors = self.authors or ["small"]
        calls = self.parser.bare_calls(text, self.names) if text.strip() else None
        if calls is None or any(self.request.repeats(c) for c in calls):
            self.authors = []
            return self._text(authors[0], text)
        return [self._call_chunk(call, authors) for call in (calls if self.request.parallel else calls[:1])]

    def _call_chunk(self, call: ToolCall, authors: list[str]) -> ChatGenerationChunk:
        """One valid call as a chunk holding one complete ``tool_call_chunk``."""
        call = self.request.clean(call)
        args = json.dumps(call["args"], ensure_ascii=False)
        tcc = tool_call_chunk(name=call["name"], args=args, id=call["id"], index=self.calls)
        self.calls += 1
        message = AIMessageChunk(content="", tool_call_chunks=[tcc], response_metadata={AUTHORS_KEY: authors})
        return ChatGenerationChunk(message=message)

    def finish(self) -> list[ChatGenerationChunk]:
        """What is held at the end: text, an unclosed call, and the unmet ``tool_choice`` flag."""
        out: list[ChatGenerationChunk] = []
        if self.lead is not None:
            out += self._bare(self.lead)
        if self.inside is not None:
            out.append(self._call(self.inside, closed=False))
            self.inside = None
        elif self.outside:
            out.append(_text_chunk("small", self.outside))
            self.outside = ""
        if self.request.forced and self.calls == 0:
            out.append(ChatGenerationChunk(message=AIMessageChunk(content="", response_metadata={UNMET_KEY: True})))
        return out


def finish_message(message: AIMessage, request: ToolRequest) -> AIMessage:
    """The message ``invoke`` returns: calls that streamed as text moved to ``invalid_tool_calls``.

    ``message`` is the merged stream (valid calls already in ``tool_calls``).
    """
    if request.choice == "none" or not isinstance(message.content, str):
        return message
    parsed = request.parse(message.content)
    invalid = list(message.invalid_tool_calls) + parsed.invalid
    calls = list(message.tool_calls)
    for call in parsed.tool_calls:  # text calls that were valid alone: second calls of a turn
        error = "parallel_tool_calls=False: only the first call of a turn runs"
        args = json.dumps(call["args"], ensure_ascii=False)
        invalid.append(invalid_tool_call(name=call["name"], args=args, id=call["id"], error=error))
    return message.model_copy(update={"content": parsed.content, "tool_calls": calls, "invalid_tool_calls": invalid})
