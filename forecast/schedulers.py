"""Learning-rate schedules of the reference code bases that torch has no one-liner for."""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from forecast.errors import ConfigError


class _Decay:
    """``gamma ** max(epoch - hold, 0)``; a class, not a lambda, so checkpoints can pickle it."""

    def __init__(self, gamma: float, hold: int):
        self.gamma, self.hold = gamma, hold

    def __call__(self, epoch: int) -> float:
        return self.gamma ** max(epoch - self.hold, 0)


def epoch_decay(optimizer: Optimizer, gamma: float = 0.5, hold: int = 1) -> LambdaLR:
    """Stepped once per epoch: epochs ``1..hold+1`` train at the initial rate, then each
    epoch multiplies it by ``gamma``.

    With ``gamma=0.5, hold=1`` this is the ``lradj=type1`` schedule of the Autoformer / TSLib /
    LTSF-Linear code (``lr · 0.5^(epoch-1)`` set *after* each epoch, so the first two epochs
    share the initial rate). ``torch.optim.lr_scheduler.ExponentialLR`` would halve one epoch
    earlier.
    """
    return LambdaLR(optimizer, _Decay(gamma, hold))


class _WarmupHalving:
    """Epoch 0: ``prefit``; epochs ``1..warmup``: ``epoch / (warmup + 1)``; then
    ``0.5 ** (epoch - warmup - 1)`` (1 at the first epoch after the warm-up)."""

    def __init__(self, warmup: int, prefit: float):
        self.warmup, self.prefit = warmup, prefit

    def __call__(self, epoch: int) -> float:
        if epoch == 0:
            return self.prefit
        if epoch <= self.warmup:
            return epoch / (self.warmup + 1)
        return 0.5 ** (epoch - self.warmup - 1)


def etsformer_warmup(optimizer: Optimizer, warmup_epochs: int = 3, rates_prefit: float = 100.0) -> LambdaLR:
    """The official ETSformer schedule as it actually runs (``exponential_with_warmup``).

    Epoch 1 trains only the ``rates`` parameter group (smoothing rates and damping factors, at
    ``rates_prefit`` x lr) while every other parameter stands still (the reference sets them
    to 1e-30; here 0); epochs 2-4 warm every group up at lr/4, lr/2, 3lr/4; epoch 5 trains at
    lr, and each later epoch at half the previous rate. Needs an optimiser built on
    ``network.param_groups()`` (``ETSformer`` has them; :class:`forecast.module.ForecastModule`
    uses them when a network offers them).
    """
    names = [group.get("name") for group in optimizer.param_groups]
    if "rates" not in names:
        raise ConfigError(
            "the etsformer_warmup schedule needs a 'rates' parameter group (smoothing and damping rates); "
            "this network has none: use schedule=type1 or schedule=none"
        )
    lambdas = [_WarmupHalving(warmup_epochs, rates_prefit if name == "rates" else 0.0) for name in names]
    return LambdaLR(optimizer, lambdas)
