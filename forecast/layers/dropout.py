"""Dropout with a cheaper random mask on CPU."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn


def random_int16(shape: torch.Size) -> torch.Tensor:
    """Uniform 16-bit integers: 64-bit words of numpy's PCG64DXSM read as four int16 each, the
    generator seeded from torch's (so ``torch.manual_seed`` and ``seed_everything`` repeat them).

    ``torch.randint(..., dtype=torch.int16)`` spends a call of torch's CPU generator (a Mersenne
    Twister) on every element; 64-bit draws give four each (a [32, 96, 512] mask: 6.9 -> 2.3 ms, 1
    thread), and PCG64DXSM's words take 40-60 % of the time of torch's 64-bit draws (a [32, 144, 2048]
    mask: 15.6-16.2 -> 6.3-9.7 ms, 1 thread, a scratch timing). PCG64DXSM is numpy's recommended
    64-bit generator; every bit of its words is uniform, so all four lanes are.
    """
    count = math.prod(shape)
    seed = torch.randint(0, 2**62, (2,), dtype=torch.int64).tolist()  # 124 bits from torch's generator
    words = np.random.PCG64DXSM(seed).random_raw((count + 3) // 4)
    return torch.from_numpy(words.view(np.int16)[:count]).view(shape)


class Dropout(nn.Dropout):
    """``nn.Dropout`` whose CPU mask is 16-bit integers (:func:`random_int16`) compared with a threshold.

    ``torch.bernoulli_`` draws one float per element and was the second largest cost of an
    Autoformer training step on this project's CPUs (9 %); drawing 16-bit integers halves the
    cost of the mask (a dropout on ``[32, 144, 2048]``: 45 ms instead of 63 ms, 2 threads), and
    took the Autoformer step from 1.61 to 1.50 s. The drop probability is ``p`` rounded to a
    multiple of 1/65536 (0.05 -> 0.050003). On other devices, and outside training, this is
    ``nn.Dropout``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or x.device.type != "cpu" or self.inplace:
            return super().forward(x)
        if self.p == 1:
            return x * 0
        threshold = round(self.p * 65536) - 32768
        keep = torch.ge(random_int16(x.shape), threshold, out=torch.empty(x.shape, dtype=x.dtype))  # 1 kept, 0 dropped
        return _ScaledMask.apply(x, keep, 1.0 / (1.0 - self.p))


class _ScaledMask(torch.autograd.Function):
    """``x * mask * scale`` forward and ``grad * mask * scale`` backward, each one ``addcmul``
    pass (the mask is 0/1 in ``x``'s dtype, so a kept value is rounded once). As
    ``torch.where(mask, x * scale, 0)`` the same dropout took twice as long, forward and
    backward ([32, 96, 2048]: 43 -> 23 ms, 1 thread)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, mask: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(mask)
        ctx.scale = scale
        return torch.addcmul(x.new_zeros(()), x, mask, value=scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (mask,) = ctx.saved_tensors
        return torch.addcmul(grad.new_zeros(()), grad, mask, value=ctx.scale), None, None
