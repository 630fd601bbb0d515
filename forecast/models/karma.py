"""KARMA (Ye et al., WASA 2025): multilevel decomposition hybrid Mamba.

What the released code computes (``reference/models.md`` §5.2), which this module follows by
default: each variate's whole look-back window becomes one token (inverted embedding, plus one
token per calendar feature); the encoder splits every token's embedding with a one-level db4
wavelet transform into low and high halves, runs a Mamba over the tokens for each half and a
bidirectional Mamba over the full embeddings, and recombines (HFTD + KarmaBlocks); a linear
head maps each variate token to the horizon. Mambas scan over the token axis (variates and
calendar features), not over time.

``decomposition`` chooses the trend/seasonal split in front of the encoder: ``none`` (the
official ETTh1/ETTh2/Exchange scripts), ``moving_average`` (what the official code runs when
its ``use_decomp`` flag is on: Autoformer's moving average of 25) or ``atcd`` (the paper's
attention-based adaptive decomposition, which the released code never executes). With a
decomposition the seasonal part goes through the encoder and the trend part through one
"global" Mamba; the two are summed before the head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from forecast.errors import ConfigError
from forecast.layers.decomposition import SeriesDecomposition
from forecast.layers.dropout import Dropout
from forecast.layers.mamba import BACKENDS, Mamba
from forecast.layers.normalization import RevIN
from forecast.layers.wavelet import coefficients_length, dwt, idwt
from forecast.models.base import Network, positive

DECOMPOSITIONS = ("none", "moving_average", "atcd")


class InvertedEmbedding(nn.Module):
    """``x [B, L, C] (+ marks [B, L, M]) -> tokens [B, C (+ M), d]``: one ``Linear_{L→d}``
    shared by every variate (and calendar feature) applied to its whole window; dropout."""

    def __init__(self, seq_len: int, d_model: int, dropout: float):
        super().__init__()
        self.value = nn.Linear(seq_len, d_model)
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor, marks: torch.Tensor | None = None) -> torch.Tensor:
        series = x if marks is None else torch.cat([x, marks.to(x.dtype)], -1)
        return self.dropout(self.value(series.transpose(1, 2)))


class ATCD(nn.Module):
    """Adaptive time-channel decomposition (the paper's §ATCD; present but disabled in the
    released code): ``p = Linear_{C→I}(x)``; ``trend_I = SiLU(MHA(p, p, p))`` (self-attention
    over time); ``seasonal_I = p - trend_I``; each part mapped back by its own
    ``Linear_{I→C}``. ``forward(x [B, L, C]) -> (seasonal, trend)``, both ``[B, L, C]``."""

    def __init__(self, channels: int, width: int = 32, heads: int = 4, dropout: float = 0.0):
        super().__init__()
        if width % heads:
            raise ValueError(f"atcd_dim ({width}) must be divisible by atcd_heads ({heads})")
        self.project = nn.Linear(channels, width)
        self.attention = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.seasonal_out = nn.Linear(width, channels)
        self.trend_out = nn.Linear(width, channels)

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(projected, seasonal, trend)`` in the internal width: ``seasonal + trend == projected``."""
        projected = self.project(x)
        trend = F.silu(self.attention(projected, projected, projected, need_weights=False)[0])
        return projected, projected - trend, trend

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, seasonal, trend = self.split(x)
        return self.seasonal_out(seasonal), self.trend_out(trend)


class KarmaBlock(nn.Module):
    """Low- and high-frequency Mambas on the wavelet halves (no residual) and a bidirectional
    temporal Mamba with a residual on the tokens: ``X ← M1(N1(X)) + flip(M2(flip(N2(X)))) + X``.
    ``tie_directions`` shares M1's weights with M2 (the official code does on its
    ``use_decomp`` datasets)."""

    def __init__(self, d_model: int, mamba: dict, tie_directions: bool):
        super().__init__()
        half = coefficients_length(d_model)
        self.low = Mamba(half, **mamba)
        self.high = Mamba(half, **mamba)
        self.forward_scan = Mamba(d_model, **mamba)
        self.backward_scan = self.forward_scan if tie_directions else Mamba(d_model, **mamba)
        self.forward_norm = nn.RMSNorm(d_model, eps=1e-5)
        self.backward_norm = nn.RMSNorm(d_model, eps=1e-5)

    def forward(self, x, low, high):
        low, high = self.low(low), self.high(high)
        backward = self.backward_scan(self.backward_norm(x).flip(1)).flip(1)
        return self.forward_scan(self.forward_norm(x)) + backward + x, low, high


