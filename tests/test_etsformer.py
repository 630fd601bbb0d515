"""ETSformer: each block against its defining recursion or formula, what is specific to the
network (augmentation, the rates group and the official schedule); the contract, gradients and
learning are in the model suite (tests/test_models.py)."""

import math

import pytest
import pytorch_lightning as pl
import torch

from forecast.errors import ConfigError
from forecast.layers.embedding import DataEmbedding, sinusoidal_positions
from forecast.layers import exponential_smoothing
from forecast.layers.exponential_smoothing import (
    DampingLayer,
    ExponentialSmoothing,
    FrequencyAttention,
    GrowthLayer,
    LevelLayer,
    causal_convolution,
)
from forecast.models.etsformer import ETSformer
from forecast.module import ForecastModule


def recursion(values: torch.Tensor, alpha: torch.Tensor, v0: torch.Tensor) -> torch.Tensor:
    """s_t = α·s_{t-1} + (1-α)·v_t, s_{-1} = v0; values [B, T, h, d], alpha [h], v0 [h, d]."""
    state = v0.expand(values.shape[0], -1, -1)
    a = alpha[None, :, None]
    out = []
    for t in range(values.shape[1]):
        state = a * state + (1 - a) * values[:, t]
        out.append(state)
    return torch.stack(out, dim=1)


@pytest.mark.parametrize("path", ["toeplitz", "fft"])
@pytest.mark.parametrize("theta", [-3.0, 0.0, 2.5])
@pytest.mark.parametrize("length", [1, 7, 96, 337])
def test_smoothing_equals_the_sequential_recursion(theta, length, path, monkeypatch):
    """Both ways of computing the causal convolution: the Toeplitz product (windows up to
    TOEPLITZ_MAX_LENGTH) and the FFT (longer ones)."""
    monkeypatch.setattr(exponential_smoothing, "TOEPLITZ_MAX_LENGTH", 10_000 if path == "toeplitz" else 0)
    torch.manual_seed(0)
    smoother = ExponentialSmoothing(dim=3, heads=2)
    with torch.no_grad():
        smoother.smoothing.copy_(torch.tensor([[theta], [theta / 2 - 0.5]]))
    values = torch.randn(4, length, 2, 3)
    expected = recursion(values.double(), smoother.alpha.double(), smoother.v0[0, 0].double())
    torch.testing.assert_close(smoother(values).double(), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("limit", [10_000, 0])
def test_causal_convolution_is_linear_not_circular(limit, monkeypatch):
    monkeypatch.setattr(exponential_smoothing, "TOEPLITZ_MAX_LENGTH", limit)
    values = torch.zeros(1, 10, 1)
    values[0, 9, 0] = 1.0  # the last step must not wrap around to the front
    kernel = torch.arange(1.0, 11.0)[:, None]
    out = causal_convolution(values, kernel)
    assert torch.allclose(out[0, :9], torch.zeros(9, 1), atol=1e-6) and out[0, 9, 0] == pytest.approx(1.0)


@pytest.mark.parametrize("kernel_shape", [(9,), (9, 1), (9, 3, 1), (9, 1, 4), (9, 3, 4), (9, 4)])
def test_causal_convolution_broadcasts_the_kernel_like_the_direct_sum(kernel_shape):
    """Every way a kernel [T, ...] can broadcast against values [B, T, 3, 4]: the product's
    batch axes (kernel size > 1) and columns (size 1 or missing), against the direct double sum."""
    torch.manual_seed(2)
    values, kernel = torch.randn(2, 9, 3, 4, dtype=torch.float64), torch.randn(kernel_shape, dtype=torch.float64)
    aligned = kernel.reshape(9, *([1] * (3 - kernel.dim())), *kernel.shape[1:])
    expected = torch.stack([sum(aligned[t - j] * values[:, j] for j in range(t + 1)) for t in range(9)], dim=1)
    torch.testing.assert_close(causal_convolution(values, kernel), expected)


@pytest.mark.parametrize("length", [96, 95])
def test_frequency_attention_reconstructs_k_sinusoids_and_extrapolates_them(length):
    torch.manual_seed(0)
    horizon, features = 48, 3
    tau = torch.arange(length + horizon, dtype=torch.float64)
    truth = torch.zeros(2, length + horizon, features, dtype=torch.float64)
    for b in range(2):
        for f in range(features):
            for cycles in torch.randperm(length // 2 - 1)[:3] + 1:  # three distinct whole-window frequencies
                amp, phase = 0.5 + torch.rand(1).item(), 2 * math.pi * torch.rand(1).item()
                truth[b, :, f] += amp * torch.cos(2 * math.pi * cycles * tau / length + phase)
    out = FrequencyAttention(pred_len=horizon, k=3)(truth[:, :length].float())
    assert out.shape == (2, length + horizon, features)
    torch.testing.assert_close(out[:, :length].double(), truth[:, :length], rtol=0, atol=1e-4)  # inside the window
    torch.testing.assert_close(out[:, length:].double(), truth[:, length:], rtol=0, atol=1e-4)  # beyond it
    fewer = FrequencyAttention(pred_len=horizon, k=1)(truth[:, :length].float())
    assert (fewer - out).abs().max() > 0.1  # k picks how many are kept


def test_frequency_attention_ignores_the_mean_and_k0_gives_no_season():
    z = torch.full((2, 24, 4), 3.0) + torch.cos(2 * math.pi * torch.arange(24.0) / 6)[None, :, None]
    season = FrequencyAttention(pred_len=6, k=2)(z)
    assert season[:, :24].mean().abs() < 1e-5  # the DC bin is never chosen
    assert torch.equal(FrequencyAttention(pred_len=6, k=0)(z), torch.zeros(2, 30, 4))


@pytest.mark.parametrize("length", [24, 25])
def test_frequency_attention_keeps_the_largest_fft_bins(length):
    """The selection and reconstruction by products with fixed bases equal the same computed
    from torch.fft on random input: the k bins of largest |rfft| (no DC, no Nyquist), summed as
    sinusoids over the window and the horizon."""
    torch.manual_seed(4)
    z, k, horizon = torch.randn(3, length, 5, dtype=torch.float64), 2, 6
    spectrum = torch.fft.rfft(z, dim=1)[:, 1 : (length - 1) // 2 + 1]
    top = spectrum.abs().topk(k, dim=1).indices + 1  # [B, k, d], bin numbers
    tau = torch.arange(length + horizon, dtype=torch.float64)
    expected = torch.zeros(3, length + horizon, 5, dtype=torch.float64)
    for b in range(3):
        for f in range(5):
            for n in top[b, :, f]:
                x = torch.fft.rfft(z[b, :, f])[n]
                angle = 2 * math.pi * int(n) * tau / length
                expected[b, :, f] += (2 / length) * (x.real * torch.cos(angle) - x.imag * torch.sin(angle))
    torch.testing.assert_close(FrequencyAttention(pred_len=horizon, k=k)(z), expected)


def test_damping_forecast_is_the_growth_times_the_damped_sum():
    layer = DampingLayer(pred_len=5, n_heads=2, dropout=0.3).eval()
    g = torch.randn(3, 8)
    out = layer(g)
    phi = layer.phi
    for h in range(5):
        factor = sum(phi ** i for i in range(1, h + 2))  # Σ_{i<=h} φ^i at the (h+1)-th step
        torch.testing.assert_close(out[:, h], (g.view(3, 2, 4) * factor[None, :, None]).view(3, 8))


def _level_inputs(layer: LevelLayer, length=12, channels=3, d=8):
    torch.manual_seed(1)
    level, growth, season = torch.randn(2, length, channels), torch.randn(2, length, d), torch.randn(2, length, d)
    with torch.no_grad():
        g_hat, s_hat = layer.growth_projection(growth), layer.season_projection(season)
    return level, growth, season, g_hat, s_hat


def test_level_layer_paper_mode_is_the_papers_recursion():
    layer = LevelLayer(d_model=8, c_out=3, dropout=0.5, growth_conv="paper").eval()
    level, growth, season, g_hat, s_hat = _level_inputs(layer)
    alpha, state = layer.smoother.alpha.detach(), layer.smoother.v0[0, 0, :, 0].detach().expand(2, -1)
    expected = []
    for t in range(level.shape[1]):  # E_t = α·(E_{t-1} + Ĝ_t) + (1-α)·(x_t - Ŝ_t)
        state = alpha * (state + g_hat[:, t]) + (1 - alpha) * (level[:, t] - s_hat[:, t])
        expected.append(state)
    torch.testing.assert_close(layer(level, growth, season), torch.stack(expected, dim=1), rtol=0, atol=1e-5)


def test_level_layer_official_mode_is_the_codes_elementwise_product():
    layer = LevelLayer(d_model=8, c_out=3, dropout=0.5, growth_conv="official").eval()
    level, growth, season, g_hat, s_hat = _level_inputs(layer)
    smoothed = recursion((level - s_hat)[..., None], layer.smoother.alpha, layer.smoother.v0[0, 0])[..., 0]
    length = level.shape[1]
    powers = layer.smoother.alpha[None, :] ** torch.arange(length, 0, -1.0)[:, None]  # α^{T-t}
    torch.testing.assert_close(layer(level, growth, season), smoothed + g_hat * powers, rtol=0, atol=1e-5)
    paper = LevelLayer(8, 3, 0.5, "paper").eval()
    paper.load_state_dict(layer.state_dict())
    assert not torch.allclose(paper(level, growth, season), layer(level, growth, season))


def test_growth_layer_smooths_first_differences_per_head():
    torch.manual_seed(2)
    layer = GrowthLayer(d_model=8, n_heads=2, dropout=0.5).eval()
    z = torch.randn(3, 10, 8)
    with torch.no_grad():
        v = layer.project_in(z).view(3, 10, 2, 4)
        diffs = v - torch.cat([layer.z0.expand(3, 1, -1, -1), v[:, :-1]], dim=1)
        smoothed = recursion(diffs, layer.smoother.alpha, layer.smoother.v0[0, 0])
        start = layer.smoother.v0.expand(3, -1, -1, -1)
        expected = layer.project_out(torch.cat([start, smoothed], dim=1).reshape(3, 11, 8))
    out = layer(z)
    assert out.shape == (3, 11, 8)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)


def test_official_configuration_has_the_published_parameter_count():
    assert sum(p.numel() for p in ETSformer(96, 96, 7).parameters()) == 5_279_839  # reference/models.md §3.7


def test_the_tslib_embedding_adds_calendar_and_position_to_the_circular_value_convolution():
    """embedding=tslib: Conv1d (kernel 3, circular, no bias) of the values + Linear (no bias) of
    the calendar features + the sinusoid sin(t·ω_i), cos(t·ω_i), ω_i = 10000^(-2i/d)."""
    torch.manual_seed(0)
    embed = DataEmbedding(3, 4, 8, dropout=0.0, position=True)
    x, x_mark = torch.randn(2, 10, 3), torch.rand(2, 10, 4)
    conv = torch.nn.functional.conv1d(torch.nn.functional.pad(x.transpose(1, 2), (1, 1), mode="circular"), embed.value.weight)
    t = torch.arange(10.0)[:, None]
    omega = 10000.0 ** (-torch.arange(0, 8, 2) / 8)
    position = torch.stack([torch.sin(t * omega), torch.cos(t * omega)], dim=-1).reshape(10, 8)  # sin, cos interleaved
    expected = conv.transpose(1, 2) + x_mark @ embed.calendar.weight.T + position
    torch.testing.assert_close(embed(x, x_mark), expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(sinusoidal_positions(10, 8), position, rtol=0, atol=1e-6)
    assert sinusoidal_positions(4, 5).shape == (4, 5)  # an odd width keeps its last sine


def test_the_tslib_embedding_reads_the_calendar_and_adds_only_its_parameters():
    official, tslib = ETSformer(96, 96, 7), ETSformer(96, 96, 7, embedding="tslib", mark_dim=4)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(tslib) - count(official) == 4 * 512  # the calendar's linear map; the value convolutions match
    assert not official.uses_time_features and tslib.uses_time_features and not ETSformer.uses_time_features
    model = small(seq_len=24, pred_len=6, enc_in=2, embedding="tslib", mark_dim=4).eval()
    x, mark = torch.randn(2, 24, 2), torch.rand(2, 24, 4)
    assert not torch.allclose(model(x, mark), model(x, mark.flip(1)))


def small(**kw):
    args = dict(d_model=16, n_heads=2, d_ff=32, e_layers=2, k=2, dropout=0.1)
    return ETSformer(**{**args, **kw})


@pytest.mark.parametrize("L,H,C,k,growth_conv", [(96, 96, 7, 1, "paper"), (48, 24, 3, 3, "official"), (25, 7, 1, 0, "paper"), (60, 60, 2, 5, "official")])
def test_output_shape(L, H, C, k, growth_conv):
    model = small(seq_len=L, pred_len=H, enc_in=C, k=k, growth_conv=growth_conv)
    for training in (True, False):
        assert model.train(training)(torch.randn(3, L, C)).shape == (3, H, C)


def test_the_last_layers_unused_feed_forward_block_is_not_computed():
    """The last encoder layer's latent output feeds nothing: its feed-forward block does not run
    (the earlier layers' does), and the forecast is the same whatever its weights."""
    torch.manual_seed(0)
    model = ETSformer(seq_len=24, pred_len=6, enc_in=2, d_model=16, n_heads=2, d_ff=32, e_layers=3, k=2).eval()
    calls = [0] * 3
    for i, layer in enumerate(model.encoder):
        layer.feed_forward.register_forward_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1))
    x = torch.randn(4, 24, 2)
    out = model(x)
    assert calls == [1, 1, 0]
    with torch.no_grad():
        model.encoder[-1].feed_forward.up.weight.mul_(3)
    assert torch.equal(model(x), out)


def test_augmentation_only_in_training():
    model = small(seq_len=32, pred_len=8, enc_in=3, dropout=0.0)
    x = torch.randn(2, 32, 3)
    model.eval()
    torch.manual_seed(0)
    first = model(x)
    torch.manual_seed(1)
    torch.testing.assert_close(model(x), first, rtol=0, atol=0)
    model.train()
    assert not torch.allclose(model(x), model(x))  # noisy inputs
    plain = small(seq_len=32, pred_len=8, enc_in=3, dropout=0.0, augment_std=0.0)
    plain.load_state_dict(model.state_dict())
    torch.testing.assert_close(plain.train()(x), plain.eval()(x))


@pytest.mark.parametrize("kw,message", [
    (dict(growth_conv="both"), r"growth_conv must be 'paper' or 'official', got 'both'\. Fix:"),
    (dict(n_heads=3), r"divisible by n_heads \(3\)\. Fix:"),
    (dict(k=-1), r"k \(frequencies kept\) must be >= 0, got -1\. Fix:"),
    (dict(e_layers=0), r"model.e_layers=0 must be a positive integer\. Fix:"),
    (dict(embedding="calendar"), r"embedding must be one of \('official', 'tslib'\), got 'calendar'\. Fix: model.embedding="),
    (dict(embedding="tslib", mark_dim=0), r"embedding=tslib embeds the calendar features, but mark_dim=0\. Fix:"),
])
def test_bad_hyperparameters_fail_with_the_fix(kw, message):
    with pytest.raises(ConfigError, match=message):
        small(seq_len=16, pred_len=4, enc_in=1, **kw)


def test_rates_group_holds_exactly_the_smoothing_and_damping_rates():
    groups = {g["name"]: g["params"] for g in small(seq_len=16, pred_len=4, enc_in=2).param_groups()}
    model = small(seq_len=16, pred_len=4, enc_in=2)
    names = {n for n, _ in model.named_parameters() if n.endswith(("smoothing", "damping"))}
    assert len(groups["rates"]) == len(names) == 6  # 2 growth + 2 level smoothers, 2 damping layers
    assert len(groups["network"]) + len(groups["rates"]) == len(list(model.parameters()))


def test_first_epoch_of_the_official_schedule_moves_only_the_rates(make_config):
    from forecast.pipelines.train import build_data, build_module

    cfg = make_config("model=etsformer", "model.d_model=16", "model.n_heads=2", "model.d_ff=16",
                      "data.pred_len=24", "trainer=debug", "logger=none")
    assert cfg.module.scheduler._target_ == "forecast.schedulers.etsformer_warmup"
    datamodule = build_data(cfg)
    module = build_module(cfg, datamodule)
    before = {n: p.detach().clone() for n, p in module.network.named_parameters()}
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, gradient_clip_val=1.0)
    trainer.fit(module, datamodule=datamodule)
    moved = {n for n, p in module.network.named_parameters() if not torch.equal(p, before[n])}
    rates = {n for n, _ in module.network.named_parameters() if n.endswith(("smoothing", "damping"))}
    assert moved == rates
    groups = {g["name"]: g["lr"] for g in trainer.optimizers[0].param_groups}
    assert groups == {"network": pytest.approx(1e-4 / 4), "rates": pytest.approx(1e-4 / 4)}  # epoch 2: warm-up


def test_module_builds_the_optimizer_on_the_networks_groups():
    module = ForecastModule(small(seq_len=16, pred_len=4, enc_in=2))
    assert [g["name"] for g in module.configure_optimizers().param_groups] == ["network", "rates"]
