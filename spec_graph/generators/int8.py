"""Int8 weights for linear layers on the CPU, with PyTorch's int8-weight matmul kernel.

A decode step multiplies one row of activations by every weight matrix, so its time is spent
reading weights: 4 bytes each in float32, 1 here. The kernel (``aten._weight_int8pack_mm``)
takes bfloat16 activations; for many rows at once (a prefill) a dequantized bfloat16 matmul is
faster, so :class:`Int8WeightLinear` switches above :data:`KERNEL_ROWS` rows.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["KERNEL_ROWS", "Int8WeightLinear", "quantize_linears"]

KERNEL_ROWS = 24
"""Up to this many rows per call the int8 kernel is fastest; above, a dequantized bf16 matmul is
(measured on a 1536×8960 layer: 0.8 vs 5.5 ms at 1 row, 5.6 vs 8.5 ms at 16, 33 vs 10 ms at 93)."""
_QUANTIZE_ROWS = 4096


class Int8WeightLinear(nn.Module):
    """A linear layer with per-output-channel symmetric int8 weights (``w ≈ scale[n] * q[n, k]``).

    The matmul runs in bfloat16; the output has the input's dtype. ``weight`` gives the
    dequantized matrix (for code that reads it, e.g. LM-head pruning), computed on each access.
    """

    def __init__(self, linear: nn.Linear) -> None:
        """Quantize ``linear``'s weight (the original is left untouched)."""
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        device = linear.weight.device
        qweight = torch.empty(linear.weight.shape, dtype=torch.int8, device=device)
        scale = torch.empty(self.out_features, dtype=torch.float32, device=device)
        with torch.no_grad():
            for start in range(0, self.out_features, _QUANTIZE_ROWS):  # in blocks: temporaries stay small
                rows = linear.weight[start : start + _QUANTIZE_ROWS].float()
                block_scale = rows.abs().amax(dim=1).clamp(min=1e-12) / 127.0
                qweight[start : start + len(rows)] = torch.round(rows / block_scale[:, None]).clamp(-127, 127)
                scale[start : start + len(rows)] = block_scale
        self.qweight: torch.Tensor
        self.scale: torch.Tensor
        self.register_buffer("qweight", qweight)  # (out_features, in_features), int8
        self.register_buffer("scale", scale.to(torch.bfloat16))  # (out_features,)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(), requires_grad=False)

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized weight, shape ``(out_features, in_features)``, bfloat16."""
        return self.qweight.to(torch.bfloat16) * self.scale[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x @ w.T + b`` for ``x`` of shape ``(..., in_features)``."""
        rows = x.reshape(-1, self.in_features).to(torch.bfloat16)  # (M, K)
        if rows.shape[0] <= KERNEL_ROWS:
            y = torch.ops.aten._weight_int8pack_mm(rows, self.qweight, self.scale)  # (M, N)
        else:
            y = nn.functional.linear(rows, self.qweight.to(torch.bfloat16)) * self.scale
        out: torch.Tensor = y.to(x.dtype).reshape(*x.shape[:-1], self.out_features)
        return out if self.bias is None else out + self.bias.to(x.dtype)

    def extra_repr(self) -> str:
        """Sizes, as ``nn.Linear`` shows them."""
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, int8"


def quantize_linears(model: nn.Module) -> nn.Module:
    """Replace every ``nn.Linear`` in ``model`` (the LM head included) by an :class:`Int8WeightLinear`."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear:
                setattr(parent, name, Int8WeightLinear(child))
    return model
