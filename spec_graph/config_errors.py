"""Validation errors in one line: the field, what is wrong and the valid values.

:class:`ConfigError` is a pydantic :class:`~pydantic.ValidationError` (code catching that keeps
working, ``errors()`` keeps the structured details) whose message is one line, e.g.
``policy.threshold: Input should be less than or equal to 1, got 1.5``. The config's loaders
(:func:`~spec_graph.config.resolve_config`, presets, YAML files), :class:`~spec_graph.sampling.SamplingParams`
and the command line raise or print it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

__all__ = ["ConfigError", "one_line"]

_MAX_INPUT = 60


class ConfigError(ValidationError):
    """A :class:`~pydantic.ValidationError` whose message is one line naming the field and the valid values."""

    _fields: tuple[str, ...] = ()
    _where: str = ""

    @classmethod
    def from_validation(cls, exc: ValidationError, *, fields: Iterable[str] = (), where: str = "") -> ConfigError:
        """The same errors as ``exc``.

        Args:
            exc: the error.
            fields: the valid names, suggested for an unknown one.
            where: where the values came from (e.g. a file), put first.
        """
        if isinstance(exc, ConfigError) and not where:
            return exc
        error = cls.from_exception_data(exc.title, exc.errors(include_url=False))  # type: ignore[arg-type]
        error._fields = tuple(fields) or getattr(exc, "_fields", ())
        error._where = where
        return error

    def __str__(self) -> str:
        """One line: each error as ``field: message, got value``, joined by ``; ``."""
        text = "; ".join(_describe(e, self._fields) for e in self.errors(include_url=False))
        return f"{self._where}: {text}" if self._where else text


def _describe(error: Any, fields: tuple[str, ...]) -> str:
    loc = ".".join(str(part) for part in error.get("loc", ()))
    msg = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    if error.get("type") == "extra_forbidden":
        name = str(error["loc"][-1]) if error.get("loc") else ""
        close = difflib.get_close_matches(name, fields, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(fields)}" if fields else ""
        return f"{loc}: unknown setting" + (f" ({hint})" if hint else "")
    text = f"{loc}: {msg}" if loc else msg
    value = error.get("input")
    if error.get("type") not in ("value_error", "missing") and not isinstance(value, dict | list | tuple):
        shown = repr(value)
        text += f", got {shown if len(shown) <= _MAX_INPUT else shown[:_MAX_INPUT] + '...'}"
    return text.replace("\n", " ")


def one_line(exc: BaseException, *, fields: Iterable[str] = ()) -> str:
    """Any validation or value error as one line (see :class:`ConfigError`)."""
    if isinstance(exc, ValidationError):
        return str(ConfigError.from_validation(exc, fields=fields))
    text = str(exc).strip()
    if isinstance(exc, FileNotFoundError) and exc.filename is not None:
        text = f"{exc.filename}: no such file"
    return text.splitlines()[0] if text else type(exc).__name__
