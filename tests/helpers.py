"""Small networks for tests of the training system."""

from torch import nn


class LastValue(nn.Module):
    """Repeats the last observed value over the horizon: no trainable parameters."""

    def __init__(self, pred_len: int):
        super().__init__()
        self.pred_len = pred_len

    def forward(self, x, x_mark=None, y_mark=None):
        return x[:, -1:, :].expand(-1, self.pred_len, -1)
