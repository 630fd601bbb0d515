"""DLinear: shapes, both variants, and that it learns what a linear model can learn."""

import pytest
import pytorch_lightning as pl
import torch

from forecast.data.datamodule import ForecastDataModule
from forecast.models.dlinear import DLinear
from forecast.module import ForecastModule
from tests.helpers import sinusoid_frame


@pytest.mark.parametrize("individual", [False, True])
@pytest.mark.parametrize("L,H,C", [(96, 24, 7), (336, 720, 1), (13, 5, 3)])
def test_output_shape(individual, L, H, C):
    model = DLinear(seq_len=L, pred_len=H, enc_in=C, individual=individual)
    assert model(torch.randn(4, L, C)).shape == (4, H, C)
    n_maps = C if individual else 1
    assert sum(p.numel() for p in model.parameters()) == 2 * n_maps * (L * H + H)


def test_individual_channels_do_not_share_weights():
    torch.manual_seed(0)
    shared, individual = DLinear(24, 6, 2), DLinear(24, 6, 2, individual=True)
    x = torch.randn(1, 24, 1).repeat(1, 1, 2)  # the same series on both channels
    out_shared, out_individual = shared(x), individual(x)
    torch.testing.assert_close(out_shared[..., 0], out_shared[..., 1])
    assert not torch.allclose(out_individual[..., 0], out_individual[..., 1])


def test_matches_the_reference_formulation():
    """Same output as two nn.Linear layers over [B, C, L] (the reference code's form)."""
    model = DLinear(32, 8, 3)
    x = torch.randn(5, 32, 3)
    seasonal, trend = model.decomposition(x)
    lin = lambda part, w, b: torch.nn.functional.linear(part.permute(0, 2, 1), w[0].T, b[0]).permute(0, 2, 1)  # noqa: E731
    expected = lin(seasonal, model.seasonal_weight, model.seasonal_bias) + lin(trend, model.trend_weight, model.trend_bias)
    torch.testing.assert_close(model(x), expected)


def test_learns_a_noisy_sinusoid_far_better_than_seasonal_naive(write_csv):
    period, noise = 24, 0.3
    path = write_csv(sinusoid_frame(n=3000, channels=2, period=period, noise=noise))
    dm = ForecastDataModule(name="sine", path=path, seq_len=96, pred_len=24, batch_size=64)
    dm.setup()
    pl.seed_everything(0, verbose=False)
    module = ForecastModule(DLinear(96, 24, 2), optimizer=lambda p: torch.optim.Adam(p, lr=0.01))
    trainer = pl.Trainer(max_epochs=4, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=dm)
    dlinear_mse = trainer.test(module, datamodule=dm, verbose=False)[0]["test/mse"]

    # seasonal naive: repeat the last period of the look-back
    batch = dm.datasets["test"].__getitems__(list(range(len(dm.datasets["test"]))))
    naive = batch["x"][:, -period:, :]
    naive_mse = float(((naive - batch["y"]) ** 2).mean())
    # noise only: naive error ≈ 2σ² (scaled), a good linear fit approaches σ²
    assert dlinear_mse < 0.65 * naive_mse, (dlinear_mse, naive_mse)
