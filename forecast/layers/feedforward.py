"""The position-wise feed-forward block of the Transformer forecasters."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from forecast.layers.dropout import Dropout

ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu, "sigmoid": torch.sigmoid}


class FeedForward(nn.Module):
    """``Linear(d -> d_ff, no bias) -> activation -> dropout -> Linear(d_ff -> d, no bias) -> dropout``
    on ``[B, L, d]`` (Autoformer writes the two maps as kernel-1 convolutions; the same maps)."""

    def __init__(self, d_model: int, d_ff: int, dropout: float, activation: str):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.up = nn.Linear(d_model, d_ff, bias=False)
        self.down = nn.Linear(d_ff, d_model, bias=False)
        self.activation = ACTIVATIONS[activation]
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.down(self.dropout(self.activation(self.up(x)))))
