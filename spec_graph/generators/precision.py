"""Number formats of a local model: ``dtype`` (weights and activations) and ``quantization``.

Decoding one token reads every weight once, so on a CPU its speed follows the bytes per weight:
4 in float32, 2 in bfloat16, 1 with int8 weights.

=================  ==========================================================================
``dtype``
``auto``           CUDA: bfloat16 where supported, else float32. CPU: bfloat16 where the CPU
                   has bf16 instructions (AVX512-BF16 or AMX), else float32.
``float32``        the reference; the slowest to decode.
``bfloat16``       half the bytes; greedy text may part from float32's after some tokens.
``float16``        half the bytes, small range; on CPUs no faster than float32 (measured).
``quantization``
``none``           weights as loaded.
``int8``           per-output-channel symmetric int8 weights in every linear layer, the LM head
                   included; activations stay in bfloat16. CPU: PyTorch's int8-weight kernel
                   (:mod:`spec_graph.generators.int8`). CUDA: torchao's ``Int8WeightOnlyConfig``.
=================  ==========================================================================

The measurements behind ``auto`` and ``int8`` are in ``docs/speed.md`` (``benchmarks/cpu_speed.py``).
Importing this module does not import torch; name checks are cheap.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal, get_args

if TYPE_CHECKING:
    import torch

__all__ = [
    "DTYPES",
    "QUANTIZATIONS",
    "SCHEMES",
    "DTypeName",
    "QuantizationName",
    "Scheme",
    "apply_scheme",
    "check_dtype",
    "check_quantization",
    "cpu_has_native_bf16",
    "quantize",
    "quiet_torchao",
    "resolve_dtype",
    "scheme_for",
]

DTypeName = Literal["auto", "float32", "bfloat16", "float16"]
QuantizationName = Literal["none", "int8"]
Scheme = Literal["int8-weight", "int8-torchao-weight", "int8-torchao-dynamic"]
"""Concrete int8 schemes: ``int8`` picks one per device; the others are kept for benchmarks."""

DTYPES: tuple[str, ...] = get_args(DTypeName)
"""Valid ``dtype`` names."""
QUANTIZATIONS: tuple[str, ...] = get_args(QuantizationName)
"""Valid ``quantization`` names."""
SCHEMES: tuple[str, ...] = get_args(Scheme)
"""Valid names for :func:`apply_scheme`."""


def _check_choice(field: str, value: object, valid: tuple[str, ...]) -> str:
    if isinstance(value, str) and value in valid:
        return value
    msg = f"unknown {field} {value!r}: choose one of {', '.join(valid)}"
    raise ValueError(msg)


def check_dtype(value: str | torch.dtype | None) -> DTypeName:
    """The dtype name of ``value``: a name, a torch dtype, or ``None`` (``auto``).

    Raises:
        ValueError: anything but :data:`DTYPES` or their torch dtypes (one line, naming the valid ones).
    """
    if value is None:
        return "auto"
    if not isinstance(value, str) and type(value).__name__ == "dtype":  # a torch.dtype, without importing torch
        value = str(value).removeprefix("torch.")
    return _check_choice("dtype", value, DTYPES)  # type: ignore[return-value]


def check_quantization(value: str | None) -> QuantizationName:
    """The quantization name of ``value`` (``None`` means ``none``).

    Raises:
        ValueError: anything but :data:`QUANTIZATIONS` (one line, naming the valid ones).
    """
    name = "none" if value is None else value
    return _check_choice("quantization", name, QUANTIZATIONS)  # type: ignore[return-value]


def cpu_has_native_bf16() -> bool:
    """Whether this x86 CPU has bf16 instructions (AVX512-BF16 or AMX), which make bfloat16 faster than float32."""
    import torch

    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):  # a torch without these probes: stay with float32
        return False


def resolve_dtype(name: str | torch.dtype | None, device: str | torch.device) -> torch.dtype:
    """The torch dtype for a dtype name on ``device``, ``auto`` decided for the device.

    ``auto`` is bfloat16 on a GPU that supports it and on a CPU with bf16 instructions, else
    float32. On such a CPU bfloat16 decodes ~1.1–1.3× faster than float32 and prefills ~2.5×
    faster (``docs/speed.md``); without them bf16 matmuls are emulated and slower.

    Raises:
        ValueError: an unknown name.
    """
    import torch

    name = check_dtype(name)
    if name != "auto":
        dtype: torch.dtype = getattr(torch, name)
        return dtype
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    if kind == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return torch.float32


@contextlib.contextmanager
def quiet_torchao() -> Iterator[None]:
    """Hide the warnings logged when torchao is first imported (also by transformers' loading).

    On a CPU build of torch, torchao reports its CUDA-only extensions as failing to load, and
    torch warns about its pytree registrations; neither matters here.
    """
    loggers = [logging.getLogger(name) for name in ("torchao", "torch.utils._pytree")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _torchao() -> Any:
    """``torchao.quantization``, imported quietly, with a clear error when torchao is missing."""
    try:
        with quiet_torchao(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import torchao.quantization as ao
    except ImportError as e:
        msg = f"this quantization needs the torchao package ({e}); install it with: pip install 'torchao>=0.18'"
        raise ImportError(msg) from e
    return ao


def apply_scheme(model: Any, scheme: str) -> Any:
    """Quantize the linear layers of ``model`` in place with a concrete scheme; returns ``model``.

    Args:
        model: a loaded ``torch.nn.Module``, already on its device and in its dtype.
        scheme: ``int8-weight`` (:func:`spec_graph.generators.int8.quantize_linears`, CPU),
            ``int8-torchao-weight`` (torchao's ``Int8WeightOnlyConfig``) or
            ``int8-torchao-dynamic`` (torchao's ``Int8DynamicActivationInt8WeightConfig``).

    Raises:
        ValueError: an unknown scheme.
        ImportError: a torchao scheme without torchao installed.
    """
    scheme = _check_choice("quantization scheme", scheme, SCHEMES)
    if scheme == "int8-weight":
        from spec_graph.generators.int8 import quantize_linears

        return quantize_linears(model)
    ao = _torchao()
    weight_only = scheme == "int8-torchao-weight"
    config = ao.Int8WeightOnlyConfig() if weight_only else ao.Int8DynamicActivationInt8WeightConfig()
    with quiet_torchao():
        ao.quantize_(model, config)
    return model


def scheme_for(quantization: str | None, device: str | torch.device) -> Scheme | None:
    """The concrete scheme a quantization name uses on ``device`` (``None`` for ``none``)."""
    import torch

    if check_quantization(quantization) == "none":
        return None
    return "int8-torchao-weight" if torch.device(device).type == "cuda" else "int8-weight"


def quantize(model: Any, quantization: str | None, device: str | torch.device) -> Any:
    """Quantize ``model`` (a ``torch.nn.Module`` on ``device``) in place; returns ``model``.

    Raises:
        ValueError: an unknown quantization name.
        ImportError: ``int8`` on CUDA without torchao installed.
    """
    scheme = scheme_for(quantization, device)
    return model if scheme is None else apply_scheme(model, scheme)
