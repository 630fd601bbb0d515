"""ETSformer (Woo, Liu, Sahoo, Kumar, Hoi, 2022): exponential-smoothing Transformer.

Each encoder layer removes a season (frequency attention) and a growth (exponential-smoothing
attention) from its latent sequence and updates a per-channel level; the decoder forecasts
``level + damped growth + extrapolated season``. Blocks: :mod:`forecast.layers.exponential_smoothing`;
specification and the official code's conventions: ``reference/models.md`` §3.
"""

from __future__ import annotations

import torch
from torch import nn

from forecast.errors import ConfigError
from forecast.layers.dropout import Dropout
from forecast.layers.embedding import DataEmbedding
from forecast.layers.exponential_smoothing import CausalEmbedding, DampingLayer, FrequencyAttention, GrowthLayer, LevelLayer
from forecast.layers.feedforward import ACTIVATIONS, FeedForward
from forecast.models.base import Network, positive


EMBEDDINGS = ("official", "tslib")


class EncoderLayer(nn.Module):
    """``(z [B, T, d], level [B, T, C]) -> (z, level, growth [B, T+1, d], season over the horizon [B, H, d])``."""

    def __init__(self, d_model, n_heads, d_ff, c_out, pred_len, k, dropout, activation, growth_conv):
        super().__init__()
        self.season = FrequencyAttention(pred_len, k)
        self.growth = GrowthLayer(d_model, n_heads, dropout)
        self.level = LevelLayer(d_model, c_out, dropout, growth_conv)
        self.feed_forward = FeedForward(d_model, d_ff, dropout, activation)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.season_dropout = Dropout(dropout)
        self.growth_dropout = Dropout(dropout)

    def forward(self, z: torch.Tensor, level: torch.Tensor, latent: bool = True):
        """``latent=False`` (the last layer, whose latent output feeds nothing) skips the
        feed-forward block and the norms and returns ``z = None``."""
        season, season_ahead = (self.season_dropout(part) for part in self.season.window_and_horizon(z))
        z = z - season
        growth = self.growth_dropout(self.growth(z))
        level = self.level(level, growth[:, :-1], season)
        if not latent:
            return None, level, growth, season_ahead
        z = self.norm1(z - growth[:, 1:])
        z = self.norm2(z + self.feed_forward(z))
        return z, level, growth, season_ahead


