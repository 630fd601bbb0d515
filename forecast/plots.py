"""Figures: forecast against actual values for a few test windows or evaluation cutoffs; a
backtest's errors by cutoff and by horizon step; the decomposition of a series; the history of
retrains."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


# one colour per model's forecast (black and grey are the actual values and the history)
FORECAST_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive",
                    "tab:cyan")


def shown_channels(count: int) -> list[int]:
    """Positions, among ``count`` forecast channels (the target last), that a figure draws: the
    target and, when there are others (M mode), up to two of them."""
    return sorted({count - 1, *range(min(2, count - 1))})


def forecast_figure(windows: list[dict], channels: list[str], title: str = "") -> plt.Figure:
    """A grid of windows (rows) × channels (columns).

    Each window is a dict of ``history_dates``, ``history [L, C]``, ``dates``, ``actual [H, C]``,
    ``forecast [H, C]``, on the original scale; ``channels`` names the ``C`` columns drawn.
    ``forecast`` may be a dict ``{label: [H, C]}`` to draw several models' forecasts.
    ``bands`` (optional, with a single forecast): ``{level: (lo [H, C], hi [H, C])}``, drawn as
    shaded prediction intervals (the widest palest).
    """
    n_rows, n_cols = len(windows), len(channels)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(4.5 * n_cols, 2.6 * n_rows), squeeze=False, sharex="row")
    for r, window in enumerate(windows):
        for c, name in enumerate(channels):
            ax = axes[r, c]
            ax.plot(window["history_dates"], window["history"][:, c], color="0.55", lw=1.0, label="history")
            ax.plot(window["dates"], window["actual"][:, c], color="black", lw=1.2, label="actual")
            forecasts = window["forecast"] if isinstance(window["forecast"], dict) else {"forecast": window["forecast"]}
            for (label, forecast), color in zip(forecasts.items(), FORECAST_COLOURS * len(forecasts)):
                draw_bands(ax, window["dates"], window.get("bands"), c, color)
                ax.plot(window["dates"], forecast[:, c], color=color, lw=1.4, label=label)
            ax.axvline(window["dates"][0], color="0.8", lw=0.8, ls="--")
            if r == 0:
                ax.set_title(name, fontsize=10)
            if c == 0:
                ax.set_ylabel(f"from {np.datetime_as_string(np.datetime64(window['dates'][0]), unit='m')}", fontsize=8)
            ax.tick_params(labelsize=7)
            for label in ax.get_xticklabels():
                label.set_rotation(30)
    axes[0, -1].legend(fontsize=7, loc="upper right")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def draw_bands(ax, dates, bands: dict | None, channel: int, color: str) -> None:
    """Shade the prediction intervals ``{level: (lo [H, C], hi [H, C])}`` of one channel, the
    widest first and palest, each labelled ``<level>%``."""
    if not bands:
        return
    levels = sorted(bands, reverse=True)
    for i, level in enumerate(levels):
        lo, hi = bands[level]
        ax.fill_between(dates, np.asarray(lo)[:, channel], np.asarray(hi)[:, channel], color=color,
                        alpha=0.15 + 0.15 * i / max(len(levels) - 1, 1), lw=0, label=f"{level}%")


def decomposition_figure(dates, parts: dict[str, np.ndarray], channels: list[str], title: str = "") -> plt.Figure:
    """A grid of components (rows: observed, trend, seasonal…, residual, in the order given) ×
    channels (columns) over ``dates``; each part is ``[T, len(channels)]``, NaN where undefined."""
    names = list(parts)
    fig, axes = plt.subplots(len(names), len(channels), figsize=(5.0 * len(channels), 1.9 * len(names)),
                             squeeze=False, sharex=True)
    for r, name in enumerate(names):
        for c, channel in enumerate(channels):
            ax = axes[r, c]
            ax.plot(dates, parts[name][:, c], color="black" if r == 0 else "tab:blue", lw=0.5)
            if name.startswith("resid"):
                ax.axhline(0.0, color="0.7", lw=0.6)
            if r == 0:
                ax.set_title(channel, fontsize=10)
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
            ax.tick_params(labelsize=7)
    for ax in axes[-1]:
        for label in ax.get_xticklabels():
            label.set_rotation(30)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def cutoffs_figure(table, cutoffs: list[int], outputs: list[str], predictions: dict, seq_len: int, pred_len: int,
                   title: str) -> plt.Figure:
    """The windows of a rolling-origin evaluation (:mod:`forecast.evaluation`): the last
    look-back before each cutoff, the actual values and each model's forecast
    (``predictions``: ``{label: [W, H, len(outputs)]}``, data units) of a ``TimeSeriesTable``."""
    shown = shown_channels(len(outputs))
    index = [table.columns.index(outputs[c]) for c in shown]
    keep = min(seq_len, max(2 * pred_len, 96))
    windows = []
    for w, cutoff in enumerate(cutoffs):
        windows.append({
            "history_dates": table.dates[cutoff - keep:cutoff], "history": table.values[cutoff - keep:cutoff][:, index],
            "dates": table.dates[cutoff:cutoff + pred_len], "actual": table.values[cutoff:cutoff + pred_len][:, index],
            "forecast": {who: pred[w][:, shown] for who, pred in sorted(predictions.items(), reverse=True)},
        })
    return forecast_figure(windows, [outputs[c] for c in shown], title)


def errors_figure(x, errors: dict[str, np.ndarray], xlabel: str, ylabel: str, title: str) -> plt.Figure:
    """One line per model (``errors``: ``{label: values over x}``): a backtest's error by cutoff
    or by horizon step."""
    fig, ax = plt.subplots(figsize=(8, 3.2))
    for (label, values), colour in zip(errors.items(), FORECAST_COLOURS * len(errors)):
        ax.plot(x, values, "o-" if len(values) <= 40 else "-", color=colour, lw=1.3, ms=3.5, label=label)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.set_title(title, fontsize=10)
    ax.grid(color="0.92")
    ax.set_axisbelow(True)
    ax.tick_params(labelsize=8)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    if np.issubdtype(np.asarray(x).dtype, np.datetime64):
        fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def retrain_history_figure(table, name: str, decided: tuple[str, ...] = ("first", "promoted", "rejected")) -> plt.Figure:
    """The decision metric of champion and challenger per retrain (:func:`forecast.registry.history`);
    promotions marked, failed retrains as red lines."""
    fig, ax = plt.subplots(figsize=(8, 3.2))
    done = table[table["decision"].isin(decided)]
    ax.plot(done["started"], done["champion_score"], "o-", color="0.4", label="champion")
    ax.plot(done["started"], done["challenger_score"], "s--", color="tab:blue", label="challenger")
    for decision, marker in (("promoted", "^"), ("first", "*")):
        rows = done[done["decision"] == decision]
        ax.scatter(rows["started"], rows["challenger_score"], marker=marker, s=90, color="tab:green", zorder=3, label=decision)
    failed = table[table["decision"] == "failed"]
    for when in failed["started"]:
        ax.axvline(when, color="tab:red", lw=0.8, ls=":")
    ax.set_ylabel(table["metric"].iloc[0] if len(table) else "")
    ax.set_title(f"{name}: retrains (red lines: failed)", fontsize=10)
    ax.legend(fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig
