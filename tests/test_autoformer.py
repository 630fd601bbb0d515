"""Autoformer: Auto-Correlation against direct computations and what is specific to the network
(label_len, the horizon calendar, bf16); the contract, gradients and learning are in the model
suite (tests/test_models.py)."""

import math

import pytest
import torch

from forecast.errors import ConfigError
from forecast.layers.autocorrelation import AutoCorrelation, AutoCorrelationLayer, mean_correlation, time_delay_aggregation
from forecast.layers.convolution import circular_conv1d
from forecast.layers.dropout import Dropout, random_int16
from forecast.models.autoformer import Autoformer


def direct_correlation(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """R̄(τ) = mean_d Σ_t q[t, d]·k[(t - τ) mod L, d], keys zero-padded or cut to L, by loops."""
    batch, length, _ = q.shape
    keys = torch.zeros_like(q)
    keys[:, : min(length, k.shape[1])] = k[:, :length]
    out = torch.zeros(batch, length, dtype=q.dtype)
    for tau in range(length):
        for t in range(length):
            out[:, tau] += (q[:, t] * keys[:, (t - tau) % length]).mean(dim=-1)
    return out


@pytest.mark.parametrize("length,source", [(16, 16), (15, 15), (21, 9), (12, 20)])
def test_mean_correlation_equals_the_direct_circular_correlation_and_its_gradients(length, source):
    torch.manual_seed(0)
    q, k = torch.randn(3, length, 5, requires_grad=True), torch.randn(3, source, 5, requires_grad=True)
    corr = mean_correlation(q, k)
    want = direct_correlation(q, k)
    assert corr.shape == (3, length)  # odd lengths keep every delay
    torch.testing.assert_close(corr, want, rtol=1e-4, atol=1e-4)
    weights = torch.randn(3, length)
    for got, expected, name in zip(torch.autograd.grad((corr * weights).sum(), (q, k)),
                                   torch.autograd.grad((want * weights).sum(), (q, k)), ("queries", "keys")):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4, msg=f"gradient of the {name}")


@pytest.mark.parametrize("period,length", [(12, 96), (7, 98), (24, 168)])
def test_a_periodic_input_selects_its_period_or_multiples(period, length):
    torch.manual_seed(0)
    t = torch.arange(length, dtype=torch.float32)
    phase = torch.rand(4, 1, 3) * 2 * math.pi
    x = torch.sin(2 * math.pi * t[None, :, None] / period + phase) + 0.1 * torch.randn(4, length, 3)
    layer = AutoCorrelation(factor=1)  # k = ⌊ln L⌋ = 4 or 5 delays
    for training in (True, False):
        layer.train(training)
        delays, _ = layer.select_delays(mean_correlation(x, x))
        assert delays.numel() >= 4 and all(d % period == 0 for d in delays.flatten().tolist()), delays


def test_training_shares_the_delays_across_the_batch_and_evaluation_does_not():
    torch.manual_seed(0)
    t = torch.arange(60, dtype=torch.float32)
    x = torch.stack([torch.sin(2 * math.pi * t / 10), torch.sin(2 * math.pi * t / 15)])[..., None]  # periods 10 and 15
    layer = AutoCorrelation(factor=1)
    corr = mean_correlation(x, x)
    layer.train()
    delays, weights = layer.select_delays(corr)
    assert delays.dim() == 1 and weights.shape == (2, len(delays))
    torch.testing.assert_close(weights, torch.softmax(corr[:, delays], dim=-1))
    layer.eval()
    delays, weights = layer.select_delays(corr)
    assert delays.shape == (2, layer.top_k(60))
    assert all(d % 10 == 0 for d in delays[0].tolist()) and sorted(delays[1].tolist()) == [0, 15, 30, 45]
    torch.testing.assert_close(weights.sum(dim=-1), torch.ones(2))


@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("source", [10, 6])
def test_time_delay_aggregation_equals_a_sum_of_rolls(shared, source):
    torch.manual_seed(0)
    length, k = 10, 3
    values = torch.randn(2, source, 4)
    delays = torch.tensor([0, 3, 9]) if shared else torch.tensor([[1, 4, 7], [2, 5, 9]])
    weights = torch.softmax(torch.randn(2, k), dim=-1)
    padded = torch.cat([values, torch.zeros(2, length - source, 4)], dim=1)
    expected = torch.zeros(2, length, 4)
    for b in range(2):
        for i in range(k):
            tau = int(delays[i] if shared else delays[b, i])
            expected[b] += weights[b, i] * torch.roll(padded[b], -tau, dims=0)  # element t+τ moves to t
    torch.testing.assert_close(time_delay_aggregation(values, delays, weights, length), expected)


