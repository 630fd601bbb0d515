"""One-level discrete wavelet transform (Daubechies db4) and its inverse, as convolutions.

The conventions are PyWavelets' ``pywt.dwt`` / ``pywt.idwt`` with ``mode='symmetric'``
(half-sample symmetric extension), which ``pytorch_wavelets`` (used by the KARMA code) follows:
a signal of ``n`` points gives ``⌊(n + 7) / 2⌋`` approximation and detail coefficients, and the
inverse returns the signal exactly (tests compare with PyWavelets). Differentiable; works on
any leading dims, along the last one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# Daubechies' 4-vanishing-moment scaling filter (decomposition low-pass, 8 taps), as published
# (Daubechies 1992, Table 6.1, normalised to unit energy) and as PyWavelets ships it.
DB4_DEC_LO = (
    -0.010597401785069032, 0.0328830116668852, 0.030841381835560764, -0.18703481171909309,
    -0.027983769416859854, 0.6308807679298589, 0.7148465705529157, 0.2303778133088965,
)


def _filters(dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Analysis filters ``[2, 1, 8]`` (low, high; flipped for ``conv1d``'s correlation) and
    synthesis filters ``[2, 1, 8]`` for ``conv_transpose1d``, from the quadrature-mirror relations
    ``rec_lo = reverse(dec_lo)``, ``rec_hi[k] = (-1)^k dec_lo[k]``, ``dec_hi = reverse(rec_hi)``."""
    dec_lo = torch.tensor(DB4_DEC_LO, dtype=torch.float64)
    rec_lo = dec_lo.flip(0)
    signs = torch.tensor([(-1.0) ** k for k in range(len(DB4_DEC_LO))], dtype=torch.float64)
    rec_hi = signs * dec_lo
    dec_hi = rec_hi.flip(0)
    analysis = torch.stack([dec_lo.flip(0), dec_hi.flip(0)]).unsqueeze(1)
    synthesis = torch.stack([rec_lo, rec_hi]).unsqueeze(1)
    return analysis.to(dtype=dtype, device=device), synthesis.to(dtype=dtype, device=device)


def _symmetric_index(n: int, pad: int, device: torch.device) -> torch.Tensor:
    """Indices of the half-sample symmetric extension by ``pad`` points on each side
    (``x[-1] = x[0], x[-2] = x[1], …``; mirrored again for signals shorter than ``pad``)."""
    index = torch.arange(-pad, n + pad, device=device) % (2 * n)
    return torch.where(index >= n, 2 * n - 1 - index, index)


def dwt(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x [..., n] -> (approximation, detail)``, each ``[..., ⌊(n + 7) / 2⌋]``."""
    n = x.shape[-1]
    analysis, _ = _filters(x.dtype, x.device)
    taps = analysis.shape[-1]
    extended = x.index_select(-1, _symmetric_index(n, taps - 1, x.device))
    # full convolution of the extension, every second value from index `taps`
    flat = extended[..., 1:].reshape(-1, 1, n + 2 * taps - 3)
    coefficients = F.conv1d(flat, analysis, stride=2)
    m = (n + taps - 1) // 2
    coefficients = coefficients.view(*x.shape[:-1], 2, m)
    return coefficients[..., 0, :], coefficients[..., 1, :]


def idwt(approximation: torch.Tensor, detail: torch.Tensor, length: int | None = None) -> torch.Tensor:
    """The inverse of :func:`dwt`: ``[..., m] x 2 -> [..., length]`` (default ``2m - 6``, the
    signal length for even ``n``; pass ``length=n`` to get an odd-length signal back)."""
    m = approximation.shape[-1]
    _, synthesis = _filters(approximation.dtype, approximation.device)
    taps = synthesis.shape[-1]
    out_length = 2 * m - taps + 2
    if length is None:
        length = out_length
    elif not out_length - 1 <= length <= out_length:
        raise ValueError(f"{m} coefficients reconstruct {out_length - 1} or {out_length} points, not {length}")
    both = torch.stack([approximation, detail], -2).reshape(-1, 2, m)
    full = F.conv_transpose1d(both, synthesis, stride=2)  # upsample by 2 and filter
    return full[..., taps - 2 : taps - 2 + length].reshape(*approximation.shape[:-1], length)


def coefficients_length(n: int) -> int:
    """Length of each half of :func:`dwt` for ``n`` points."""
    return math.floor((n + len(DB4_DEC_LO) - 1) / 2)
