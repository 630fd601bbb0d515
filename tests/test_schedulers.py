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
