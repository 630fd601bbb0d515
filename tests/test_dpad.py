"""D-PAD: RevIN, the morphological decomposition (MCD) and what is specific to the network (tree
levels, the GCN fusion, paper_compat); the contract, channel independence, gradients and learning
are in the model suite (tests/test_models.py)."""

import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from forecast.errors import ConfigError
from forecast.layers.morphology import MorphologicalDecomposition, sift_step
from forecast.layers.normalization import RevIN
from forecast.models.dpad import DPAD, GroupBatchNorm

T = 336
t = torch.arange(T, dtype=torch.float64)
TREND = 2 * t / T - 1


def sine(period):
    return torch.sin(2 * math.pi * t / period)


def centroid(series):
    """Power-weighted mean frequency bin of each series (mean removed)."""
    power = torch.fft.rfft(series - series.mean(-1, keepdim=True), dim=-1).abs().square()
    return (power * torch.arange(power.shape[-1], dtype=power.dtype)).sum(-1) / power.sum(-1)


def test_revin_round_trip_and_statistics():
    revin = RevIN(3)
    with torch.no_grad():
        revin.weight.copy_(torch.tensor([0.5, 2.0, -1.5]))
        revin.bias.copy_(torch.tensor([0.1, -3.0, 2.0]))
    x = torch.randn(4, 50, 3) * torch.tensor([1.0, 10.0, 0.1]) + torch.tensor([5.0, -2.0, 100.0])
    normed, stats = revin.normalize(x)
    torch.testing.assert_close(normed.mean(1), revin.bias.detach().expand(4, 3), atol=1e-4, rtol=0)
    torch.testing.assert_close(normed.std(1, unbiased=False), revin.weight.detach().abs().expand(4, 3), atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(revin.denormalize(normed, stats), x, atol=1e-3, rtol=1e-5)


def test_sift_step_matches_a_direct_computation_and_its_backward_passes_gradcheck():
    torch.manual_seed(0)
    for k in (3, 5, 9):
        x = torch.randn(2, 3, 20, dtype=torch.float64, requires_grad=True)
        window = F.pad(x, (k // 2, k // 2)).unfold(-1, k, 1)
        torch.testing.assert_close(sift_step(x, k), x - (window.amax(-1) + window.amin(-1)) / 2)
        assert torch.autograd.gradcheck(lambda v: sift_step(v, k), (x,))


@pytest.mark.parametrize("multiscale", [False, True])
def test_components_sum_back_to_the_input(multiscale):
    x = torch.randn(5, 3, 96).cumsum(-1)
    parts = MorphologicalDecomposition(6, multiscale=multiscale)(x)
    assert parts.shape == (5, 3, 6, 96)
    torch.testing.assert_close(parts.sum(-2), x, atol=1e-5, rtol=0)


def test_residual_of_a_trend_plus_a_fast_sinusoid_is_the_trend():
    """The official element (3 points) resolves periods up to 3: the residual is the trend
    away from the zero-padded ends."""
    residual = MorphologicalDecomposition(6)((TREND + sine(3))[None])[0, -1]
    assert (residual - TREND)[20:-20].abs().max() < 0.05


def test_fixed_element_passes_a_slow_sinusoid_to_the_residual_and_multiscale_separates_it():
    x = (TREND + sine(24))[None]
    fixed = MorphologicalDecomposition(6)(x)[0, -1]
    assert (fixed - TREND)[20:-20].square().mean().sqrt() > 0.6  # the sinusoid (RMS 0.71) is still there
    multiscale = MorphologicalDecomposition(6, multiscale=True)(x)[0, -1]
    assert (multiscale - TREND)[40:-40].square().mean().sqrt() < 0.1


def test_multiscale_components_go_from_high_to_low_frequency():
    x = (sine(4) + sine(24) + sine(168))[None]
    centroids = centroid(MorphologicalDecomposition(6, multiscale=True)(x)[0])
    assert torch.all(centroids[:-1] > centroids[1:]), centroids
    fixed = centroid(MorphologicalDecomposition(6)(x)[0])
    assert fixed[-1] < fixed[:-1].min() / 3  # with the official element only the residual is low-frequency


def test_sifting_is_per_series_not_per_batch():
    torch.manual_seed(1)
    series = torch.randn(1, 2, 96).cumsum(-1)
    others = torch.cat([torch.randn(3, 2, 96) * 50, torch.zeros(1, 2, 96), torch.linspace(0, 1, 96).expand(2, 2, 96)])
    mcd = MorphologicalDecomposition(6)
    alone = mcd(series)
    steps_alone = mcd.last_iterations
    together = mcd(torch.cat([series, others]))
    torch.testing.assert_close(together[:1], alone, rtol=0, atol=0)
    assert torch.equal(mcd.last_iterations[:1], steps_alone)


def test_iteration_cap_bounds_the_cost_on_white_noise():
    torch.manual_seed(2)
    noise = torch.randn(64, 336)
    capped = MorphologicalDecomposition(3, threshold=1e-9, max_iterations=10)
    capped(noise)
    assert capped.last_iterations.max() == 10
    uncapped = MorphologicalDecomposition(3, threshold=1e-9, max_iterations=1000)
    uncapped(noise)
    assert uncapped.last_iterations.float().mean() > 100  # what the cap saves


def test_an_all_zero_series_stops_after_one_step():
    mcd = MorphologicalDecomposition(4)
    parts = mcd(torch.zeros(2, 30))
    assert torch.equal(parts, torch.zeros(2, 4, 30)) and torch.equal(mcd.last_iterations, torch.ones(2, 3, dtype=torch.int32))


def test_group_batch_norm_equals_one_batch_norm_per_group_and_channel():
    """Group-major [G, B, N, R] input, statistics per (group, channel) over batch and R: the
    same outputs and running statistics as nn.BatchNorm1d(G·N) on the [B, G·N, R] layout."""
    torch.manual_seed(4)
    ours, reference = GroupBatchNorm(2, 3), torch.nn.BatchNorm1d(6, affine=False)
    for _ in range(3):
        x = torch.randn(2, 8, 3, 5) * 3 + 1
        as_reference = x.permute(1, 0, 2, 3).reshape(8, 6, 5)
        torch.testing.assert_close(ours(x).permute(1, 0, 2, 3).reshape(8, 6, 5), reference(as_reference))
    torch.testing.assert_close(ours.running_mean, reference.running_mean)
    torch.testing.assert_close(ours.running_var, reference.running_var)
    ours.eval(), reference.eval()
    torch.testing.assert_close(ours(x).permute(1, 0, 2, 3).reshape(8, 6, 5), reference(as_reference))


def test_official_configuration_has_the_published_parameter_count():
    """reference/models.md §4.7: 3,224,866 (SE) and 3,790,852 (GCN) at H = 96. The official
    count includes 18 frozen zeros (the flat structuring elements of its 3 MCD blocks) and,
    for GCN, two Linear(336, 336) layers that its forward pass never uses (2 · 113,232)."""
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(DPAD(336, 96, 7)) == 3_224_866 - 18
    assert count(DPAD(336, 96, 7, fusion="gcn")) == 3_790_852 - 18 - 2 * 113_232


def small(**kw):
    return DPAD(**{**dict(seq_len=48, pred_len=12, enc_in=3, k=3, hidden=16, dec_hidden=8, dropout=0.1), **kw})


@pytest.mark.parametrize("levels,fusion,revin,multiscale", [(1, "se", True, False), (2, "gcn", False, True), (3, "se", True, True)])
def test_output_shape_and_component_count(levels, fusion, revin, multiscale):
    model = small(levels=levels, fusion=fusion, revin=revin, multiscale=multiscale)
    x = torch.randn(4, 48, 3)
    for training in (True, False):
        assert model.train(training)(x).shape == (4, 12, 3)
    assert model.components(x).shape == (2 ** (levels - 1) * 3, 4, 3, 48)
    assert len(model.sift_iterations) == levels


def test_the_gcn_fusion_gets_gradients_everywhere_and_the_seed_fixes_its_output():
    def build():
        torch.manual_seed(3)
        return small(fusion="gcn")

    model = build()
    x = torch.randn(8, 48, 3)
    torch.manual_seed(5)
    out = model(x)
    out.abs().mean().backward()
    assert [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().max() == 0] == []
    again = build()
    torch.manual_seed(5)
    torch.testing.assert_close(again(x), out, rtol=0, atol=0)  # dropout included


@pytest.mark.parametrize("kw,message", [
    (dict(fusion="gat"), r"fusion must be 'se' or 'gcn', got 'gat'\. Fix:"),
    (dict(levels=0), r"levels must be >= 1, got 0\. Fix:"),
    (dict(k=1), r"k \(components per decomposition\) must be >= 2, got 1\. Fix:"),
    (dict(sift_max_iterations=0), r"sift_max_iterations=0 >= 1\. Fix:"),
])
def test_bad_hyperparameters_fail_with_the_fix(kw, message):
    with pytest.raises(ConfigError, match=message):
        small(**kw)


def test_a_bad_window_or_kernel_fails_clearly():
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        MorphologicalDecomposition(kernel_size=4)
    with pytest.raises(ValueError, match="built for windows of 48 steps, got 40"):
        small()(torch.randn(2, 40, 3))


@pytest.mark.parametrize("compat,expected", [(False, "epoch="), (True, None)])
def test_paper_compat_tests_the_last_epoch_for_dpad(compat, expected, make_config, monkeypatch):
    """The official D-PAD code tests the weights as they stand after training; paper_compat
    reproduces that (None: the module's current weights), otherwise the best checkpoint
    (``epoch=…-step=….ckpt``, not ``last.ckpt``)."""
    from forecast.pipelines.train import run

    cfg = make_config("model=dpad", "model.hidden=8", "model.k=3", "data.seq_len=48", "data.pred_len=12",
                      "data.batch_size=64", "trainer=debug", "logger=none", f"paper_compat={str(compat).lower()}")
    assert cfg.paper_quirks.test_last_epoch
    seen = {}
    original = pl.Trainer.test

    def spy(self, *args, **kwargs):
        seen["ckpt_path"] = kwargs.get("ckpt_path")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pl.Trainer, "test", spy)
    metrics = run(cfg)
    if expected is None:
        assert seen["ckpt_path"] is None
    else:
        assert Path(seen["ckpt_path"]).name.startswith(expected)
    assert metrics["test/mae"] > 0
