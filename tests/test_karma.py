"""KARMA: the selective scan and Mamba block, the db4 wavelet, ATCD, what is specific to the
network (variants, calendar tokens, its loss and recorded variant); the contract, gradients and
learning are in the model suite (tests/test_models.py)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from forecast.errors import ConfigError
from forecast.layers.mamba import Mamba, causal_depthwise_conv, selective_scan, sequential_scan
from forecast.layers.wavelet import coefficients_length, dwt, idwt
from forecast.losses import TimeFrequencyLoss
from forecast.models.karma import ATCD, KARMA
from forecast.module import ForecastModule


def scan_inputs(b, T, E, N, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, T, E, generator=g, dtype=dtype), F.softplus(torch.randn(b, T, E, generator=g, dtype=dtype) - 1),
            -torch.rand(E, N, generator=g, dtype=dtype) * 4, torch.randn(b, T, N, generator=g, dtype=dtype),
            torch.randn(b, T, N, generator=g, dtype=dtype), torch.randn(E, generator=g, dtype=dtype))


@pytest.mark.parametrize("b,T,E,N,chunk", [(2, 11, 8, 2, 4), (3, 37, 6, 4, 8), (2, 96, 16, 16, 4), (1, 5, 3, 1, 16), (4, 1, 5, 3, 4)])
def test_selective_scan_equals_the_sequential_recurrence(b, T, E, N, chunk):
    """Forward and gradients of every input, float32 scan against the float64 loop, to 1e-5
    relative to each gradient's largest entry (A's gradient sums b·T terms of up to ~10³, so
    float32 rounding alone is ~10⁻⁶ of it: 200 weight draws measured at most 1.1e-6); lengths
    that are and are not multiples of the chunk."""
    inputs = [t.requires_grad_() for t in scan_inputs(b, T, E, N)]
    reference = [t.detach().double().requires_grad_() for t in inputs]
    y = selective_scan(*inputs, chunk_size=chunk)
    y_ref = sequential_scan(*reference)
    torch.testing.assert_close(y.double(), y_ref, atol=1e-5, rtol=1e-5)
    weights = torch.randn(y.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    grads = torch.autograd.grad((y.double() * weights).sum(), inputs)
    grads_ref = torch.autograd.grad((y_ref * weights).sum(), reference)
    for name, got, want in zip("x delta A B C D".split(), grads, grads_ref):
        scale = max(1.0, want.abs().max().item())
        torch.testing.assert_close(got.double(), want, atol=1e-5 * scale, rtol=1e-5, msg=f"gradient of {name}")


@pytest.mark.parametrize("T,K", [(11, 4), (3, 4), (1, 2), (20, 1)])
def test_causal_depthwise_conv_is_mamba_ssms_conv1d(T, K):
    """The shifted multiply-adds equal the causal depthwise ``Conv1d`` (padding K - 1, cut to T) on
    ``[B, T, E]``, forward and every gradient, sequences shorter than the kernel included."""
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(6, 6, K, groups=6, padding=K - 1).double()
    x = torch.randn(3, T, 6, dtype=torch.float64, requires_grad=True)
    want = conv(x.transpose(1, 2))[..., :T].transpose(1, 2)
    got = causal_depthwise_conv(x, conv.weight[:, 0], conv.bias)
    torch.testing.assert_close(got, want)
    weights = torch.randn_like(want)
    inputs = (x, conv.weight, conv.bias)
    for g_got, g_want, name in zip(torch.autograd.grad((got * weights).sum(), inputs),
                                   torch.autograd.grad((want * weights).sum(), inputs), ("x", "weight", "bias")):
        torch.testing.assert_close(g_got, g_want, msg=f"gradient of {name}")


def test_mamba_has_mamba_ssm_parameters_and_initialisation():
    torch.manual_seed(0)
    block = Mamba(64, d_state=16, d_conv=4, expand=2)
    shapes = {k: tuple(v.shape) for k, v in block.state_dict().items()}
    assert shapes == {"in_proj.weight": (256, 64), "conv1d.weight": (128, 1, 4), "conv1d.bias": (128,),
                      "x_proj.weight": (4 + 32, 128), "dt_proj.weight": (128, 4), "dt_proj.bias": (128,),
                      "A_log": (128, 16), "D": (128,), "out_proj.weight": (64, 128)}
    torch.testing.assert_close(block.A_log.exp(), torch.arange(1, 17.0).expand(128, 16))
    dt = F.softplus(block.dt_proj.bias)
    assert dt.min() >= 1e-3 * 0.999 and dt.max() <= 0.1 * 1.001 and dt.max() / dt.min() > 10  # log-uniform in [1e-3, 0.1]
    assert block.dt_proj.weight.abs().max() <= 4**-0.5


def test_mamba_is_causal_over_its_sequence():
    block = Mamba(16, d_state=4)
    x = torch.randn(2, 10, 16)
    y = x.clone()
    y[:, 6:] = torch.randn(2, 4, 16)
    torch.testing.assert_close(block(x)[:, :6], block(y)[:, :6])
    assert not torch.allclose(block(x)[:, 6:], block(y)[:, 6:])


def test_backends_on_cpu_auto_runs_the_torch_scan_and_cuda_fails_clearly():
    torch.manual_seed(1)
    auto = Mamba(16, d_state=4)
    torch_backend = Mamba(16, d_state=4, backend="torch")
    torch_backend.load_state_dict(auto.state_dict())  # one state dict for every backend
    x = torch.randn(2, 7, 16)
    torch.testing.assert_close(auto(x), torch_backend(x), rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="backend 'cuda' needs mamba_ssm and a CUDA device"):
        Mamba(16, backend="cuda")(x)
    with pytest.raises(ValueError, match="backend must be one of"):
        Mamba(16, backend="triton")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_kernel_and_torch_scan_agree_on_the_same_weights():
    pytest.importorskip("mamba_ssm")
    torch.manual_seed(2)
    cuda = Mamba(64, d_state=16, backend="cuda").cuda()
    plain = Mamba(64, d_state=16, backend="torch").cuda()
    plain.load_state_dict(cuda.state_dict())
    x = torch.randn(4, 50, 64, device="cuda", requires_grad=True)
    y_cuda, y_torch = cuda(x), plain(x)
    torch.testing.assert_close(y_cuda, y_torch, atol=1e-4, rtol=1e-3)
    g_cuda = torch.autograd.grad(y_cuda.square().sum(), cuda.A_log)[0]
    g_torch = torch.autograd.grad(y_torch.square().sum(), plain.A_log)[0]
    torch.testing.assert_close(g_cuda, g_torch, atol=1e-3, rtol=1e-2)


@pytest.mark.parametrize("n", [8, 17, 96, 131, 256])
def test_dwt_then_inverse_reproduces_the_input(n):
    x = torch.randn(3, 2, n, dtype=torch.float64)
    low, high = dwt(x)
    assert low.shape[-1] == high.shape[-1] == coefficients_length(n) == (n + 7) // 2
    torch.testing.assert_close(idwt(low, high, length=n), x, atol=1e-10, rtol=0)
    low32, high32 = dwt(x.float())
    torch.testing.assert_close(idwt(low32, high32, length=n), x.float(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("n", [16, 17, 256])
def test_dwt_matches_pywavelets_db4_symmetric(n):
    pywt = pytest.importorskip("pywt")
    x = np.random.default_rng(n).standard_normal((2, n))
    low, high = pywt.dwt(x, "db4", mode="symmetric")
    ours_low, ours_high = dwt(torch.from_numpy(x))
    np.testing.assert_allclose(ours_low.numpy(), low, atol=1e-12)
    np.testing.assert_allclose(ours_high.numpy(), high, atol=1e-12)
    np.testing.assert_allclose(idwt(ours_low, ours_high).numpy(), pywt.idwt(low, high, "db4", mode="symmetric"), atol=1e-12)


def test_atcd_trend_plus_seasonal_is_the_projected_input():
    atcd = ATCD(7, width=16, heads=4)
    x = torch.randn(3, 24, 7)
    projected, seasonal, trend = atcd.split(x)
    torch.testing.assert_close(seasonal + trend, projected, rtol=0, atol=1e-6)
    torch.testing.assert_close(projected, atcd.project(x))
    assert not torch.allclose(trend, torch.zeros_like(trend))
    s, t = atcd(x)
    assert s.shape == t.shape == x.shape


def test_official_configuration_has_the_executed_parameter_count():
    """reference/models.md §5.7: 2,160,430 (H 96, d 256) and 8,539,294 (H 336, d 512) on the
    path the official model executes."""
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(KARMA(96, 96, 7, d_model=256)) == 2_160_430
    assert count(KARMA(96, 336, 7, d_model=512)) == 8_539_294


def small(**kw):
    return KARMA(**{**dict(seq_len=24, pred_len=12, enc_in=3, mark_dim=4, d_model=16, e_layers=2, d_state=4), **kw})


@pytest.mark.parametrize("kw", [dict(), dict(calendar_tokens=False), dict(decomposition="moving_average", tie_directions=True),
                                dict(decomposition="atcd", atcd_dim=8, atcd_heads=2), dict(revin=False, e_layers=1)])
def test_output_shape(kw):
    model = small(**kw)
    x, marks = torch.randn(5, 24, 3), torch.rand(5, 24, 4) - 0.5
    for training in (True, False):
        assert model.train(training)(x, marks).shape == (5, 12, 3)


def test_calendar_tokens_are_used_only_when_asked():
    x, marks = torch.randn(2, 24, 3), torch.rand(2, 24, 4) - 0.5
    with_tokens, without = small().eval(), small(calendar_tokens=False).eval()
    without.load_state_dict(with_tokens.state_dict())
    assert not torch.allclose(with_tokens(x, marks), with_tokens(x, marks + 0.1))
    torch.testing.assert_close(without(x, marks), without(x, marks + 0.1))
    with pytest.raises(ValueError, match="needs the calendar features"):
        with_tokens(x)


def test_tied_directions_share_one_mamba():
    tied, untied = small(tie_directions=True), small()
    assert tied.encoder.blocks[0].backward_scan is tied.encoder.blocks[0].forward_scan
    assert sum(p.numel() for p in untied.parameters()) - sum(p.numel() for p in tied.parameters()) == \
        2 * sum(p.numel() for p in untied.encoder.blocks[0].backward_scan.parameters())


@pytest.mark.parametrize("decomposition", ["moving_average", "atcd"])
def test_decomposition_variants_get_gradients_everywhere_and_the_seed_fixes_their_output(decomposition):
    def build():
        torch.manual_seed(3)
        return small(decomposition=decomposition, atcd_dim=8, atcd_heads=2)

    model = build()
    x, marks = torch.randn(4, 24, 3), torch.rand(4, 24, 4) - 0.5
    torch.manual_seed(5)
    out = model(x, marks)
    out.square().mean().backward()
    assert [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().max() == 0] == []
    again = build()
    torch.manual_seed(5)
    torch.testing.assert_close(again(x, marks), out, rtol=0, atol=0)


@pytest.mark.parametrize("kw,message", [
    (dict(decomposition="stl"), r"decomposition must be one of .*got 'stl'\. Fix:"),
    (dict(d_model=6), r"d_model must be >= 8 .*got 6\. Fix:"),
    (dict(decomposition="atcd", atcd_dim=10, atcd_heads=4), r"divisible by atcd_heads \(4\)\. Fix:"),
    (dict(backend="triton"), r"model.backend='triton' is not one of .*Fix:"),
])
def test_bad_hyperparameters_fail_with_the_fix(kw, message):
    with pytest.raises(ConfigError, match=message):
        small(**kw)


def test_time_frequency_loss_is_the_official_combination():
    pred, target = torch.randn(4, 24, 3), torch.randn(4, 24, 3)
    diff = pred.numpy() - target.numpy()
    expected = 0.2 * np.mean(diff**2) + 0.8 * np.mean(np.abs(np.fft.rfft(pred.numpy(), axis=1) - np.fft.rfft(target.numpy(), axis=1)))
    assert TimeFrequencyLoss(0.8)(pred, target).item() == pytest.approx(expected, rel=1e-5)
    assert TimeFrequencyLoss(0.0)(pred, target).item() == pytest.approx(np.mean(diff**2), rel=1e-6)
    with pytest.raises(ValueError, match="frequency_weight must be in"):
        TimeFrequencyLoss(1.5)


def test_module_validates_on_the_eval_loss():
    module = ForecastModule(small(), loss=TimeFrequencyLoss(0.8), eval_loss=torch.nn.MSELoss())
    batch = {"x": torch.randn(4, 24, 3), "x_mark": torch.rand(4, 24, 4), "y_mark": torch.rand(4, 12, 4), "y": torch.randn(4, 12, 3)}
    module.eval()
    with torch.no_grad():
        train_loss = module._step(batch, "train")
        module._step(batch, "val")
        pred = module(batch["x"], batch["x_mark"], batch["y_mark"])
    assert module.losses["val_loss"].compute().item() == pytest.approx((pred - batch["y"]).square().mean().item(), rel=1e-6)
    assert train_loss.item() == pytest.approx(TimeFrequencyLoss(0.8)(pred, batch["y"]).item(), rel=1e-6)


def test_a_recorded_run_is_a_variant_and_validates_on_mse(make_config, tmp_path):
    """A run with settings other than the official ones is recorded as a variant (summarised apart
    from the paper setting), and the reported test loss is the MSE the official code validates on."""
    from forecast.pipelines.train import run

    record = tmp_path / "bench" / "accuracy.csv"
    cfg = make_config("model=karma", "model.d_model=16", "model.d_state=2", "data.pred_len=24", "trainer.max_epochs=1",
                      "logger=none", f"record={record}")
    metrics = run(cfg)
    assert record.read_text().splitlines()[1].startswith('"karma[d_model=16,d_state=2,trainer.max_epochs=1]",etth1,M,96,24,')
    assert "test/loss" not in metrics  # it would repeat test/mse: the validation and test criterion is the MSE
