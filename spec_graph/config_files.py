"""Config files: our YAML format and the reference code's, read and written.

The reference (uservan/speculative_thinking, ``config/*.yml``) names the algorithm's parameters
differently; :func:`translate_reference` maps its keys to
:class:`~spec_graph.config.SpeculativeThinkingConfig`'s fields. No config class is imported
here: the loaders on the config class call these helpers.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import yaml

__all__ = ["REFERENCE_KEYS", "dump_yaml", "read_yaml", "translate_reference"]

REFERENCE_KEYS: dict[str, tuple[str, ...]] = {
    "TRIGGER_TOKENS": ("trigger_strings",),
    "max_target_tokens": ("probe_tokens",),
    "original_recap_token_num": ("verify_tokens", "recap_tokens"),
    "recap_after_negative_num": ("negative_threshold",),
    "add_each_recap": ("recap_growth",),
    "add_each_neg": ("negative_threshold_growth",),
    "max_recap_token_num": ("recap_tokens_cap",),
    "max_negative_num": ("negative_threshold_cap",),
    "help_recap_words": ("recap_prompt",),
    "help_think_word": ("think_prompt",),
    "begin": ("opening",),
    "begin_token_num": ("opening_tokens",),
    "time_out": ("time_budget",),
}
"""Reference key -> our field name(s)."""
_REFERENCE_KEYWORD_KEYS = {  # sub-keys of the reference's TARGET_VALIDATION_KEYWORDS
    "positive": "affirmation_keywords",
    "negative": "reflection_keywords",
    "verify": "verification_keywords",
}


def translate_reference(mapping: Mapping[str, Any], fields: Collection[str]) -> tuple[dict[str, Any], list[str]]:
    """Map reference keys to our field names; return (values, ignored keys).

    ``original_recap_token_num`` sets both ``verify_tokens`` and ``recap_tokens``; ``time_out``
    <= 0 or null means no time budget; our own names (``fields``) win over reference keys.
    """
    from_ref: dict[str, Any] = {}
    own: dict[str, Any] = {}
    ignored: list[str] = []
    for key, value in mapping.items():
        if key in fields:
            own[key] = value
        elif key in REFERENCE_KEYS:
            off = key == "time_out" and (value is None or (isinstance(value, int | float) and value <= 0))
            for field in REFERENCE_KEYS[key]:
                from_ref[field] = None if off else value
        elif key == "TARGET_VALIDATION_KEYWORDS" and isinstance(value, Mapping):
            for sub, words in value.items():
                if sub in _REFERENCE_KEYWORD_KEYS:
                    from_ref[_REFERENCE_KEYWORD_KEYS[sub]] = words
                else:
                    ignored.append(f"{key}.{sub}")
        else:
            ignored.append(str(key))
    return {**from_ref, **own}, ignored


def read_yaml(path: str | Path) -> Mapping[str, Any]:
    """The mapping a YAML file holds (an empty file is an empty mapping).

    Raises:
        FileNotFoundError: no such file (its message is one line naming the path).
        ValueError: the file is not valid YAML or does not hold a mapping.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        msg = f"config file {str(path)!r} does not exist"
        raise FileNotFoundError(msg)
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        msg = f"{path}: not valid YAML{line}: {getattr(exc, 'problem', None) or exc}"
        raise ValueError(msg) from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        msg = f"{path}: expected a YAML mapping, got {type(data).__name__}"
        raise ValueError(msg)
    return data


def dump_yaml(data: Mapping[str, Any]) -> str:
    """YAML text of ``data``; strings holding control characters are double-quoted, escaped."""
    return str(yaml.dump(dict(data), Dumper=_Dumper, sort_keys=False, allow_unicode=True))


class _Dumper(yaml.SafeDumper):  # type: ignore[misc,unused-ignore]  # Any without types-PyYAML
    """Safe dumper that double-quotes strings holding control characters."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = '"' if any(not ch.isprintable() for ch in value) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)
