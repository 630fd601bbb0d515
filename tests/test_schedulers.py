import pytest
import torch

from forecast.schedulers import epoch_decay


def test_epoch_decay_reproduces_type1_halving():
    """lradj=type1: lr·0.5^(epoch-1) set after each (1-based) epoch, so epochs 1 and 2 share lr."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
    sched = epoch_decay(opt, gamma=0.5, hold=1)
    rates = []
    for _ in range(5):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert rates == [0.01, 0.01, 0.005, 0.0025, 0.00125]


def test_etsformer_warmup_prefits_the_rates_then_warms_up_and_halves():
    from forecast.errors import ConfigError
    from forecast.schedulers import etsformer_warmup

    net, rates = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([{"name": "network", "params": [net]}, {"name": "rates", "params": [rates]}], lr=0.01)
    sched = etsformer_warmup(opt)
    seen = []
    for _ in range(8):
        seen.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    later = [0.0025, 0.005, 0.0075, 0.01, 0.005, 0.0025, 0.00125]  # epochs 2..8
    assert seen[0] == [0.0, 1.0]  # epoch 1: only the rates, at 100x
    assert [s[0] for s in seen[1:]] == pytest.approx(later) and [s[1] for s in seen[1:]] == pytest.approx(later)
    with pytest.raises(ConfigError, match="needs a 'rates' parameter group"):
        etsformer_warmup(torch.optim.Adam([net], lr=0.01))
