"""ETSformer's building blocks (Woo et al., 2022; ``reference/models.md`` §3): exponential
smoothing as a causal convolution, exponential-smoothing attention for the growth,
frequency attention for the season, the per-channel level, and the damped growth forecast.

Notation: the smoothing rate ``α = sigmoid(θ)`` weights the *past*, as in the official code
(``s_t = α·s_{t-1} + (1-α)·v_t``); the paper's α is ``1 - α``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from forecast.layers.dropout import Dropout
from forecast.layers.precision import full_precision


def _fast_length(n: int) -> int:
    """The smallest ``m >= n`` with no prime factor above 5 (a length the FFT handles fast)."""
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


# up to this many steps the convolution is a product with the lower-triangular Toeplitz matrix of
# the kernel; beyond it, the FFT. Measured on this project's CPUs (1 thread, forward and backward of
# values [32, T, 8, 64]): the product is 4.1x faster at T = 96, 4.5x at 336 and 2.4x at 720.
TOEPLITZ_MAX_LENGTH = 1024


def causal_convolution(values: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """``out[:, t] = Σ_{j<=t} kernel[t - j]·values[:, j]`` along dim 1.

    ``values [B, T, ...]``; ``kernel [T, ...]`` broadcastable against ``values[0]``. Up to
    :data:`TOEPLITZ_MAX_LENGTH` steps, one product with the kernel's lower-triangular Toeplitz
    matrix ``W[t, j] = kernel[t - j]`` (O(T²) but dense and direct); longer, the real FFT with
    both zero-padded to a fast length >= ``2T - 1``, so the product of spectra is a linear (not
    circular) convolution: O(T log T). Runs in float32 at least.
    """
    length = values.shape[1]
    dtype = torch.promote_types(values.dtype, torch.float32)
    with full_precision(values):
        values, kernel = values.to(dtype), kernel.to(dtype)
        if length <= TOEPLITZ_MAX_LENGTH:
            return _toeplitz_product(values, kernel)
        n = _fast_length(2 * length - 1)
        spectrum = torch.fft.rfft(values, n=n, dim=1) * torch.fft.rfft(kernel, n=n, dim=0)
        return torch.fft.irfft(spectrum, n=n, dim=1)[:, :length]


def _toeplitz_product(values: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """:func:`causal_convolution` as ``einsum(W [T, T, groups], values [B, T, ...])``: the
    kernel's trailing axes of size > 1 are batch axes of the product, the others are columns."""
    length, rest = values.shape[1], values.shape[2:]
    if kernel.dim() - 1 > len(rest):
        raise ValueError(f"kernel {tuple(kernel.shape)} has more axes than values[0] {tuple(values.shape[1:])}")
    kernel = kernel.reshape(length, *([1] * (len(rest) - kernel.dim() + 1)), *kernel.shape[1:])
    axes = "cdefghijklmnopqrsuvwxyz"[: len(rest)]
    groups = "".join(a for a, size in zip(axes, kernel.shape[1:]) if size > 1)
    lag = torch.arange(length, device=values.device)
    lag = lag[:, None] - lag[None, :]  # t - j
    toeplitz = kernel.reshape(length, -1)[lag.clamp(min=0)]  # [T, T, groups]
    toeplitz = torch.where((lag >= 0)[:, :, None], toeplitz, 0).reshape(length, length, *(s for s in kernel.shape[1:] if s > 1))
    return torch.einsum(f"tj{groups},bj{axes}->bt{axes}", toeplitz, values)


