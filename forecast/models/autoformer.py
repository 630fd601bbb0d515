"""Autoformer (Wu, Xu, Wang, Long, NeurIPS 2021): a decomposition Transformer with Auto-Correlation.

Every sub-layer is followed by a moving-average series decomposition, so the encoder keeps
refining the seasonal part and the decoder accumulates the trend; attention is replaced by
Auto-Correlation (:mod:`forecast.layers.autocorrelation`). Specification and the official
code's conventions: ``reference/models.md`` §2.
"""

from __future__ import annotations

import torch
from torch import nn

from forecast.errors import ConfigError
from forecast.layers.autocorrelation import AutoCorrelationLayer
from forecast.layers.convolution import circular_conv1d
from forecast.layers.decomposition import SeriesDecomposition
from forecast.layers.dropout import Dropout
from forecast.layers.embedding import DataEmbedding
from forecast.layers.feedforward import ACTIVATIONS, FeedForward
from forecast.models.base import Network, positive


class SeasonalLayerNorm(nn.Module):
    """LayerNorm over features, then minus the mean over time: a seasonal part has zero mean."""

    def __init__(self, d_model: int):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        return x - x.mean(dim=1, keepdim=True)


class EncoderLayer(nn.Module):
    """Auto-Correlation and feed-forward, each added and followed by a decomposition whose
    trend is discarded."""

    def __init__(self, d_model, n_heads, d_ff, factor, moving_avg, dropout, activation):
        super().__init__()
        self.correlation = AutoCorrelationLayer(d_model, n_heads, factor)
        self.feed_forward = FeedForward(d_model, d_ff, dropout, activation)
        self.decomposition = SeriesDecomposition(moving_avg)
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, _ = self.decomposition(x + self.dropout(self.correlation(x, x, x)))
        x, _ = self.decomposition(x + self.feed_forward(x))
        return x


class DecoderLayer(nn.Module):
    """Self-correlation, cross-correlation with the encoder output, feed-forward; the three
    trends removed by the decompositions are summed and projected to the output channels
    (one shared projection, as in the official code, where the paper writes three)."""

    def __init__(self, d_model, n_heads, d_ff, factor, moving_avg, dropout, activation, c_out):
        super().__init__()
        self.self_correlation = AutoCorrelationLayer(d_model, n_heads, factor)
        self.cross_correlation = AutoCorrelationLayer(d_model, n_heads, factor)
        self.feed_forward = FeedForward(d_model, d_ff, dropout, activation)
        self.decomposition = SeriesDecomposition(moving_avg)
        self.dropout = Dropout(dropout)
        self.trend_projection = nn.Conv1d(d_model, c_out, kernel_size=3, padding=1, padding_mode="circular", bias=False)

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, trend1 = self.decomposition(x + self.dropout(self.self_correlation(x, x, x)))
        x, trend2 = self.decomposition(x + self.dropout(self.cross_correlation(x, memory, memory)))
        x, trend3 = self.decomposition(x + self.feed_forward(x))
        trend = circular_conv1d(trend1 + trend2 + trend3, self.trend_projection.weight)
        return x, trend


