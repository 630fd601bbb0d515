"""Reversible instance normalisation (RevIN; Kim et al., ICLR 2022), the one copy every
network that normalises its input window uses (D-PAD; KARMA's ``use_norm``)."""

from __future__ import annotations

import torch
from torch import nn


class RevIN(nn.Module):
    """Per sample and channel: ``x̂ = (x - mean) / std · w + b`` over the time axis, and the
    inverse on the forecast: ``y = (ŷ - b) / (w + eps²) · std + mean``.

    ``std = sqrt(var + eps)`` (population variance); ``w`` and ``b`` are learnable per channel
    when ``affine``. The statistics are computed from the input window only, so they carry no
    gradient to anything (the input is data), and are returned to the caller rather than kept
    on the module: ``normalize`` and ``denormalize`` are pure functions of their arguments.

    ``normalize(x [B, L, C]) -> (x̂ [B, L, C], stats)``; ``denormalize(y [B, H, C], stats)``.
    """

    def __init__(self, num_features: int, affine: bool = True, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.affine = affine
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))

    def normalize(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        var, mean = torch.var_mean(x.detach(), dim=1, keepdim=True, unbiased=False)
        std = (var + self.eps).sqrt()
        out = (x - mean) / std
        if self.affine:
            out = out * self.weight + self.bias
        return out, (mean, std)

    def denormalize(self, y: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        mean, std = stats
        if self.affine:
            y = (y - self.bias) / (self.weight + self.eps * self.eps)
        return y * std + mean