def test_layer_equals_the_multi_head_reference_formulation():
    """Per-head correlations averaged over heads and head dims, delays chosen per sample,
    rolls summed: the same numbers as the whole-width layer (heads average out)."""
    torch.manual_seed(0)
    batch, length, source, d, heads = 2, 24, 12, 16, 4
    layer = AutoCorrelationLayer(d, heads, factor=2).eval()
    queries, memory = torch.randn(batch, length, d), torch.randn(batch, source, d)
    q = layer.query(queries).view(batch, length, heads, d // heads)
    k = layer.key(memory).view(batch, source, heads, d // heads)
    v = layer.value(memory)
    k = torch.cat([k, torch.zeros(batch, length - source, heads, d // heads)], dim=1)
    v = torch.cat([v, torch.zeros(batch, length - source, d)], dim=1)
    spectrum = torch.fft.rfft(q.permute(0, 2, 3, 1), dim=-1) * torch.fft.rfft(k.permute(0, 2, 3, 1), dim=-1).conj()
    corr = torch.fft.irfft(spectrum, n=length, dim=-1).mean(dim=(1, 2))  # [B, L]
    top = int(2 * math.log(length))
    weights, delays = corr.topk(top, dim=-1)
    weights = torch.softmax(weights, dim=-1)
    agg = torch.stack([sum(weights[b, i] * torch.roll(v[b], -int(delays[b, i]), dims=0) for i in range(top)) for b in range(batch)])
    torch.testing.assert_close(layer(queries, memory, memory), layer.out(agg), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("length,source,shared", [(24, 24, True), (24, 12, False), (16, 20, False)])
@pytest.mark.parametrize("training", [True, False])
def test_layer_with_folded_projections_equals_the_explicit_one_with_gradients(length, source, shared, training):
    """The layer correlates the queries' projection folded with the key weights against the raw
    keys, and aggregates the raw values before one map folded from the value and output weights;
    the output and every gradient (inputs, all four maps' weights and biases) are those of
    projecting Q, K and V, correlating Q with K, aggregating V and mapping the result."""
    torch.manual_seed(1)
    d = 8
    layer = AutoCorrelationLayer(d, 2, factor=2).train(training)
    queries = torch.randn(3, length, d, requires_grad=True)
    memory = queries if shared else torch.randn(3, source, d, requires_grad=True)
    explicit = layer.out(layer.correlation(layer.query(queries), layer.key(memory), layer.value(memory)))
    fused = layer(queries, memory, memory)
    torch.testing.assert_close(fused, explicit, rtol=1e-5, atol=1e-5)
    weights = torch.randn_like(fused)
    inputs = [queries] + ([] if shared else [memory]) + list(layer.parameters())
    for got, want, name in zip(torch.autograd.grad((fused * weights).sum(), inputs),
                               torch.autograd.grad((explicit * weights).sum(), inputs),
                               ["queries"] + ([] if shared else ["memory"]) + [n for n, _ in layer.named_parameters()]):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5, msg=f"gradient of {name}")


@pytest.mark.parametrize("c_in,c_out,taps", [(3, 16, 3), (16, 3, 3), (4, 4, 5), (12, 2, 1)])
def test_circular_conv1d_equals_the_circular_convolution_with_gradients(c_in, c_out, taps):
    """Both forms (rolled inputs side by side when widening, rolled per-tap outputs when
    narrowing) against ``nn.Conv1d`` with circular padding, forward and backward."""
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(c_in, c_out, taps, padding=(taps - 1) // 2, padding_mode="circular", bias=False)
    x = torch.randn(2, 11, c_in, requires_grad=True)
    got, want = circular_conv1d(x, conv.weight), conv(x.transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(got, want)
    g = torch.randn_like(want)
    for a, b in zip(torch.autograd.grad((got * g).sum(), (x, conv.weight)), torch.autograd.grad((want * g).sum(), (x, conv.weight))):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="odd kernel size"):
        circular_conv1d(x, torch.randn(c_out, c_in, 2))


def test_official_configuration_has_the_published_parameter_count():
    assert sum(p.numel() for p in Autoformer(96, 96, 7).parameters()) == 10_535_943  # reference/models.md §2.7


def small(**kw):
    args = dict(d_model=16, n_heads=2, d_ff=32, e_layers=2, d_layers=1, moving_avg=5, factor=2, dropout=0.1)
    return Autoformer(**{**args, **kw})


@pytest.mark.parametrize("L,label_len,H,C,M", [(96, 48, 96, 7, 4), (36, 18, 24, 3, 5), (25, 0, 7, 1, 4), (16, 16, 33, 2, 0)])
def test_output_shape(L, label_len, H, C, M):
    model = small(seq_len=L, pred_len=H, enc_in=C, mark_dim=M, label_len=label_len)
    x, x_mark, y_mark = torch.randn(3, L, C), torch.rand(3, L, M), torch.rand(3, H, M)
    for training in (True, False):
        assert model.train(training)(x, x_mark, y_mark).shape == (3, H, C)


def test_the_decoder_uses_the_horizon_calendar():
    model = small(seq_len=32, pred_len=8, enc_in=2).eval()
    x, x_mark, y_mark = torch.randn(1, 32, 2), torch.rand(1, 32, 4), torch.rand(1, 8, 4)
    out = model(x, x_mark, y_mark)
    assert not torch.allclose(model(x, x_mark, torch.rand(1, 8, 4)), out)  # the horizon's calendar is used


def test_bf16_autocast_runs_and_stays_close_to_float32():
    torch.manual_seed(0)
    model = small(seq_len=48, pred_len=12, enc_in=3).eval()
    x, x_mark, y_mark = torch.randn(4, 48, 3), torch.rand(4, 48, 4), torch.rand(4, 12, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = model(x, x_mark, y_mark)
    high = model(x, x_mark, y_mark)
    assert (low.float() - high).abs().max() < 0.05 * high.abs().max()


@pytest.mark.parametrize("kw,message", [
    (dict(label_len=20), r"label_len must be between 0 and seq_len \(16\), got 20\. Fix: set model.label_len"),
    (dict(n_heads=3), r"divisible by n_heads \(3\)\. Fix:"),
    (dict(activation="tanh"), r"model.activation='tanh' is not one of .*Fix:"),
    (dict(moving_avg=0), r"model.moving_avg=0 must be a positive integer\. Fix:"),
])
def test_bad_hyperparameters_fail_with_the_fix(kw, message):
    with pytest.raises(ConfigError, match=message):
        small(seq_len=16, pred_len=4, enc_in=1, **kw)


def test_cpu_dropout_drops_at_rate_p_and_keeps_the_expectation():
    torch.manual_seed(0)
    layer = Dropout(0.05)
    x = torch.ones(200_000, requires_grad=True)
    out = layer(x)
    dropped = (out == 0).float().mean().item()
    assert abs(dropped - 0.05) < 0.003
    assert out.mean().item() == pytest.approx(1.0, abs=0.01)
    out.sum().backward()
    torch.testing.assert_close(x.grad, (out != 0).float() / 0.95)
    assert torch.equal(layer.eval()(x), x)


def test_random_int16_is_uniform_in_every_lane_of_the_64_bit_draws():
    """Each 64-bit draw fills four int16 lanes: every lane must cover the whole int16 range evenly
    (a draw without the sign bit would leave the top lane non-negative), and odd sizes keep
    their shape."""
    torch.manual_seed(0)
    values = random_int16(torch.Size([4 * 100_000])).view(-1, 4).int()
    for lane in range(4):
        column = values[:, lane]
        assert column.min() < -32000 and column.max() > 32000, lane
        assert abs(column.float().mean().item()) < 300, lane  # the mean's standard error is 59
        assert abs((column < 0).float().mean().item() - 0.5) < 0.01, lane
    assert random_int16(torch.Size([3, 5, 7])).shape == (3, 5, 7)


def test_random_int16_repeats_under_torch_seed_and_differs_between_draws():
    """The words come from a generator seeded by torch's: a seeded run draws the same masks again,
    and two draws of one run differ."""
    torch.manual_seed(7)
    first, second = random_int16(torch.Size([1000])), random_int16(torch.Size([1000]))
    torch.manual_seed(7)
    assert torch.equal(random_int16(torch.Size([1000])), first)
    assert (first != second).float().mean() > 0.99


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cpu_dropout_keeps_the_dtype_and_scales_kept_values_exactly(dtype):
    """A kept value is ``x * (1 / (1 - p))`` rounded once in the input's dtype (bf16 under
    autocast as well as fp32), and a dropped one is 0."""
    torch.manual_seed(3)
    x = torch.randn(50_000).to(dtype)
    out = Dropout(0.05).train()(x)
    assert out.dtype == dtype
    kept = out != 0
    assert 0.94 < kept.float().mean().item() < 0.96
    torch.testing.assert_close(out[kept], x[kept] * (1.0 / 0.95), rtol=0, atol=0)