class ExponentialSmoothing(nn.Module):
    """``s_t = α·s_{t-1} + (1-α)·v_t`` with a learnable start ``s_{-1} = v0``, one rate per head.

    ``values [B, T, heads, dim] -> [B, T, heads, dim]``, computed in closed form,
    ``s_t = α^{t+1}·v0 + Σ_{j<=t} (1-α)·α^{t-j}·v_j``, the sum as a causal convolution.
    Dropout acts on the values before smoothing (as the reference does).
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.smoothing = nn.Parameter(torch.randn(heads, 1))  # θ, α = sigmoid(θ); a "rate" parameter
        self.v0 = nn.Parameter(torch.randn(1, 1, heads, dim))
        self.dropout = Dropout(dropout)

    @property
    def alpha(self) -> torch.Tensor:
        """``[heads]``."""
        return torch.sigmoid(self.smoothing[:, 0])

    def powers(self, length: int, start: int = 0) -> torch.Tensor:
        """``α^(start..start+length-1)`` as ``[length, heads, 1]``."""
        steps = torch.arange(start, start + length, device=self.smoothing.device, dtype=self.smoothing.dtype)
        return (self.alpha[None, :] ** steps[:, None])[..., None]

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        length = values.shape[1]
        kernel = (1 - self.alpha)[None, :, None] * self.powers(length)  # (1-α)·α^j
        return self.powers(length, start=1) * self.v0 + causal_convolution(self.dropout(values), kernel)


class GrowthLayer(nn.Module):
    """Multi-head exponential-smoothing attention over first differences (the growth).

    ``z [B, T, d] -> [B, T + 1, d]``: project, difference (the first step against a learnable
    ``z0``), smooth per head, prepend the smoother's start state, project back. Index 0 of the
    output is the start state; index ``t + 1`` is the growth after step ``t``.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.heads, self.head_dim = n_heads, d_model // n_heads
        self.z0 = nn.Parameter(torch.randn(n_heads, self.head_dim))
        self.project_in = nn.Linear(d_model, d_model)
        self.smoother = ExponentialSmoothing(self.head_dim, n_heads, dropout)
        self.project_out = nn.Linear(d_model, d_model)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        batch, length, _ = z.shape
        values = self.project_in(z).view(batch, length, self.heads, self.head_dim)
        previous = torch.cat([self.z0.expand(batch, 1, -1, -1), values[:, :-1]], dim=1)
        smoothed = self.smoother(values - previous)
        out = torch.cat([self.smoother.v0.expand(batch, -1, -1, -1).to(smoothed.dtype), smoothed], dim=1)
        return self.project_out(out.reshape(batch, length + 1, -1))


