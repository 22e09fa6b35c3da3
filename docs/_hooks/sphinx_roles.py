"""A griffe extension for the API reference: Sphinx roles in docstrings as Markdown code.

It also drops ``# doctest: +SKIP`` flags from examples, which mean nothing to a reader.

The library's docstrings use roles such as ``:class:`~spec_graph.thinker.SpecResult```, which
Markdown would show literally. They become inline code: ``SpecResult`` for a ``~`` reference,
the full dotted name otherwise.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_DOCTEST_FLAG = re.compile(r"[ \t]*# doctest: \+\w+")
_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|data|exc|obj|const|term|ref):`(~?)([^`]+)`")


def _replace(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx cross-reference roles into inline code."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Rewrite the docstring of every object griffe loads."""
        if obj.docstring is not None:
            value = _ROLE.sub(_replace, obj.docstring.value)
            obj.docstring.value = _DOCTEST_FLAG.sub("", value)
