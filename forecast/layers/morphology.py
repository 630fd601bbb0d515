"""Morphological multi-component decomposition (MCD) of D-PAD (Yuan & Chen, 2024).

An EMD-like sifting in which the upper and lower envelopes are a flat dilation and erosion
(structuring element of length 3, zero padding at both ends, as the official code), so it is
parameter-free, differentiable almost everywhere and costs O(L) per step. ``reference/models.md``
§4.2 gives the loop.

A flat element of length 3 only resolves periods up to 3: for a slower oscillation the running
max and min sit either side of the series and their mean is the series itself, so every IMF
after the first is a small high-frequency remainder and the residual keeps all the rest (a
period-24 sinusoid passes through to the residual untouched; measured in benchmarks/notes.md).
``multiscale=True`` is an option that doubles the element for each IMF (3, 5, 9, 17, 33 for
K = 6), which makes the components an ordered filter bank, high to low frequency, as the
paper's description of MCD reads. The official scripts use the fixed element (the default).

Two documented deviations from the official code:

* the stopping rule ``Σ_t (h_new - h)² < threshold · Σ_t h_new²`` is evaluated **per series**
  (each sample and channel on its own), not once over the whole batch tensor, so the
  decomposition of a series does not depend on what else is in the batch;
* sifting stops after ``max_iterations`` steps at most (the official loop has no cap; a series
  that never meets the rule would loop for ever).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _envelopes(x: torch.Tensor, kernel_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The zero-padded series ``[R, 1, T + k - 1]``, its running max and minus its running min
    (``[R, 1, T]``) over windows of ``kernel_size``, without autograd (max pooling without
    indices is an order of magnitude faster than with them)."""
    half = kernel_size // 2
    padded = F.pad(x.reshape(-1, x.shape[-1]), (half, half)).unsqueeze(1)  # 2-D padding is 3x faster
    return padded, F.max_pool1d(padded, kernel_size, stride=1), F.max_pool1d(-padded, kernel_size, stride=1)


class _SiftStep(torch.autograd.Function):
    """``h - (δ(h) + ε(h)) / 2`` with the adjoint written out: each output sends ``-g/2`` to
    the position of its window's max and to that of its min (the first one on ties, as max
    pooling). Nothing is saved but the input; the backward pass recomputes the envelopes."""

    @staticmethod
    def forward(ctx, h: torch.Tensor, kernel_size: int) -> torch.Tensor:
        ctx.kernel_size = kernel_size
        ctx.save_for_backward(h)
        _, upper, negative_lower = _envelopes(h, kernel_size)
        return h - ((upper - negative_lower) * 0.5).view(h.shape)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        (h,) = ctx.saved_tensors
        k = ctx.kernel_size
        padded, upper, negative_lower = _envelopes(h, k)
        g = grad.reshape(upper.shape)
        half_g = g * -0.5
        if k == 3:  # which of (left, centre, right) holds the max / min: masks, no indices
            left, centre = padded[..., :-2], padded[..., 1:-1]
            lower = -negative_lower
            is_left_max, is_left_min = left == upper, left == lower
            is_centre_max = (centre == upper) & ~is_left_max
            is_centre_min = (centre == lower) & ~is_left_min
            to_left = half_g * (is_left_max.to(g.dtype) + is_left_min.to(g.dtype))
            to_centre = half_g * (is_centre_max.to(g.dtype) + is_centre_min.to(g.dtype))
            to_right = 2 * half_g - to_left - to_centre  # max and min each sit at exactly one place
            out = g + to_centre
            out[..., :-1] += to_left[..., 1:]
            out[..., 1:] += to_right[..., :-1]
        else:
            _, at_max = F.max_pool1d(padded, k, stride=1, return_indices=True)
            _, at_min = F.max_pool1d(-padded, k, stride=1, return_indices=True)
            spread = torch.zeros_like(padded)
            spread.scatter_add_(-1, at_max, half_g).scatter_add_(-1, at_min, half_g)
            out = g + spread[..., k // 2 : k // 2 + g.shape[-1]]
        return out.view(grad.shape), None


def sift_step(h: torch.Tensor, kernel_size: int = 3) -> torch.Tensor:
    """One sifting step along the last dim: ``h - (δ(h) + ε(h)) / 2``, where the dilation
    ``δ`` and erosion ``ε`` are the running max and min over a centred window of
    ``kernel_size`` (odd) points, the series zero-padded at each end."""
    return _SiftStep.apply(h, kernel_size)


class MorphologicalDecomposition(nn.Module):
    """``x [..., T] -> components [..., K, T]``: ``K - 1`` intrinsic mode functions, highest
    frequency first, then the residual ``x - Σ imf`` (trend-like); they sum back to ``x``.

    Each IMF is sifted from what the previous ones left: ``h ← h - envelope_mean(h)`` until
    the series' change is below ``threshold`` of its energy, or ``max_iterations`` steps.
    The envelopes use a flat element of ``kernel_size`` points; with ``multiscale`` the
    ``j``-th IMF uses ``(kernel_size - 1)·2^j + 1``.
    All series (every leading index) sift together; a series that has stopped is frozen while
    the others go on. ``last_iterations`` holds the steps each series took for each IMF in the
    last call (``[..., K-1]``, int), for monitoring.
    """

    def __init__(self, components: int = 6, threshold: float = 0.1, max_iterations: int = 10,
                 kernel_size: int = 3, multiscale: bool = False):
        super().__init__()
        if kernel_size < 3 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and >= 3, got {kernel_size}")
        if components < 1:
            raise ValueError(f"components (K) must be >= 1, got {components}")
        if max_iterations < 1:
            raise ValueError(f"max_iterations must be >= 1, got {max_iterations}")
        if threshold <= 0:
            raise ValueError(f"threshold must be > 0, got {threshold}")
        self.components, self.threshold, self.max_iterations = components, threshold, max_iterations
        self.kernel_sizes = [(kernel_size - 1) * 2**j + 1 if multiscale else kernel_size for j in range(components - 1)]
        self.last_iterations: torch.Tensor | None = None

    def sift(self, h: torch.Tensor, kernel_size: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
        """One IMF of ``h [..., T]`` and the steps each series took."""
        active = torch.ones(h.shape[:-1], dtype=torch.bool, device=h.device)
        steps = torch.zeros(h.shape[:-1], dtype=torch.int32, device=h.device)
        first = True  # every series takes the first step
        for _ in range(self.max_iterations):
            new = sift_step(h, kernel_size)
            with torch.no_grad():
                change = (new - h).square().sum(-1)
                # multiplied out, so an all-zero series (0 <= 0) stops instead of dividing by zero
                going_on = change > self.threshold * new.square().sum(-1)
            steps += active
            h = new if first else torch.where(active.unsqueeze(-1), new, h)
            first = False
            active = active & going_on  # not in place: torch.where saved the old mask for backward
            if not active.any():
                break
        return h, steps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        components, steps = [], []
        rest = x
        for kernel_size in self.kernel_sizes:
            imf, n = self.sift(rest, kernel_size)
            components.append(imf)
            steps.append(n)
            rest = rest - imf
        components.append(rest)
        self.last_iterations = torch.stack(steps, -1) if steps else None
        return torch.stack(components, -2)