class Autoformer(Network):
    """``forward(x [B, L, C], x_mark [B, L, M], y_mark [B, H, M]) -> [B, H, C]``.

    The decoder input is built here from ``x`` alone: the last ``label_len`` steps of its
    seasonal part followed by ``H`` zeros, and of its trend part followed by the mean of ``x``;
    its calendar is the last ``label_len`` steps of ``x_mark`` followed by ``y_mark`` (known in
    advance). ``label_len`` defaults to ``seq_len // 2``, the paper's choice (48 for 96, 18 for 36).
    Channel-mixing: all ``C`` series are embedded together and all are forecast.

    Official ETTh1 configuration: ``d_model=512, n_heads=8, d_ff=2048, e_layers=2, d_layers=1,
    moving_avg=25, factor=3, dropout=0.05``: 10,535,943 parameters for 7 series and 4
    calendar features.
    """

    uses_time_features = True
    channel_independent = False
    small_config = {"d_model": 16, "n_heads": 2, "d_ff": 32, "moving_avg": 5, "factor": 2.0}
    # constants added to every query or key shift all correlations alike (the softmax ignores
    # them); the seasonal norms subtract the time mean after their bias
    STRUCTURALLY_ZERO = ("correlation.query.bias", "correlation.key.bias", "encoder_norm.norm.bias", "decoder_norm.norm.bias")

    def __init__(
        self,
        seq_len: int,
        pred_len: int,
        enc_in: int,
        mark_dim: int = 4,
        label_len: int | None = None,
        d_model: int = 512,
        n_heads: int = 8,
        d_ff: int = 2048,
        e_layers: int = 2,
        d_layers: int = 1,
        moving_avg: int = 25,
        factor: float = 3.0,
        dropout: float = 0.05,
        activation: str = "gelu",
    ):
        super().__init__()
        positive("Autoformer", seq_len=seq_len, pred_len=pred_len, enc_in=enc_in, d_model=d_model, n_heads=n_heads,
                 d_ff=d_ff, e_layers=e_layers, d_layers=d_layers, moving_avg=moving_avg)
        label_len = seq_len // 2 if label_len is None else label_len
        if not 0 <= label_len <= seq_len:
            raise ConfigError(f"Autoformer: label_len must be between 0 and seq_len ({seq_len}), got {label_len}. "
                              f"Fix: set model.label_len between 0 and {seq_len}, or null for seq_len // 2.")
        if d_model % n_heads:
            raise ConfigError(f"Autoformer: d_model ({d_model}) must be divisible by n_heads ({n_heads}). "
                              "Fix: choose model.n_heads among the divisors of model.d_model.")
        if activation not in ACTIVATIONS:
            raise ConfigError(f"Autoformer: model.activation={activation!r} is not one of {sorted(ACTIVATIONS)}. Fix: use one of them.")
        self.seq_len, self.pred_len, self.label_len = seq_len, pred_len, label_len
        self.decomposition = SeriesDecomposition(moving_avg)
        self.encoder_embedding = DataEmbedding(enc_in, mark_dim, d_model, dropout)
        self.decoder_embedding = DataEmbedding(enc_in, mark_dim, d_model, dropout)
        layer = dict(d_model=d_model, n_heads=n_heads, d_ff=d_ff, factor=factor, moving_avg=moving_avg, dropout=dropout, activation=activation)
        self.encoder = nn.ModuleList([EncoderLayer(**layer) for _ in range(e_layers)])
        self.encoder_norm = SeasonalLayerNorm(d_model)
        self.decoder = nn.ModuleList([DecoderLayer(**layer, c_out=enc_in) for _ in range(d_layers)])
        self.decoder_norm = SeasonalLayerNorm(d_model)
        self.projection = nn.Linear(d_model, enc_in)

    def parameters_without_gradient(self) -> set[str]:
        return {n for n, _ in self.named_parameters() if n.endswith(self.STRUCTURALLY_ZERO)}

    def forward(self, x: torch.Tensor, x_mark: torch.Tensor | None = None, y_mark: torch.Tensor | None = None) -> torch.Tensor:
        batch, _, channels = x.shape
        label, horizon = self.label_len, self.pred_len
        seasonal, trend = self.decomposition(x)
        seasonal_init = torch.cat([seasonal[:, x.shape[1] - label :], x.new_zeros(batch, horizon, channels)], dim=1)
        trend = torch.cat([trend[:, x.shape[1] - label :], x.mean(dim=1, keepdim=True).expand(-1, horizon, -1)], dim=1)
        decoder_mark = None
        if x_mark is not None and y_mark is not None:
            decoder_mark = torch.cat([x_mark[:, x_mark.shape[1] - label :], y_mark[:, :horizon]], dim=1)

        memory = self.encoder_embedding(x, x_mark)
        for layer in self.encoder:
            memory = layer(memory)
        memory = self.encoder_norm(memory)

        out = self.decoder_embedding(seasonal_init, decoder_mark)
        for layer in self.decoder:
            out, trend_part = layer(out, memory)
            trend = trend + trend_part
        seasonal_part = self.projection(self.decoder_norm(out)[:, -horizon:])
        return trend[:, -horizon:] + seasonal_part