class ETSformer(Network):
    """``forward(x [B, L, C], x_mark [B, L, M]) -> [B, H, C]``.

    ``embedding`` picks the input embedding: ``official`` (default; the official code's causal
    convolution of the values, no calendar: ``uses_time_features`` is false) or ``tslib``
    (Time-Series-Library's ETSformer: circular convolution + calendar features ``x_mark`` through
    a linear map + sinusoidal position; the instance's ``uses_time_features`` is true).

    In training the input window (not the target) is augmented: per-channel scale ``1 + σε``,
    per-channel shift ``σε`` (one draw per batch, as the reference), jitter ``σε``.
    ``k`` frequencies per sample and feature make the season (``k = 0``: none).
    ``growth_conv`` picks the level layer's growth term (see :class:`LevelLayer`): ``paper``
    (default) or ``official``. ``e_layers`` encoder layers, each with its damping layer in the
    decoder; one shared output projection. Channel-mixing latent path, per-channel level.

    The smoothing rates (``*.smoother.smoothing``) and damping factors (``*.damping``) form
    the ``rates`` parameter group (:meth:`param_groups`), for the official schedule
    (:func:`forecast.schedulers.etsformer_warmup`).

    Official configuration (d_model 512, 8 heads, d_ff 2048, 2 layers, 7 series): 5,279,839
    parameters.
    """

    uses_time_features = False
    channel_independent = False
    # small, and regularised less: a short training cannot afford the paper's 0.2 augmentation and dropout
    small_config = {"d_model": 16, "n_heads": 2, "d_ff": 32, "k": 2, "dropout": 0.05, "augment_std": 0.05}
    # the last encoder layer's latent output feeds nothing (the decoder reads growths, seasons
    # and the level), so its feed-forward block and norms are not computed (the reference computes
    # them, unused) and get no gradient
    DEAD_IN_LAST_LAYER = ("feed_forward.", "norm1.", "norm2.")

    def __init__(
        self,
        seq_len: int,
        pred_len: int,
        enc_in: int,
        d_model: int = 512,
        n_heads: int = 8,
        d_ff: int = 2048,
        e_layers: int = 2,
        k: int = 1,
        dropout: float = 0.2,
        activation: str = "sigmoid",
        augment_std: float = 0.2,
        growth_conv: str = "paper",
        embedding: str = "official",
        mark_dim: int = 4,
    ):
        super().__init__()
        positive("ETSformer", seq_len=seq_len, pred_len=pred_len, enc_in=enc_in, d_model=d_model, n_heads=n_heads,
                 d_ff=d_ff, e_layers=e_layers)
        if d_model % n_heads:
            raise ConfigError(f"ETSformer: d_model ({d_model}) must be divisible by n_heads ({n_heads}). "
                              "Fix: choose model.n_heads among the divisors of model.d_model.")
        if k < 0:
            raise ConfigError(f"ETSformer: k (frequencies kept) must be >= 0, got {k}. Fix: model.k=0 (no season) or more.")
        if growth_conv not in ("paper", "official"):
            raise ConfigError(f"ETSformer: growth_conv must be 'paper' or 'official', got {growth_conv!r}. "
                              "Fix: model.growth_conv=paper (the temporal convolution) or official (the code's product).")
        if embedding not in EMBEDDINGS:
            raise ConfigError(f"ETSformer: embedding must be one of {EMBEDDINGS}, got {embedding!r}. Fix: model.embedding=official "
                              "(the official code's value convolution) or tslib (Time-Series-Library's: values, calendar, position).")
        if embedding == "tslib" and mark_dim <= 0:
            raise ConfigError(f"ETSformer: embedding=tslib embeds the calendar features, but mark_dim={mark_dim}. "
                              "Fix: data with a timestamp column (mark_dim: ${data.mark_dim}), or model.embedding=official.")
        if activation not in ACTIVATIONS:
            raise ConfigError(f"ETSformer: model.activation={activation!r} is not one of {sorted(ACTIVATIONS)}. Fix: use one of them.")
        self.seq_len, self.pred_len, self.augment_std = seq_len, pred_len, augment_std
        self.uses_time_features = embedding == "tslib"  # this instance's declaration (the class's: the default)
        self.embedding = (DataEmbedding(enc_in, mark_dim, d_model, dropout, position=True) if self.uses_time_features
                          else CausalEmbedding(enc_in, d_model, dropout))
        self.encoder = nn.ModuleList(
            EncoderLayer(d_model, n_heads, d_ff, enc_in, pred_len, k, dropout, activation, growth_conv) for _ in range(e_layers)
        )
        self.damping = nn.ModuleList(DampingLayer(pred_len, n_heads, dropout) for _ in range(e_layers))
        self.damping_dropout = Dropout(dropout)
        self.projection = nn.Linear(d_model, enc_in)

    def parameters_without_gradient(self) -> set[str]:
        last = f"encoder.{len(self.encoder) - 1}."
        return {n for n, _ in self.named_parameters() if n.startswith(last) and n[len(last):].startswith(self.DEAD_IN_LAST_LAYER)}

    def param_groups(self) -> list[dict]:
        """``network`` (every other parameter) and ``rates`` (smoothing rates, damping factors)."""
        rates = {n for n, _ in self.named_parameters() if n.endswith(("smoother.smoothing", "damping"))}
        return [
            {"name": "network", "params": [p for n, p in self.named_parameters() if n not in rates]},
            {"name": "rates", "params": [p for n, p in self.named_parameters() if n in rates]},
        ]

    @torch.no_grad()
    def augment(self, x: torch.Tensor) -> torch.Tensor:
        sigma, channels = self.augment_std, x.shape[-1]
        scale = 1 + sigma * torch.randn(channels, device=x.device, dtype=x.dtype)
        shift = sigma * torch.randn(channels, device=x.device, dtype=x.dtype)
        return x * scale + shift + sigma * torch.randn_like(x)

    def forward(self, x: torch.Tensor, x_mark: torch.Tensor | None = None, y_mark: torch.Tensor | None = None) -> torch.Tensor:
        if self.training and self.augment_std > 0:
            x = self.augment(x)
        z, level = (self.embedding(x, x_mark) if self.uses_time_features else self.embedding(x)), x
        growth_sum = season_sum = 0
        for i, (layer, damping) in enumerate(zip(self.encoder, self.damping)):
            z, level, growth, season = layer(z, level, latent=i < len(self.encoder) - 1)
            growth_sum = growth_sum + self.damping_dropout(damping(growth[:, -1]))
            season_sum = season_sum + season
        return level[:, -1:] + self.projection(growth_sum) + self.projection(season_sum)
