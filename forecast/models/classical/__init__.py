"""Classical forecasting baselines as networks without trainable parameters, one module each
over :mod:`forecast.models.classical.base` (what they share; the module docstring there says
how they run), with the statsmodels helpers in ``fits``, ``kernels``, ``parallel`` and
``periods``.

The names below keep the package path ``forecast.models.classical.<Class>`` working: served
models pickled before the split into one module per model reference their class by it, and
logged configs name it as their ``_target_``. A new classical model needs no line here.
"""

from forecast.models.classical.arima import ARIMA
from forecast.models.classical.decomposition import ClassicalDecomposition
from forecast.models.classical.drift import Drift
from forecast.models.classical.ets import ETS
from forecast.models.classical.holt_winters import HoltWinters
from forecast.models.classical.mstl import MSTL
from forecast.models.classical.naive import Naive
from forecast.models.classical.seasonal_naive import SeasonalNaive
from forecast.models.classical.stl import STL
from forecast.models.classical.theta import Theta

__all__ = ["ARIMA", "ClassicalDecomposition", "Drift", "ETS", "HoltWinters", "MSTL", "Naive", "SeasonalNaive", "STL", "Theta"]
