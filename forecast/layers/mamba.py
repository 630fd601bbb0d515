"""The Mamba selective state-space block (Gu & Dao, 2023), with two backends behind one module.

``Mamba`` has ``mamba_ssm.Mamba``'s parameters (names, shapes, initialisation), so a state
dict moves between backends unchanged:

* ``torch``: the pure-PyTorch selective scan below, on any device;
* ``cuda``: ``mamba_ssm``'s fused CUDA kernel for the scan (``selective_scan_fn``), imported
  lazily the first time a CUDA tensor goes through the block;
* ``auto`` (default): ``cuda`` when the input is on a CUDA device and ``mamba_ssm`` imports,
  else ``torch``; it never fails on a CPU-only machine.

The recurrence (per channel ``d`` of the ``E·D`` inner channels and state ``n`` of ``N``)::

    h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t x_t,        y_t = C_t · h_t + D x_t

The torch scan (:func:`selective_scan`) works chunk by chunk with a hand-written backward
pass that recomputes each chunk's states. On CPU a recursive-doubling (Hillis-Steele) parallel
scan was measured 12x slower than even a plain loop at (B 32, T 96, E 512, N 16), its
``log2 T`` passes over ``[B, T, E, N]`` tensors costing more memory traffic than the ``T`` small
steps they replace; the chunked scan keeps the work linear and the memory bounded
(``benchmarks/notes.md`` has the measurements).
"""

from __future__ import annotations

import functools
import importlib
import math

import torch
import torch.nn.functional as F
from torch import nn

BACKENDS = ("auto", "cuda", "torch")


class _SelectiveScan(torch.autograd.Function):
    """Chunked selective scan with a hand-written backward pass (see :func:`selective_scan`).

    States are laid out ``[time, batch, N, E]``: the channel axis ``E`` (hundreds) is the
    contiguous one and the state axis ``N`` (2-16) sits outside it, so every element-wise
    step and every reduction over ``N`` runs along long contiguous rows. With ``N`` innermost
    (``[..., E, N]``, the layout of the recurrence as written) each broadcast works on rows of
    2-16 floats and the products with ``B``/``C`` become batched matrix products with an inner
    size of ``N``; that layout took twice as long, forward and backward (``benchmarks/notes.md``)."""

    @staticmethod
    def _chunk(x, delta, A_t, B, start, stop, state):
        """Decays, drives and states ``[c, b, N, E]`` of time steps ``start:stop`` (time-major
        inputs, ``A_t = A.T``), from the state before ``start``."""
        step = delta[start:stop].unsqueeze(2)  # [c, b, 1, E]
        decay = torch.exp(step * A_t)
        drive = (step * x[start:stop].unsqueeze(2)) * B[start:stop].unsqueeze(-1)
        states = torch.empty_like(drive)
        h = state
        for i in range(stop - start):  # one fused multiply-add per step
            h = torch.addcmul(drive[i], decay[i], h, out=states[i])
        return decay, states

    @staticmethod
    def forward(ctx, x, delta, A, B, C, chunk_size):
        x, delta, B, C = (t.transpose(0, 1) for t in (x, delta, B, C))  # time-major views
        A_t = A.t().contiguous()  # [N, E]
        length, batch, channels = x.shape
        state = x.new_zeros(batch, A.shape[-1], channels)
        y = x.new_empty(length, batch, channels)
        boundaries = []
        for start in range(0, length, chunk_size):
            stop = min(start + chunk_size, length)
            boundaries.append(state)
            _, states = _SelectiveScan._chunk(x, delta, A_t, B, start, stop, state)
            torch.sum(states * C[start:stop].unsqueeze(-1), 2, out=y[start:stop])  # y_t = C_t · h_t
            state = states[-1]
        ctx.chunk_size = chunk_size
        ctx.save_for_backward(x, delta, A_t, B, C, torch.stack(boundaries))
        return y.transpose(0, 1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y):
        x, delta, A_t, B, C, boundaries = ctx.saved_tensors
        grad_y = grad_y.transpose(0, 1)
        length = x.shape[0]
        grads = {name: torch.empty_like(t) for name, t in (("x", x), ("delta", delta), ("B", B), ("C", C))}
        grad_A_t = torch.zeros_like(A_t)
        carry = torch.zeros_like(boundaries[0])  # dL/dh at the end of the chunk, from later steps
        starts = list(range(0, length, ctx.chunk_size))
        for index in reversed(range(len(starts))):
            start, stop = starts[index], min(starts[index] + ctx.chunk_size, length)
            decay, states = _SelectiveScan._chunk(x, delta, A_t, B, start, stop, boundaries[index])
            g_y = grad_y[start:stop].unsqueeze(2)  # [c, b, 1, E]
            g = g_y * C[start:stop].unsqueeze(-1)  # dL/dh_t through y_t, then in total: the adjoint
            g[-1] += carry                         # recurrence, backwards in time
            for i in range(stop - start - 2, -1, -1):
                g[i].addcmul_(decay[i + 1], g[i + 1])
            carry = decay[0] * g[0]
            previous = torch.cat([boundaries[index].unsqueeze(0), states[:-1]])
            exponent = g * previous * decay  # dL/d(Δ_t A)
            step, x_t = delta[start:stop], x[start:stop]
            grad_A_t += (exponent * step.unsqueeze(2)).sum((0, 1))
            drive = (g * B[start:stop].unsqueeze(-1)).sum(2)  # dL/d(Δ_t x_t)
            torch.add((exponent * A_t).sum(2), drive * x_t, out=grads["delta"][start:stop])
            torch.mul(drive, step, out=grads["x"][start:stop])
            torch.sum(g * (step * x_t).unsqueeze(2), -1, out=grads["B"][start:stop])
            torch.sum(g_y * states, -1, out=grads["C"][start:stop])
        return (grads["x"].transpose(0, 1), grads["delta"].transpose(0, 1), grad_A_t.t(),
                grads["B"].transpose(0, 1), grads["C"].transpose(0, 1), None)


class _CausalDepthwiseConv(torch.autograd.Function):
    """Causal depthwise convolution along time on ``[B, T, E]`` (see :func:`causal_depthwise_conv`)."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        length, taps = x.shape[1], weight.shape[1]
        out = bias.expand_as(x).contiguous()
        for j in range(taps):  # tap j reaches back taps - 1 - j steps
            shift = taps - 1 - j
            if shift < length:
                out[:, shift:].addcmul_(x[:, : length - shift], weight[:, j])
        ctx.save_for_backward(x, weight)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        length, taps = x.shape[1], weight.shape[1]
        grad_x = torch.zeros_like(x) if ctx.needs_input_grad[0] else None
        grad_weight = torch.zeros_like(weight)
        for j in range(taps):
            shift = taps - 1 - j
            if shift >= length:
                continue
            later = grad[:, shift:]
            if grad_x is not None:
                grad_x[:, : length - shift].addcmul_(later, weight[:, j])
            grad_weight[:, j] = (later * x[:, : length - shift]).sum((0, 1))
        return grad_x, grad_weight, grad.sum((0, 1))


def causal_depthwise_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``out[b, t, e] = bias[e] + Σ_j weight[e, j]·x[b, t - (K - 1) + j, e]`` (zeros before the
    start): ``mamba_ssm``'s causal depthwise ``Conv1d`` (``weight [E, 1, K]`` squeezed to ``[E, K]``,
    padding ``K - 1``, the output cut to ``T``), on the time-major-inner layout ``[B, T, E]``.

    Written as ``K`` multiply-adds of shifted slices, forward and backward: on CPU a depthwise
    ``Conv1d`` over short sequences (KARMA: 11 tokens) costs several times that in layout copies
    and a slow backward kernel, and the ``[B, E, T]`` transposes around it disappear."""
    return _CausalDepthwiseConv.apply(x, weight, bias)


def selective_scan(x: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                   D: torch.Tensor | None = None, chunk_size: int = 4) -> torch.Tensor:
    """``y`` of the recurrence above. ``x, delta [batch, T, E]``, ``A [E, N]``, ``B, C
    [batch, T, N]``, ``D [E]`` -> ``y [batch, T, E]``; ``delta`` is the step after softplus.
    Computed in float32 (or float64 if given), like the CUDA kernel.

    The decays ``exp(Δ_t A)`` and drives ``Δ_t x_t B_t`` of a chunk of ``chunk_size`` steps
    are computed as whole tensors; the recurrence itself is one fused multiply-add per step
    over ``[batch, E, N]``. Only the states at chunk boundaries are kept for the backward
    pass, which recomputes a chunk's states and runs the adjoint recurrence
    ``g_t = C_t ∂y_t + exp(Δ_{t+1} A) g_{t+1}`` backwards through it: the saved state is
    ``1 / chunk_size`` of what autograd would keep. Small chunks are fastest on CPU: the
    chunk's temporaries stay in cache (4 steps: 1-2 MB at batch 32, E 512, N 16).
    """
    dtype = x.dtype
    work = torch.float64 if dtype == torch.float64 else torch.float32
    y = _SelectiveScan.apply(*(t.to(work) for t in (x, delta, A, B, C)), chunk_size)
    if D is not None:
        y = y + x.to(work) * D.to(work)
    return y.to(dtype)