class KarmaEncoder(nn.Module):
    """HFTD + stacked KarmaBlocks: ``tokens [B, T, d] -> LayerNorm(IDWT(A, D) + X)``, where
    ``A, D`` are the db4 approximation and detail of every token's embedding (along ``d``)."""

    def __init__(self, d_model: int, e_layers: int, mamba: dict, tie_directions: bool):
        super().__init__()
        self.blocks = nn.ModuleList(KarmaBlock(d_model, mamba, tie_directions) for _ in range(e_layers))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low, high = dwt(x)
        for block in self.blocks:
            x, low, high = block(x, low, high)
        return self.norm(idwt(low, high, length=x.shape[-1]) + x)


class KARMA(Network):
    """``forward(x [B, L, C], x_mark [B, L, M]) -> [B, H, C]``.

    ``d_model`` token width, ``e_layers`` KarmaBlocks, Mamba ``d_state`` / ``d_conv`` /
    ``expand`` (and ``backend``: ``auto`` (``mamba_ssm``'s CUDA kernel on a GPU when it is
    installed, else the PyTorch scan), ``cuda`` or ``torch``; the weights are the same either
    way). ``calendar_tokens``: the calendar features join the variates as tokens (official; only
    without a decomposition). ``revin``: instance normalisation per window and channel.

    Official ETTh1 96 -> 96 configuration (d_model 256, 2 layers, d_state 2, d_conv 4, expand 2,
    7 variates + 4 calendar tokens, no decomposition): 2,160,430 parameters, the official model's
    executed path (its start-up count, 2,724,910, includes modules it builds and never calls).
    """

    uses_time_features = True
    channel_independent = False
    small_config = {"d_model": 16, "d_state": 2}

    def __init__(self, seq_len: int, pred_len: int, enc_in: int, mark_dim: int = 4, d_model: int = 256,
                 e_layers: int = 2, d_state: int = 2, d_conv: int = 4, expand: int = 2, dropout: float = 0.1,
                 decomposition: str = "none", moving_avg: int = 25, atcd_dim: int = 32, atcd_heads: int = 4,
                 tie_directions: bool = False, calendar_tokens: bool = True, revin: bool = True,
                 backend: str = "auto"):
        super().__init__()
        positive("KARMA", seq_len=seq_len, pred_len=pred_len, enc_in=enc_in, e_layers=e_layers, d_state=d_state,
                 d_conv=d_conv, expand=expand)
        if decomposition not in DECOMPOSITIONS:
            raise ConfigError(f"KARMA: decomposition must be one of {DECOMPOSITIONS}, got {decomposition!r}. Fix: use one of them.")
        if d_model < 8:
            raise ConfigError(f"KARMA: d_model must be >= 8 (the db4 wavelet has 8 taps), got {d_model}. Fix: model.d_model=8 or more.")
        if backend not in BACKENDS:
            raise ConfigError(f"KARMA: model.backend={backend!r} is not one of {list(BACKENDS)}. Fix: use one of them.")
        if decomposition == "atcd" and atcd_dim % atcd_heads:
            raise ConfigError(f"KARMA: atcd_dim ({atcd_dim}) must be divisible by atcd_heads ({atcd_heads}). "
                              "Fix: choose model.atcd_heads among the divisors of model.atcd_dim.")
        self.seq_len, self.pred_len, self.enc_in = seq_len, pred_len, enc_in
        self.decomposition = decomposition
        # the official code appends calendar tokens only when it does not decompose
        self.calendar_tokens = calendar_tokens and decomposition == "none"
        mamba = dict(d_state=d_state, d_conv=d_conv, expand=expand, backend=backend)
        self.revin = RevIN(enc_in) if revin else None
        self.embedding = InvertedEmbedding(seq_len, d_model, dropout)
        self.encoder = KarmaEncoder(d_model, e_layers, mamba, tie_directions)
        if decomposition != "none":
            self.decompose = SeriesDecomposition(moving_avg) if decomposition == "moving_average" else ATCD(enc_in, atcd_dim, atcd_heads)
            self.trend_embedding = InvertedEmbedding(seq_len, d_model, dropout)
            self.global_mamba = Mamba(d_model, **mamba)
        self.head = nn.Linear(d_model, pred_len)

    def forward(self, x: torch.Tensor, x_mark: torch.Tensor | None = None, y_mark: torch.Tensor | None = None) -> torch.Tensor:
        stats = None
        if self.revin is not None:
            x, stats = self.revin.normalize(x)
        if self.decomposition == "none":
            if self.calendar_tokens and x_mark is None:
                raise ValueError("KARMA with calendar_tokens needs the calendar features (x_mark); "
                                 "pass them or set model.calendar_tokens=false")
            encoded = self.encoder(self.embedding(x, x_mark if self.calendar_tokens else None))
        else:
            seasonal, trend = self.decompose(x)
            encoded = self.encoder(self.embedding(seasonal)) + self.global_mamba(self.trend_embedding(trend))
        out = self.head(encoded)[:, : self.enc_in].transpose(1, 2)  # variate tokens only: [B, H, C]
        return self.revin.denormalize(out, stats) if self.revin is not None else out
