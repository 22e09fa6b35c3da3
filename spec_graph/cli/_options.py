"""Options shared by several subcommands, each checked by argparse as it parses.

A bad value is one line naming the option and the valid values, and exit status 2, before any
model loads: argparse turns the ``ArgumentTypeError`` of a ``type=`` function into
``spec-graph run: error: argument --temperature: Input should be greater than or equal to 0, got '-1'``.
Numbers and names are checked by the same pydantic models as everywhere else
(:class:`~spec_graph.sampling.SamplingParams`,
:class:`~spec_graph.config.SpeculativeThinkingConfig`, the policy registry).
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from pydantic import BaseModel, ValidationError, create_model

from spec_graph.config_errors import one_line
from spec_graph.generators.precision import DTYPES, QUANTIZATIONS

__all__ = [
    "OneLineParser",
    "add_precision_args",
    "add_sampling_args",
    "device",
    "field_type",
    "key_value",
    "model_name",
    "policy",
    "preset",
]

_DEVICE = re.compile(r"^(cpu|mps|(cuda|xpu)(:\d+)?)$")
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (no usage block) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        """Print ``prog: error: message (see prog --help)`` on stderr and exit with status 2."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def field_type(model: type[BaseModel], name: str) -> Callable[[str], Any]:
    """An argparse ``type=`` validating a string as ``model``'s field ``name`` (its type and range)."""
    info = model.model_fields[name]
    definition: Any = (info.annotation, info)  # the field's type and its FieldInfo (range, default)
    one_field = create_model(f"_{name}", **{name: definition})

    def parse(text: str) -> Any:
        try:
            return getattr(one_field.model_validate({name: text}), name)
        except ValidationError as exc:
            msg = "; ".join(f"{e['msg']}, got {text!r}" for e in exc.errors(include_url=False))
            raise argparse.ArgumentTypeError(msg) from None

    parse.__name__ = name  # argparse names the type in some messages
    return parse


def device(text: str) -> str:
    """``cpu``, ``cuda``, ``cuda:<n>``, ``mps``, ``xpu`` or ``xpu:<n>``."""
    if not _DEVICE.match(text):
        msg = f"unknown device {text!r}; use cpu, cuda, cuda:<n>, mps, xpu or xpu:<n>"
        raise argparse.ArgumentTypeError(msg)
    return text


