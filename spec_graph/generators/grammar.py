"""Constrained decoding: a grammar (a JSON schema, or any xgrammar grammar) that output must match.

A :class:`Grammar` is built once per run (or once per structured-output binding) and checked
then: a schema xgrammar cannot compile raises :class:`GrammarError` before any model runs. A
local session compiles it for its own tokenizer (cached per tokenizer) and keeps a
:class:`GrammarState`: an xgrammar matcher plus the token ids it has accepted. Like the KV
cache, the state is synced to the trace before every call: rolled back to the common prefix
(a discarded probe) and advanced over whatever was written since, *by either model* (a target
stretch), in this session's own tokens. Two models with different tokenizers each keep their
own state over their own tokenization of the same text; xgrammar matches bytes, so any
tokenization of a text the grammar accepts is accepted.

xgrammar is imported only when a grammar is built.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["Grammar", "GrammarError", "GrammarState", "check_grammar"]

_COMPILERS: dict[tuple[str, int, tuple[int, ...]], Any] = {}
_LOCK = threading.Lock()


class GrammarError(ValueError):
    """A grammar (or JSON schema) that cannot be compiled, or a trace that does not fit one."""


def _clean(exc: BaseException) -> str:
    """The message of an xgrammar error without its ``[time] file.cc:line:`` prefix."""
    text = str(exc).strip()
    return re.sub(r"^\[[^\]]*\]\s*\S+:\d+:\s*", "", text).replace("Check failed: (error.empty()) is false: ", "")


def check_grammar(sessions: Mapping[str, Any]) -> None:
    """Raise :class:`GrammarError` unless every session (by role) declares ``capabilities.grammar``.

    A served model writes without the grammar, so the text would not fit it: structured output
    with a served model prompts for JSON and asks the server for it (``response_format``) instead.
    """
    for role, session in sessions.items():
        if not getattr(getattr(session, "capabilities", None), "grammar", False):
            msg = (
                f"the {role} model ({type(session).__name__}) cannot write under a grammar: constrained "
                "decoding needs local transformers models on both sides; run without one "
                "(with_structured_output prompts for JSON and parses it then)"
            )
            raise GrammarError(msg)


class Grammar:
    """A grammar every token of a run must fit, compiled lazily for each tokenizer.

    Build one with :meth:`json_schema` or :meth:`ebnf` (or wrap an ``xgrammar.Grammar``, e.g.
    one from a structural tag, with :meth:`from_xgrammar`).
    """

    def __init__(self, grammar: Any, *, description: str = "grammar", schema: dict[str, Any] | None = None) -> None:
        """Wrap a tokenizer-independent ``xgrammar.Grammar``."""
        self.grammar = grammar
        self.description = description
        self.schema = schema
        """The JSON schema it was built from (``None`` for other grammars)."""
        self._compiled: dict[tuple[str, int, tuple[int, ...]], Any] = {}

    @classmethod
    def json_schema(cls, schema: Mapping[str, Any] | str | type, *, strict: bool = True) -> Grammar:
        """The grammar of JSON text valid for ``schema`` (a dict, a JSON string or a pydantic class).

        Output is compact JSON (no free whitespace, which small models tend to repeat).
        ``strict``: no properties or items beyond those the schema lists.

        Raises:
            GrammarError: a schema xgrammar cannot compile (the message says why).
        """
        import xgrammar as xgr

        if isinstance(schema, type) and hasattr(schema, "model_json_schema"):
            as_dict = schema.model_json_schema()
        elif isinstance(schema, str):
            try:
                as_dict = json.loads(schema)
            except json.JSONDecodeError as exc:
                msg = f"the JSON schema is not valid JSON: {exc}"
                raise GrammarError(msg) from exc
        elif isinstance(schema, Mapping):
            as_dict = dict(schema)
        else:
            msg = f"a JSON schema must be a dict, a JSON string or a pydantic class, got {type(schema).__name__}"
            raise GrammarError(msg)
        try:
            text = json.dumps(as_dict)
            grammar = xgr.Grammar.from_json_schema(text, any_whitespace=False, strict_mode=strict)
        except (RuntimeError, TypeError, ValueError) as exc:
            msg = f"cannot build a grammar from this JSON schema: {_clean(exc)}"
            raise GrammarError(msg) from exc
        return cls(grammar, description=f"JSON schema {as_dict.get('title', '')}".strip(), schema=as_dict)

    @classmethod
    def tagged_json(cls, schema: Mapping[str, Any] | str | type, *, begin: str = "", end: str = "") -> Grammar:
        r"""JSON for ``schema`` between the literal texts ``begin`` and ``end``.

        E.g. a forced tool call in the Qwen/Hermes format: ``begin="<tool_call>\n"``,
        ``end="\n</tool_call>"`` and a schema of ``{"name": {"const": ...}, "arguments": ...}``.

        Raises:
            GrammarError: a schema xgrammar cannot compile.
        """
        import xgrammar as xgr

        def literal(text: str) -> Any:
            return xgr.Grammar.from_ebnf(f"root ::= {json.dumps(text, ensure_ascii=False)}")

        inner = cls.json_schema(schema)
        pieces = [*([literal(begin)] if begin else []), inner.grammar, *([literal(end)] if end else [])]
        whole = xgr.Grammar.concat(*pieces) if len(pieces) > 1 else inner.grammar
        return cls(whole, description=f"{inner.description} in {begin!r}...{end!r}", schema=inner.schema)

    @classmethod
    def any_of(cls, *grammars: Grammar) -> Grammar:
        """Text that fits one of ``grammars`` (e.g. a call of any of the bound tools)."""
        import xgrammar as xgr

        if not grammars:
            msg = "any_of needs at least one grammar"
            raise GrammarError(msg)
        union = xgr.Grammar.union(*(g.grammar for g in grammars))
        return cls(union, description=" | ".join(g.description for g in grammars))

    @classmethod
    def json(cls) -> Grammar:
        """The grammar of any JSON value (JSON mode)."""
        import xgrammar as xgr

        return cls(xgr.Grammar.builtin_json_grammar(), description="JSON")

    @classmethod
    def ebnf(cls, text: str, *, root: str = "root") -> Grammar:
        """A grammar in xgrammar's EBNF (GBNF) syntax, starting at rule ``root``.

        Raises:
            GrammarError: a grammar that does not parse.
        """
        import xgrammar as xgr

        try:
            return cls(xgr.Grammar.from_ebnf(text, root_rule_name=root), description="EBNF grammar")
        except (RuntimeError, ValueError) as exc:
            msg = f"cannot parse the EBNF grammar: {_clean(exc)}"
            raise GrammarError(msg) from exc

    @classmethod
    def from_xgrammar(cls, grammar: Any, description: str = "grammar") -> Grammar:
        """Wrap an ``xgrammar.Grammar`` you built (e.g. ``xgrammar.Grammar.from_structural_tag``)."""
        return cls(grammar, description=description)

    def state(self, tokenizer: Any, key: str, vocab_size: int, stop_ids: Sequence[int]) -> GrammarState:
        """A fresh matcher for a model with this tokenizer (``key``: its fingerprint) and lm-head size."""
        import xgrammar as xgr

        stops = tuple(sorted(stop_ids))
        cache_key = (key, vocab_size, stops)
        with _LOCK:
            if cache_key not in _COMPILERS:
                info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=list(stops))
                _COMPILERS[cache_key] = xgr.GrammarCompiler(info, max_threads=1)
            if cache_key not in self._compiled:
                self._compiled[cache_key] = _COMPILERS[cache_key].compile_grammar(self.grammar)
        return GrammarState(self._compiled[cache_key], vocab_size)


class GrammarState:
    """One session's matcher and the token ids (after the prompt) it has accepted."""

    def __init__(self, compiled: Any, vocab_size: int) -> None:
        """Start at the grammar's beginning."""
        import xgrammar as xgr

        self._xgr = xgr
        self._matcher = xgr.GrammarMatcher(compiled)
        self._bitmask = xgr.allocate_token_bitmask(1, vocab_size)
        self.ids: list[int] = []

    def sync(self, ids: Sequence[int]) -> None:
        """Make the accepted ids equal ``ids``: roll back to the common prefix, accept the rest.

        Raises:
            GrammarError: a token of ``ids`` the grammar rejects (text written or put into the
                trace without the grammar).
        """
        n = 0
        for a, b in zip(self.ids, ids, strict=False):
            if a != b:
                break
            n += 1
        if n < len(self.ids):
            self._matcher.rollback(len(self.ids) - n)
            del self.ids[n:]
        for token in ids[n:]:
            if not self.accept(token):
                msg = f"the trace does not fit the grammar at its token {len(self.ids)} (id {token})"
                raise GrammarError(msg)

    def accept(self, token: int) -> bool:
        """Advance over a written token; ``False`` (and no change) when the grammar rejects it."""
        if not self._matcher.accept_token(token):
            return False
        self.ids.append(token)
        return True

    def mask(self, logits: Any) -> Any:
        """Set the logits of tokens the grammar forbids next to ``-inf`` (in place; shape ``(1, vocab)``).

        After the stop token nothing follows: the logits are left as they are (unused).
        """
        if self._matcher.is_terminated():
            return logits
        self._matcher.fill_next_token_bitmask(self._bitmask)
        self._xgr.apply_token_bitmask_inplace(logits, self._bitmask.to(logits.device))
        return logits

    @property
    def finished(self) -> bool:
        """Whether the grammar's text is complete and its stop token accepted."""
        return bool(self._matcher.is_terminated())
