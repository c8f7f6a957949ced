"""A window of rows to compare: the reference (what the model knows) or a current period.

The engine compares any reference window with any current one; :func:`time_window` cuts
a period out of a longer log (the live prediction log is monitored per day this way).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class WindowInfo:
    """What the report says about a window: where its rows come from, how many, which period."""

    description: str
    rows: int
    start: str | None = None
    end: str | None = None

    @property
    def period(self) -> str:
        if self.start is None:
            return "period unknown"
        return self.start if self.start == self.end else f"{self.start} to {self.end}"


@dataclass(frozen=True)
class Window:
    frame: pd.DataFrame
    description: str
    time_column: str | None = None

    def info(self) -> WindowInfo:
        start = end = None
        if self.time_column is not None and self.time_column in self.frame and len(self.frame):
            times = pd.to_datetime(self.frame[self.time_column], errors="coerce").dropna()
            if len(times):
                start, end = (t.strftime("%Y-%m-%d") if t == t.normalize() else t.strftime("%Y-%m-%d %H:%M")
                              for t in (times.min(), times.max()))
        return WindowInfo(self.description, len(self.frame), start, end)


def time_window(frame: pd.DataFrame, time_column: str, start: str | pd.Timestamp, end: str | pd.Timestamp,
                description: str | None = None) -> Window:
    """The rows with ``start <= time < end``."""
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    if end <= start:
        raise ValueError(f"a window must end after it starts: {start} to {end}")
    times = pd.to_datetime(frame[time_column])
    rows = frame[(times >= start) & (times < end)]
    return Window(rows, description or f"rows with {start} <= {time_column} < {end}", time_column)
