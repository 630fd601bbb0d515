"""Moving-average series decomposition (Autoformer, DLinear, KARMA's official variant).

``trend = MA_k(x)`` with the series padded by repeating its first and last values, so the
trend has the input's length; ``seasonal = x - trend``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def moving_average(x: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Edge-padded moving average along time. ``x [B, L, C] -> [B, L, C]``.

    Odd kernels are centred; an even kernel looks one step further back than ahead (the
    reference code pads both ends by ``(k-1)//2`` and so loses a step for even ``k``).
    Computed as a difference of cumulative sums, O(L) whatever ``k`` (about 5x faster than
    ``avg_pool1d`` on CPU for ``k = 25``); the sums run on the series minus its first value so
    a large level costs no precision.
    """
    if kernel_size < 1:
        raise ValueError(f"kernel_size must be >= 1, got {kernel_size}")
    if kernel_size == 1:
        return x
    front, back = kernel_size // 2, (kernel_size - 1) // 2
    padded = torch.cat([x[:, :1].expand(-1, front, -1), x, x[:, -1:].expand(-1, back, -1)], dim=1)
    level = x[:, :1]
    sums = F.pad((padded - level).cumsum(dim=1), (0, 0, 1, 0))  # a leading zero row: sums[t] = Σ_{<t}
    return (sums[:, kernel_size:] - sums[:, :-kernel_size]) / kernel_size + level


class SeriesDecomposition(nn.Module):
    """``x [B, L, C] -> (seasonal, trend)``, both ``[B, L, C]``, summing to ``x``."""

    def __init__(self, kernel_size: int = 25):
        super().__init__()
        self.kernel_size = kernel_size

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        trend = moving_average(x, self.kernel_size)
        return x - trend, trend
