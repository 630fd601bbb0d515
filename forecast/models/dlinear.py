"""DLinear (Zeng et al., AAAI 2023): a linear map of the trend plus one of the remainder."""

from __future__ import annotations

import torch
from torch import nn

from forecast.errors import ConfigError
from forecast.layers.decomposition import SeriesDecomposition
from forecast.models.base import Network, positive


class DLinear(Network):
    """Decompose with a moving average, map each part ``L -> H`` with a linear layer, add.

    Channel-independent: by default one pair of layers is shared by all channels;
    ``individual=True`` gives each channel its own pair (``enc_in`` pairs).

    ``forward(x [B, L, C]) -> [B, H, C]``.
    """

    uses_time_features = False
    channel_independent = True

    def __init__(self, seq_len: int, pred_len: int, enc_in: int, individual: bool = False, kernel_size: int = 25):
        super().__init__()
        positive("DLinear", seq_len=seq_len, pred_len=pred_len, enc_in=enc_in)
        if kernel_size < 1:
            raise ConfigError(f"DLinear: model.kernel_size={kernel_size} must be at least 1. Fix: use an odd "
                              "moving-average width such as 25 (the paper's).")
        self.seq_len, self.pred_len, self.enc_in, self.individual = seq_len, pred_len, enc_in, individual
        self.decomposition = SeriesDecomposition(kernel_size)
        n = enc_in if individual else 1
        # [n, L, H] weights and [n, H] biases: one batched matmul serves both variants.
        self.seasonal_weight, self.seasonal_bias = self._linear(n, seq_len, pred_len)
        self.trend_weight, self.trend_bias = self._linear(n, seq_len, pred_len)

    @staticmethod
    def _linear(n: int, seq_len: int, pred_len: int) -> tuple[nn.Parameter, nn.Parameter]:
        # nn.Linear's default initialisation, as the reference code uses
        bound = seq_len ** -0.5
        weight = nn.Parameter(torch.empty(n, seq_len, pred_len).uniform_(-bound, bound))
        bias = nn.Parameter(torch.empty(n, pred_len).uniform_(-bound, bound))
        return weight, bias

    def _project(self, part: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        if self.individual:  # one [L, H] map per channel
            return torch.einsum("blc,clh->bhc", part, weight)
        return (part.transpose(1, 2) @ weight[0]).transpose(1, 2)

    def forward(self, x: torch.Tensor, x_mark: torch.Tensor | None = None, y_mark: torch.Tensor | None = None) -> torch.Tensor:
        seasonal, trend = self.decomposition(x)
        out = self._project(seasonal, self.seasonal_weight) + self._project(trend, self.trend_weight)
        return out + (self.seasonal_bias + self.trend_bias).T  # [H, C or 1] broadcast over the batch
