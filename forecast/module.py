"""ForecastModule: the one LightningModule every network is trained and tested by."""

from __future__ import annotations

import functools
from typing import Callable

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import MeanMetric

from forecast.losses import PinballLoss
from forecast.metrics import ForecastMetrics
from forecast.models.base import Network, check_network

EVAL_STAGES = ("val", "test")


class ForecastModule(pl.LightningModule):
    """Loss, optimiser, schedule and metrics around a network; nothing model-specific.

    ``network(x [B, L, C], x_mark, y_mark) -> [B, H, C_out]``; the last ``c_out`` output
    channels are compared with ``y`` (all channels in M mode, the target in S/MS mode).
    ``optimizer`` and ``scheduler`` are factories (Hydra ``_partial_`` nodes) called with the
    parameters and the optimiser. ``eval_loss`` (default: ``loss``) is the ``val/loss`` and
    ``test/loss`` criterion, the one early stopping and checkpoints watch. ``target_mean``/``target_std``/``mase_scale`` (one value per
    target channel) let the metrics report errors on the original scale.

    A :class:`forecast.quantiles.QuantileNetwork` (``module.loss=quantile``) is trained on its
    quantile forecasts ``[B, H, C, Q]`` by a :class:`forecast.losses.PinballLoss` criterion;
    every metric scores its median, the point forecast, like any other network's.

    Logged keys: ``train/loss``, ``val/loss``, ``val/mse``…, ``test/loss`` (only where the
    criterion is not the MSE, which ``test/mse`` already is), ``test/mse``, ``test/mae``,
    ``test/mae_orig``, ``test/rmse_orig``, ``test/mase_orig``, ``test/smape_orig``.
    """

    def __init__(
        self,
        network: Network,
        loss: nn.Module | None = None,
        eval_loss: nn.Module | None = None,
        optimizer: Callable | None = None,
        scheduler: Callable | None = None,
        scheduler_interval: str = "epoch",
        c_out: int | None = None,
        target_mean=None,
        target_std=None,
        mase_scale=None,
    ):
        super().__init__()
        check_network(type(network))  # the hooks below are called through the contract
        self.network = network
        self.loss = loss if loss is not None else nn.MSELoss()
        self.eval_loss = eval_loss if eval_loss is not None else self.loss
        self.optimizer_factory = optimizer or (lambda params: torch.optim.Adam(params, lr=1e-4))
        self.scheduler_factory = scheduler
        self.scheduler_interval = scheduler_interval
        self.c_out = c_out
        n = c_out or (len(target_mean) if target_mean is not None else 1)
        self.metrics = nn.ModuleDict(
            {stage: ForecastMetrics(target_mean, target_std, mase_scale, c_out=n) for stage in EVAL_STAGES}
        )
        # Epoch means of the loss, accumulated here and logged once per epoch: a per-step
        # self.log costs about as much as a DLinear step on a CPU.
        self.losses = nn.ModuleDict({f"{stage}_loss": MeanMetric() for stage in ("train", *EVAL_STAGES)})
        # the test forecasts and targets (scaled, on the host), kept when ``keep_test`` is set: the
        # interval metrics are computed from them without forecasting the test split again
        self.keep_test = False
        self.test_outputs: list[tuple[torch.Tensor, torch.Tensor]] = []
        # the conformal calibration (forecast.intervals.Calibration) stored with the logged model
        self.calibration = None

    @property
    def trainable(self) -> bool:
        """False for networks without trainable parameters (classical baselines): test only."""
        return any(p.requires_grad for p in self.network.parameters())

    def forward(self, x: torch.Tensor, x_mark: torch.Tensor | None = None, y_mark: torch.Tensor | None = None) -> torch.Tensor:
        out = self.network(x, x_mark, y_mark)
        return out if self.c_out is None else out[..., -self.c_out :]

    @property
    def quantile_grid(self) -> list[float] | None:
        """The quantiles the network forecasts (``module.loss=quantile``); ``None``: points only."""
        from forecast.quantiles import QuantileNetwork

        return self.network.quantiles_grid if isinstance(self.network, QuantileNetwork) else None

    def quantile_forecast(self, x: torch.Tensor, x_mark: torch.Tensor | None = None,
                          y_mark: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, H, C, Q]``: the quantile forecasts of a quantile-trained network."""
        out = self.network.quantiles(x, x_mark, y_mark)
        return out if self.c_out is None else out[..., -self.c_out :, :]

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        criterion = self.loss if stage == "train" else self.eval_loss
        target = batch["y"]
        if self.quantile_grid is not None:
            quantiles = self.quantile_forecast(batch["x"], batch["x_mark"], batch["y_mark"])
            pred = quantiles[..., self.network.median]
            loss = criterion(quantiles if isinstance(criterion, PinballLoss) else pred, target)
        else:
            pred = self(batch["x"], batch["x_mark"], batch["y_mark"])
            loss = criterion(pred, target)
        self.losses[f"{stage}_loss"].update(loss.detach(), weight=target.shape[0])
        if stage in self.metrics:
            self.metrics[stage].update(pred, target)
        if stage == "test" and self.keep_test:
            self.test_outputs.append((pred.detach().float().cpu(), target.detach().float().cpu()))
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def predict_step(self, batch, batch_idx):
        return self(batch["x"], batch["x_mark"], batch["y_mark"])

    def _log_epoch(self, stage: str) -> None:
        """Log the stage's epoch loss (and metrics), reduced over every batch and process."""
        loss = self.losses[f"{stage}_loss"]  # ("train" would shadow ModuleDict.train)
        # test/loss would repeat test/mse when the criterion is the MSE
        if loss.update_count and not (stage == "test" and isinstance(self.eval_loss, nn.MSELoss)):
            self.log(f"{stage}/loss", loss.compute(), prog_bar=stage != "test")
        loss.reset()
        if stage in self.metrics:
            metric = self.metrics[stage]
            if metric.update_count:
                self.log_dict({f"{stage}/{k}": v.float() for k, v in metric.compute().items()})
            metric.reset()

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def _fused_step(self) -> dict:
        """``{"fused": True}`` where torch's Adam or AdamW can take the step as one fused kernel.

        The default step on the CPU loops over the parameters, a dozen passes over each; the fused
        kernel makes one and computes the same update up to float rounding. Autoformer's 10.5 M
        parameters: about 95 ms a step -> 26 ms at 1 thread (docs/speed.md). Left as configured when
        the config names ``fused`` or ``foreach`` itself, for other optimisers, for parameters
        that are not float32/float64 on the CPU or CUDA, and with gradient clipping under mixed
        precision (Lightning refuses to clip for an optimiser that unscales its own gradients).
        """
        factory = self.optimizer_factory
        if not isinstance(factory, functools.partial) or factory.func not in (torch.optim.Adam, torch.optim.AdamW):
            return {}
        if {"fused", "foreach"} & factory.keywords.keys():
            return {}
        params = list(self.parameters())
        if not params or any(p.device.type not in ("cpu", "cuda") or p.dtype not in (torch.float32, torch.float64) for p in params):
            return {}
        trainer = self._trainer
        if trainer is not None and trainer.gradient_clip_val and "mixed" in str(trainer.precision):
            return {}
        return {"fused": True}

    def configure_optimizers(self):
        # networks that give their parameters roles (ETSformer's smoothing rates) name the groups
        groups = self.network.param_groups()
        optimizer = self.optimizer_factory(groups if groups is not None else self.parameters(), **self._fused_step())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": self.scheduler_interval, "monitor": "val/loss"},
        }