def sequential_scan(x, delta, A, B, C, D=None):
    """The recurrence as a plain loop over time (the reference the tests hold the scan to)."""
    h = x.new_zeros(x.shape[0], x.shape[2], A.shape[-1])
    ys = []
    for t in range(x.shape[1]):
        h = torch.exp(delta[:, t, :, None] * A) * h + (delta[:, t] * x[:, t])[..., None] * B[:, t, None, :]
        ys.append((h * C[:, t, None, :]).sum(-1))
    y = torch.stack(ys, 1)
    return y if D is None else y + x * D


@functools.cache
def _cuda_scan():
    """``mamba_ssm``'s CUDA selective scan, or None when the package is not installed (looked
    up once: a failed import is not cached by Python and would search the path on every call)."""
    try:
        return importlib.import_module("mamba_ssm.ops.selective_scan_interface").selective_scan_fn
    except ImportError:
        return None


class Mamba(nn.Module):
    """``u [batch, T, d_model] -> [batch, T, d_model]``: the Mamba block of ``mamba_ssm``.

    ``x, z = split(in_proj(u))``; ``x = SiLU(causal depthwise conv(x))``; ``(δ, B, C) =
    split(x_proj(x))``; ``Δ = softplus(dt_proj(δ))``; ``y = scan(x, Δ, -exp(A_log), B, C, D)``;
    ``out = out_proj(y ⊙ SiLU(z))``. Inner width ``expand · d_model``, state ``d_state``,
    ``dt_rank = ⌈d_model / 16⌉``. Initialisation as ``mamba_ssm``: ``A_log = log(1..N)``,
    ``D = 1``, ``dt_proj`` weights uniform in ``±dt_rank^-1/2`` and its bias such that
    ``softplus(bias)`` is log-uniform in ``[dt_min, dt_max]`` (floor ``dt_floor``).
    """

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2, backend: str = "auto",
                 chunk_size: int = 4, dt_min: float = 1e-3, dt_max: float = 0.1, dt_floor: float = 1e-4):
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.d_model, self.d_state, self.backend, self.chunk_size = d_model, d_state, backend, chunk_size
        inner = expand * d_model
        self.dt_rank = math.ceil(d_model / 16)
        self.in_proj = nn.Linear(d_model, 2 * inner, bias=False)
        self.conv1d = nn.Conv1d(inner, inner, d_conv, groups=inner, padding=d_conv - 1, bias=True)
        self.x_proj = nn.Linear(inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, inner, bias=True)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(inner, 1))
        self.D = nn.Parameter(torch.ones(inner))
        self.out_proj = nn.Linear(inner, d_model, bias=False)
        with torch.no_grad():
            bound = self.dt_rank**-0.5
            self.dt_proj.weight.uniform_(-bound, bound)
            dt = torch.exp(torch.rand(inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)).clamp(min=dt_floor)
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus^-1(dt)

    def _use_cuda(self, u: torch.Tensor):
        if self.backend == "torch":
            return None
        scan = _cuda_scan() if u.is_cuda else None
        if scan is None and self.backend == "cuda":
            reason = "the input is not on a CUDA device" if not u.is_cuda else "mamba_ssm is not installed"
            raise RuntimeError(f"Mamba backend 'cuda' needs mamba_ssm and a CUDA device, but {reason}; "
                               "install the extra (pip install 'forecast[cuda]') or set backend: auto / torch")
        return scan

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        x, z = self.in_proj(u).chunk(2, dim=-1)
        x = F.silu(causal_depthwise_conv(x, self.conv1d.weight[:, 0], self.conv1d.bias))  # [b, T, E]
        dt, B, C = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        A = -torch.exp(self.A_log.float())
        scan = self._use_cuda(u)
        if scan is not None:
            delta = (dt @ self.dt_proj.weight.T).transpose(1, 2)  # bias and softplus inside the kernel
            y = scan(x.transpose(1, 2).contiguous(), delta.contiguous(), A, B.transpose(1, 2).contiguous(),
                     C.transpose(1, 2).contiguous(), self.D.float(), z=z.transpose(1, 2).contiguous(),
                     delta_bias=self.dt_proj.bias.float(), delta_softplus=True)
            return self.out_proj(y.transpose(1, 2))
        delta = F.softplus(self.dt_proj(dt))
        y = selective_scan(x, delta, A, B, C, self.D, self.chunk_size)
        return self.out_proj(y * F.silu(z))
