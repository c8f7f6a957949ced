"""The figures of the card: group rates with their intervals, and importance with its spread (PNG bytes)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

_PANELS = (("selection_rate", "selection rate"), ("tpr", "true-positive rate"), ("fpr", "false-positive rate"))


def _png(fig, left: float | None = None) -> bytes:
    """PNG bytes; fixed margins when given (tight_layout measured the text first and doubled the time)."""
    buffer = io.BytesIO()
    if left is None:
        fig.tight_layout()
    else:
        fig.subplots_adjust(left=left, right=0.98, bottom=0.4 / fig.get_figheight(), top=1 - 0.55 / fig.get_figheight(),
                            wspace=0.08)
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    return buffer.getvalue()


def fairness_bars(groups: pd.DataFrame, attribute: str, confidence: float) -> bytes:
    """Selection rate, TPR and FPR per group with bootstrap intervals; small groups grey and labelled."""
    table = groups[groups["attribute"] == attribute].iloc[::-1]
    height = 1.3 + 0.3 * len(table)
    fig, axes = plt.subplots(1, 3, figsize=(11, height), sharey=True)
    labels = [f"{g} (n={n})" for g, n in zip(table["group"], table["size"])]
    colors = ["#4c72b0" if ok else "#b0b0b0" for ok in table["reliable"]]
    y = np.arange(len(table))
    for ax, (metric, title) in zip(axes, _PANELS):
        values = table[metric].to_numpy(dtype=float)
        low = table[f"{metric}_low"].to_numpy(dtype=float)
        high = table[f"{metric}_high"].to_numpy(dtype=float)
        errors = np.vstack([np.clip(values - low, 0, None), np.clip(high - values, 0, None)])
        errors = np.nan_to_num(errors)
        ax.barh(y, np.nan_to_num(values), color=colors, xerr=errors, capsize=2, error_kw={"elinewidth": 0.8})
        ax.set_xlim(0, 1)
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=8)
    axes[0].set_yticks(y, labels)
    fig.suptitle(f"{attribute}: rates per group, {confidence:.0%} bootstrap intervals (grey: too small to compare)",
                 fontsize=9)
    longest = max((len(label) for label in labels), default=10)
    return _png(fig, left=min(0.45, 0.03 + longest * 0.075 / fig.get_figwidth()))


def importance_bars(table: pd.DataFrame, repeats: int) -> bytes:
    """Drop in ROC AUC per raw column, with the range over the permutation repeats."""
    table = table.iloc[::-1]
    fig, ax = plt.subplots(figsize=(6.5, 1.0 + 0.3 * len(table)))
    y = np.arange(len(table))
    values = table["importance"].to_numpy()
    errors = np.vstack([values - table["low"].to_numpy(), table["high"].to_numpy() - values])
    ax.barh(y, values, xerr=np.clip(errors, 0, None), color="#55a868", capsize=2)
    ax.set_yticks(y, table["feature"])
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.set_xlabel(f"drop in test ROC AUC when shuffled (bars: mean; whiskers: range over {repeats} repeats)", fontsize=8)
    ax.tick_params(labelsize=8)
    return _png(fig)