class FrequencyAttention(nn.Module):
    """The season: the ``k`` strongest DFT bins of every sample and feature, extrapolated.

    ``z [B, T, d] -> [B, T + H, d]``. The DC bin (and for even ``T`` the Nyquist bin) is
    never chosen; each chosen bin ``X_f`` contributes ``(2/T)·(Re X_f·cos(2πfτ/T) - Im X_f·sin(2πfτ/T))``
    for ``τ = 0..T+H-1``, i.e. the sinusoid it stands for, continued past the window. Both
    directions are products with fixed bases: the selectable bins' ``P_f = Σ_τ z_τ cos(2πfτ/T)``
    (``= Re X_f``) and ``Q_f = Σ_τ z_τ sin(2πfτ/T)`` (``= -Im X_f``) in one product, the
    selection a mask on them (by ``P² + Q² = |X_f|²``), the reconstruction
    ``(2/T)·(P_f cos + Q_f sin)`` in another (no ``[B, k, T+H, d]`` intermediate). On the
    CPU the two products take a fraction of the strided FFT along the time axis. ``k = 0``
    gives zeros.
    """

    def __init__(self, pred_len: int, k: int):
        super().__init__()
        if k < 0:
            raise ValueError(f"k (frequencies kept) must be >= 0, got {k}")
        self.pred_len, self.k = pred_len, k
        self._bases: dict = {}

    def bases(self, length: int, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """``analysis [2·bins, T]`` (cos rows, then sin rows, of ``2π·f·τ/T`` for the selectable
        bins ``f`` and ``τ < T``) and ``synthesis [T + H, 2·bins]`` (the same for ``τ < T + H``,
        times ``2/T``); computed in float64 once per length, device and dtype."""
        key = (length, str(device), dtype)
        if key not in self._bases:
            bins = torch.arange(1, (length - 1) // 2 + 1, device=device, dtype=torch.float64)
            tau = torch.arange(length + self.pred_len, device=device, dtype=torch.float64)
            angle = 2 * math.pi * tau[:, None] * bins[None, :] / length
            synthesis = torch.cat([torch.cos(angle), torch.sin(angle)], dim=1)  # [T + H, 2·bins]
            self._bases[key] = (synthesis[:length].T.contiguous().to(dtype), (synthesis * (2 / length)).to(dtype))
        return self._bases[key]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.cat(self.window_and_horizon(z), dim=1)

    def window_and_horizon(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The season over the window ``[B, T, d]`` and over the horizon ``[B, H, d]``, as two
        tensors (slices of one would each cost a zero-filled full-size gradient in backward)."""
        batch, length, d = z.shape
        n_bins = (length - 1) // 2  # bins 1..⌊(T-1)/2⌋: no DC, no Nyquist
        k = min(self.k, n_bins)
        if k == 0:
            return z.new_zeros(batch, length, d), z.new_zeros(batch, self.pred_len, d)
        # in fp32 under autocast too: the selection and the inverse DFT (a bf16 basis would
        # carry 3-digit sinusoids through the extrapolation)
        with full_precision(z):
            analysis, synthesis = self.bases(length, z.device, torch.promote_types(z.dtype, torch.float32))
            coefficients = torch.matmul(analysis, z.to(analysis.dtype))  # [B, 2·bins, d]: P then Q
            with torch.no_grad():
                power = coefficients[:, :n_bins].square() + coefficients[:, n_bins:].square()
                top = power.topk(k, dim=1).indices
                keep = torch.zeros(power.shape, dtype=torch.bool, device=z.device).scatter_(1, top, True)
            kept = torch.where(keep.repeat(1, 2, 1), coefficients, 0)
            return torch.matmul(synthesis[:length], kept), torch.matmul(synthesis[length:], kept)


class LevelLayer(nn.Module):
    """Per-channel level: ``E_t = α_c·E_{t-1} + (1-α_c)·(E'_t - Ŝ_t) + growth term``.

    ``level [B, T, C]`` (the previous layer's level, the input for the first), ``growth
    [B, T, d]`` (the growth layer's output without its last step, so step ``t`` holds the
    growth up to ``t - 1``), ``season [B, T, d]``; ``Ĝ, Ŝ`` are their projections to the ``C``
    channels. The growth term:

    * ``growth_conv="paper"``: the paper's recursion ``E_t = α·(E_{t-1} + Ĝ_t) + (1-α)·(E'_t - Ŝ_t)``,
      i.e. the causal convolution ``Σ_{j<=t} α^{t-j+1}·Ĝ_j``;
    * ``growth_conv="official"``: what the official code computes, ``α^{T-t}·Ĝ_t`` (its
      convolution runs along a size-1 axis and degenerates to this product).
    """

    def __init__(self, d_model: int, c_out: int, dropout: float, growth_conv: str = "paper"):
        super().__init__()
        if growth_conv not in ("paper", "official"):
            raise ValueError(f"growth_conv must be 'paper' or 'official', got {growth_conv!r}")
        self.growth_conv = growth_conv
        self.smoother = ExponentialSmoothing(1, c_out, dropout)
        self.growth_projection = nn.Linear(d_model, c_out)
        self.season_projection = nn.Linear(d_model, c_out)
        self.growth_dropout = Dropout(dropout)

    def forward(self, level: torch.Tensor, growth: torch.Tensor, season: torch.Tensor) -> torch.Tensor:
        length = level.shape[1]
        growth = self.growth_dropout(self.growth_projection(growth)).float()[..., None]  # [B, T, C, 1]
        season = self.season_projection(season).float()[..., None]
        out = self.smoother(level.float()[..., None] - season)
        if self.growth_conv == "paper":
            out = out + causal_convolution(growth, self.smoother.powers(length, start=1))
        else:
            out = out + growth * self.smoother.powers(length, start=1).flip(0)  # α^{T-t}
        return out[..., 0]


class DampingLayer(nn.Module):
    """The growth forecast: the last growth vector ``g`` times ``Σ_{i<=h} φ^i`` at step ``h``,
    one damping factor ``φ = sigmoid(θ)`` per head. ``g [B, d] -> [B, H, d]``."""

    def __init__(self, pred_len: int, n_heads: int, dropout: float):
        super().__init__()
        self.pred_len, self.heads = pred_len, n_heads
        self.damping = nn.Parameter(torch.randn(1, n_heads))  # a "rate" parameter
        self.dropout = Dropout(dropout)

    @property
    def phi(self) -> torch.Tensor:
        return torch.sigmoid(self.damping[0])

    def forward(self, g: torch.Tensor) -> torch.Tensor:
        batch, d = g.shape
        steps = torch.arange(1, self.pred_len + 1, device=g.device, dtype=self.damping.dtype)
        factors = (self.phi[None, :] ** steps[:, None]).cumsum(dim=0)  # [H, heads]
        g = self.dropout(g[:, None, :].expand(batch, self.pred_len, d)).reshape(batch, self.pred_len, self.heads, -1)
        return (g * factors[None, :, :, None].to(g.dtype)).reshape(batch, self.pred_len, d)


class CausalEmbedding(nn.Module):
    """Values only, no calendar or position: ``Conv1d(C -> d, kernel 3, no bias)`` over the
    current and two previous steps (zeros before the start), then dropout."""

    def __init__(self, c_in: int, d_model: int, dropout: float):
        super().__init__()
        self.conv = nn.Conv1d(c_in, d_model, kernel_size=3, bias=False)
        nn.init.kaiming_normal_(self.conv.weight)
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.conv(F.pad(x.transpose(1, 2), (2, 0))).transpose(1, 2))
