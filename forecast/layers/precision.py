"""Full precision inside a mixed-precision region (``trainer.precision=bf16-mixed``).

Autocast runs matrix products in bf16 but leaves the FFT to its input dtype, and bf16 has no
FFT kernels on CPU and loses the small spectral terms on GPU. The FFT-based blocks and
Auto-Correlation's delay curve (ETSformer's exponential smoothing and frequency attention, KARMA's
time-frequency loss) compute inside :func:`full_precision` on fp32 inputs; their results are
fp32 and autocast casts them again where the next product wants bf16.
"""

from __future__ import annotations

import contextlib

import torch


def full_precision(tensor: torch.Tensor) -> contextlib.AbstractContextManager:
    """A context with autocast off on ``tensor``'s device (a no-op where autocast is not on)."""
    device = tensor.device.type
    if not torch.is_autocast_enabled(device):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device, enabled=False)