def model_name(text: str) -> str:
    """An embedded model name, an existing local folder or a hub id (``owner/name``)."""
    from spec_graph.model_registry import EMBEDDED_MODELS

    if text in EMBEDDED_MODELS or Path(text).expanduser().is_dir():
        return text
    looks_local = text.startswith((".", "/", "~")) or os.sep in text.rstrip(os.sep).split(os.sep, 1)[-1]
    if _HUB_ID.match(text) and not looks_local and not Path(text).exists():
        return text
    close = difflib.get_close_matches(text, EMBEDDED_MODELS, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    kind = "no such model folder" if looks_local else "unknown model"
    msg = (
        f"{kind} {text!r}; {hint}use an embedded model ({', '.join(sorted(EMBEDDED_MODELS))}), "
        "a local model folder or a hub id (owner/name)"
    )
    raise argparse.ArgumentTypeError(msg)


def preset(text: str) -> str:
    """A preset name or an existing YAML file (its contents are checked when the config is built)."""
    from spec_graph.config import PRESETS

    if text in PRESETS:
        return text
    if text.lower().endswith((".yml", ".yaml")):
        if not Path(text).expanduser().is_file():
            msg = f"config file {text!r} does not exist"
            raise argparse.ArgumentTypeError(msg)
        return text
    msg = f"unknown preset {text!r}; use {', '.join(sorted(PRESETS))} or a .yml/.yaml config file"
    raise argparse.ArgumentTypeError(msg)


def policy(text: str) -> str:
    """A policy's short string (see :data:`~spec_graph.policies.registry.POLICIES`), checked now."""
    from spec_graph.policy_config import parse_policy

    try:
        parse_policy(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(one_line(exc)) from None
    return text


def key_value(text: str) -> tuple[str, Any]:
    """``KEY=VALUE``; the value is read as YAML (``16`` a number, ``[a, b]`` a list, ``none`` null)."""
    import yaml

    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        msg = f"expected KEY=VALUE, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def add_precision_args(parser: Any) -> None:
    """``--dtype`` and ``--quantize``; argparse rejects other values (a one-line error, exit status 2)."""
    parser.add_argument(
        "--dtype",
        choices=DTYPES,
        default="auto",
        help="weights and activations; auto: bfloat16 on a GPU and on a CPU with bf16 instructions, "
        "else float32 (default: auto)",
    )
    parser.add_argument(
        "--quantize",
        choices=QUANTIZATIONS,
        default="none",
        help="int8: int8 weights, about 1.9x faster decoding on a CPU (default: none)",
    )


CONFIG_FLAGS = {
    "probe_tokens": "n1: length of the small model's probe and of a target intervention",
    "verify_tokens": "n2: extra target tokens after a verification cue",
    "recap_tokens": "length of the first recap takeover",
}
"""Config fields with their own flag (``--probe-tokens``...); ``--set`` reaches every other field."""


def add_config_args(parser: Any, *, prefix: str = "", default: str = "the preset's") -> None:
    """``--probe-tokens``/``--verify-tokens``/``--recap-tokens`` and ``--set FIELD=VALUE``, checked while parsing."""
    from spec_graph.config import SpeculativeThinkingConfig

    for field, what in CONFIG_FLAGS.items():
        value = SpeculativeThinkingConfig.model_fields[field].default
        parser.add_argument(
            "--" + field.replace("_", "-"),
            type=field_type(SpeculativeThinkingConfig, field),
            default=None,
            metavar="N",
            help=f"{prefix}{what} (default: {default}, {value})",
        )
    parser.add_argument(
        "--set",
        type=key_value,
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help=f"{prefix}any other config field, repeatable (e.g. keyword_matching=inflected, negative_threshold=5, "
        "opening=true); see docs/how-it-works.md#parameters",
    )


def config_overrides(args: Any) -> dict[str, Any]:
    """The config fields ``--set`` and the ``CONFIG_FLAGS`` options give (``--set`` first, the flags win)."""
    overrides: dict[str, Any] = dict(getattr(args, "set", None) or [])
    overrides.update({k: getattr(args, k) for k in CONFIG_FLAGS if getattr(args, k, None) is not None})
    return overrides


def add_sampling_args(parser: Any, *, seed: bool = True, from_config: bool = False) -> None:
    """``--temperature``, ``--top-p``, ``--top-k`` (and ``--seed``): checked by ``SamplingParams``.

    ``from_config``: ``--top-p``, ``--top-k`` and ``--seed`` default to None (the config's own).
    """
    from spec_graph.sampling import SamplingParams

    def typed(name: str) -> Callable[[str], Any]:
        return field_type(SamplingParams, name)

    def default(value: float) -> tuple[float | None, str]:
        return (None, "the config's") if from_config else (value, f"{value:g}")

    parser.add_argument(
        "--temperature", type=typed("temperature"), default=0.0, metavar="T", help="0 = greedy, up to 100 (default: 0)"
    )
    top_p, shown = default(0.95)
    parser.add_argument(
        "--top-p", type=typed("top_p"), default=top_p, metavar="P", help=f"nucleus mass in (0, 1] (default: {shown})"
    )
    top_k, shown = default(50)
    parser.add_argument(
        "--top-k", type=typed("top_k"), default=top_k, metavar="K", help=f"top-k; 0 = off (default: {shown})"
    )
    if seed:
        shown = "the config's" if from_config else "none"
        parser.add_argument(
            "--seed", type=typed("seed"), default=None, metavar="S", help=f"random seed for sampling (default: {shown})"
        )
