"""A circularly padded ``Conv1d`` of few channels as one matrix product."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def circular_conv1d(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``nn.Conv1d(C_in, C_out, k, padding=(k - 1) // 2, padding_mode="circular", bias=False)`` on
    ``x [B, L, C_in]`` (time second, no transposes) -> ``[B, L, C_out]``; ``weight [C_out, C_in, k]``, k odd.

    ``out[t] = Σ_j W_j·x[(t + j - p) mod L]`` with ``p = (k - 1) // 2``, computed on the narrow
    side: from ``k`` rolled copies of the input side by side when ``C_in <= C_out`` (an embedding:
    ``[B, L, k·C_in]`` times ``[k·C_in, C_out]``), else from one product to ``k·C_out`` outputs whose
    rolls are summed (a projection to few channels). The oneDNN convolution spends most of its time
    on the layouts of these thin shapes: Autoformer's embedding (7 -> 512, L = 96 and 144) and its
    trend projection (512 -> 7, L = 144), forward and backward, took 41 ms a training step as
    convolutions and 8 ms as products (1 thread).
    """
    taps = weight.shape[2]
    if taps % 2 == 0:
        raise ValueError(f"circular_conv1d takes an odd kernel size, got {taps}")
    pad = (taps - 1) // 2
    if weight.shape[1] <= weight.shape[0]:
        unfolded = torch.cat([torch.roll(x, pad - j, dims=1) if j != pad else x for j in range(taps)], dim=-1)
        return F.linear(unfolded, weight.permute(0, 2, 1).reshape(weight.shape[0], -1))
    per_tap = F.linear(x, weight.permute(2, 0, 1).reshape(-1, weight.shape[1])).chunk(taps, dim=-1)
    out = per_tap[pad]
    for j in range(taps):
        if j != pad:
            out = out + torch.roll(per_tap[j], pad - j, dims=1)
    return out
