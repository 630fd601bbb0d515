"""The optimiser ForecastModule builds: torch's fused Adam step where it is the same update."""

from __future__ import annotations

import functools

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from forecast.models.dlinear import DLinear
from forecast.module import ForecastModule


def module(**optimizer):
    target = optimizer.pop("target", torch.optim.Adam)
    return ForecastModule(DLinear(seq_len=24, pred_len=12, enc_in=3), optimizer=functools.partial(target, lr=1e-3, **optimizer))


def test_adam_takes_the_fused_step_by_default():
    assert module().configure_optimizers().defaults["fused"] is True
    assert module(target=torch.optim.AdamW).configure_optimizers().defaults["fused"] is True


def test_a_configured_fused_or_foreach_and_other_optimisers_are_left_alone():
    assert not module(fused=False).configure_optimizers().defaults["fused"]
    adam = module(foreach=True).configure_optimizers()
    assert adam.defaults["foreach"] is True and not adam.defaults["fused"]
    assert isinstance(module(target=torch.optim.SGD).configure_optimizers(), torch.optim.SGD)


def test_the_fused_step_is_the_default_update_up_to_rounding():
    fused, plain = module(), module(fused=False)
    plain.load_state_dict(fused.state_dict())
    batch = (torch.randn(16, 24, 3), torch.randn(16, 12, 3))
    optimizers = [m.configure_optimizers() for m in (fused, plain)]
    start = {k: v.clone() for k, v in fused.state_dict().items()}
    for _ in range(20):
        for m, opt in zip((fused, plain), optimizers):
            opt.zero_grad()
            m.loss(m(batch[0]), batch[1]).backward()
            opt.step()
    moved = max((a - b).abs().max().item() for a, b in zip(fused.parameters(), plain.parameters()))
    step = max((a - start[k]).abs().max().item() for k, a in fused.state_dict().items())
    assert step > 1e-3  # the parameters moved
    assert moved < 1e-5


def test_clipping_under_mixed_precision_keeps_the_default_step(tmp_path):
    """Lightning refuses to clip the gradients of an optimiser that unscales its own; the fit must run."""
    m = module()
    data = TensorDataset(torch.randn(8, 24, 3), torch.randn(8, 12, 3))
    loader = DataLoader([{"x": x, "y": y, "x_mark": torch.zeros(24, 4), "y_mark": torch.zeros(12, 4)} for x, y in data], batch_size=4)
    trainer = pl.Trainer(max_steps=2, precision="bf16-mixed", gradient_clip_val=1.0, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path, accelerator="cpu")
    trainer.fit(m, train_dataloaders=loader)
    assert trainer.global_step == 2
    assert not trainer.optimizers[0].defaults["fused"]
