"""Learning-rate schedules of the reference code bases that torch has no one-liner for."""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


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
