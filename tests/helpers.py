"""Small networks for tests of the training system."""

from forecast.models.base import Network


class LastValue(Network):
    """Repeats the last observed value over the horizon: no trainable parameters."""

    uses_time_features = False
    channel_independent = True

    def __init__(self, seq_len: int, pred_len: int):
        super().__init__()
        self.seq_len, self.pred_len = seq_len, pred_len

    def forward(self, x, x_mark=None, y_mark=None):
        return x[:, -1:, :].expand(-1, self.pred_len, -1)
