"""Input embeddings of the Transformer forecasters: values, calendar and position to ``d_model``."""

from __future__ import annotations

import math

import torch
from torch import nn

from forecast.layers.convolution import circular_conv1d
from forecast.layers.dropout import Dropout


def sinusoidal_positions(length: int, d_model: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """``[length, d_model]``: ``sin(t·ω_i)`` in the even features and ``cos(t·ω_i)`` in the odd
    ones, ``ω_i = 10000^(-2i/d_model)`` (Vaswani et al., 2017); not trained."""
    t = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    omega = torch.exp(torch.arange(0, d_model, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    out = torch.zeros(length, d_model, device=device, dtype=torch.float32)
    out[:, 0::2] = torch.sin(t * omega)
    out[:, 1::2] = torch.cos(t * omega)[:, : d_model // 2]
    return out.to(dtype)


class DataEmbedding(nn.Module):
    """Value embedding (Conv1d, kernel 3, circular, no bias; run as a matrix product,
    :func:`~forecast.layers.convolution.circular_conv1d`) + calendar embedding (Linear, no
    bias) + (``position=True``) the sinusoidal position, then dropout. ``[B, L, C], [B, L, M]
    -> [B, L, d]``. Autoformer's embedding has no position; Time-Series-Library's ETSformer adds it."""

    def __init__(self, c_in: int, mark_dim: int, d_model: int, dropout: float, position: bool = False):
        super().__init__()
        self.value = nn.Conv1d(c_in, d_model, kernel_size=3, padding=1, padding_mode="circular", bias=False)
        nn.init.kaiming_normal_(self.value.weight, mode="fan_in", nonlinearity="leaky_relu")
        self.calendar = nn.Linear(mark_dim, d_model, bias=False) if mark_dim else None
        self.position = position
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor, x_mark: torch.Tensor | None) -> torch.Tensor:
        out = circular_conv1d(x, self.value.weight)
        if self.calendar is not None:
            out = out + self.calendar(x_mark)
        if self.position:
            out = out + sinusoidal_positions(x.shape[1], out.shape[-1], x.device, out.dtype)
        return self.dropout(out)
