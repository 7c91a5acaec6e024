"""Live metric series (incremental) and Plotly charts with smoothing. No Streamlit import here."""

from __future__ import annotations

import re
from array import array
from dataclasses import dataclass, field

import numpy as np
import plotly.graph_objects as go

from uegr.runs import MetricsReader, Run

SMOOTHINGS = ("EMA (bias-corrected)", "Moving average", "None")
MAX_POINTS = 1000  # per trace sent to the browser; longer series are strided after smoothing

# (chart title, kind, metric names or a regex, y-axis title)
PANELS = [
    ("Losses: total / clean / adversarial / JS / KL", "train", ["loss", "clean", "adv", "js", "kl"], "loss"),
    ("Validation accuracy", "eval", ["accuracy", "robust_acc"], "accuracy"),
    ("Learning rate", "train", ["lr"], "lr"),
    ("Gradient norm", "train", ["grad_norm"], "norm"),
    ("Sampled dropout rates", "train", re.compile(r"^rate_\d+$"), "p"),
    ("Kept fraction per layer (selective update)", "train", re.compile(r"^kept_(l\d+|fraction)$"), "fraction"),
]
RAW_PANELS = {"Validation accuracy", "Learning rate"}  # sparse / deterministic: never smoothed
LABELS = {"loss": "total", "clean": "clean", "adv": "adversarial", "js": "JS", "kl": "KL",
          "kept_fraction": "all layers", "accuracy": "clean", "robust_acc": "robust (under attack)"}


# ------------------------------------------------------------------------------------------ smoothing
def ema(values: np.ndarray, weight: float) -> np.ndarray:
    """Exponential moving average with bias correction (as TensorBoard/Adam): no pull towards 0 at start."""
    v = np.asarray(values, dtype=float)
    w = float(weight)
    if 0 < w < 1 and len(v):
        try:
            from scipy.signal import lfilter
        except ImportError:
            pass
        else:
            acc = lfilter([1 - w], [1, -w], v)
            return acc / (1 - w ** np.arange(1, len(v) + 1))
    out = np.empty(len(values), dtype=float)
    acc, w = 0.0, float(weight)
    corr = 1.0
    for i, v in enumerate(values):
        acc = w * acc + (1 - w) * float(v)
        corr *= w
        out[i] = acc / (1 - corr) if corr < 1 else float(v)
    return out


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average; the first points average over what exists so far."""
    window = max(1, int(window))
    v = np.asarray(values, dtype=float)
    c = np.cumsum(np.insert(v, 0, 0.0))
    idx = np.arange(1, len(v) + 1)
    lo = np.maximum(0, idx - window)
    return (c[idx] - c[lo]) / (idx - lo)


def smooth(values, method: str, weight: float = 0.9, window: int = 20) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    if len(v) == 0 or method == "None":
        return v
    if method.startswith("EMA"):
        return ema(v, weight)
    return moving_average(v, window)


def smoothing_caption(method: str, weight: float, window: int) -> str:
    if method.startswith("EMA"):
        return f"Shown: EMA with weight {weight:g}, bias-corrected (faint line = raw values)."
    if method == "Moving average":
        return f"Shown: trailing moving average over {window} logged steps (faint line = raw values)."
    return "Shown: raw logged values, no smoothing."


def _stride(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(x) <= MAX_POINTS:
        return x, y
    idx = np.linspace(0, len(x) - 1, MAX_POINTS).astype(int)
    return x[idx], y[idx]


# ------------------------------------------------------------------------------------------ series
@dataclass
class RunSeries:
    """Columnar metrics of one run, grown incrementally from a MetricsReader (only new bytes per poll)."""

    run: Run
    reader: MetricsReader = None
    cols: dict = field(default_factory=dict)  # (kind, metric) -> (steps list, values list)
    version: int = 0

    def __post_init__(self):
        if self.reader is None:
            self.reader = self.run.reader()

    def update(self) -> int:
        new = self.reader.poll()
        for rec in new:
            kind, step = rec.get("kind"), rec.get("step")
            if kind == "robust":  # robust accuracy (uegr/robust_eval.py) is drawn beside validation accuracy
                kind, rec = "eval", {"robust_acc": rec.get("robust_acc")}
            if kind not in ("train", "eval") or step is None:
                continue
            if kind == "eval" and rec.get("split", "validation") != "validation":
                continue
            for k, v in rec.items():
                if isinstance(v, int | float) and not isinstance(v, bool) and k not in ("step", "time", "epoch"):
                    xs, ys = self.cols.setdefault((kind, k), (array("q"), array("d")))
                    xs.append(step)
                    ys.append(v)
        # The reader keeps every record in .records; the columns above are all we need, so drop them
        # to keep memory flat on long runs.
        self.reader.records.clear()
        if new:
            self.version += 1
        return len(new)

    def metrics(self, kind: str) -> list[str]:
        return [m for (k, m) in self.cols if k == kind]

    def n_points(self) -> int:
        return len(self.cols.get(("train", "loss"), ((), ()))[0])


# ------------------------------------------------------------------------------------------ charts
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
           "#bcbd22", "#7f7f7f"]


def _select(series: RunSeries, kind: str, spec) -> list[str]:
    names = series.metrics(kind)
    if isinstance(spec, list):
        return [m for m in spec if m in names]

    def order(m):
        num = re.findall(r"\d+", m)
        return (0, -1) if not num else (1, int(num[0]))

    return sorted((m for m in names if spec.match(m)), key=order)


def _trace(x, y, name: str, colour: str, **kw) -> dict:
    return {"type": "scatter", "x": x, "y": y, "name": name, "line": {"color": colour, **kw.pop("line", {})}, **kw}


def panel_figure(title: str, kind: str, spec, ytitle: str, series: list[RunSeries], method: str = "None",
                 weight: float = 0.9, window: int = 20) -> go.Figure | None:
    """One chart; traces = runs x metrics. Returns None when no run has data for it.

    Built from plain dicts and wrapped without plotly's per-property validation, which otherwise
    costs ~0.2 s per chart at 10,000 steps (the Live page redraws every second).
    """
    data = []
    colour_i = 0
    multi = len(series) > 1
    raw = title in RAW_PANELS
    for s in series:
        for m in _select(s, kind, spec):
            xs, ys = s.cols[(kind, m)]
            x = np.array(xs, dtype=np.int64)
            y = np.array(ys, dtype=float)
            colour = PALETTE[colour_i % len(PALETTE)]
            colour_i += 1
            label = LABELS.get(m, m.replace("kept_", "").replace("rate_", "pass "))
            name = f"{s.run.name} · {label}" if multi else label
            if raw or method == "None":
                xd, yd = _stride(x, y)
                data.append(_trace(xd, yd, name, colour, mode="lines+markers" if len(xd) < 40 else "lines"))
                continue
            sm = smooth(y, method, weight, window)
            xd, yd = _stride(x, y)
            data.append(_trace(xd, yd, name, colour, mode="lines", line={"width": 1}, opacity=0.25,
                               showlegend=False, hoverinfo="skip", legendgroup=name))
            xd, sd = _stride(x, sm)
            data.append(_trace(xd, sd, name, colour, mode="lines", legendgroup=name))
    if not data:
        return None
    layout = {"title": {"text": title, "font": {"size": 14}}, "height": 300,
              "margin": {"l": 40, "r": 10, "t": 40, "b": 30}, "xaxis": {"title": {"text": "step"}},
              "yaxis": {"title": {"text": ytitle}}, "uirevision": "keep",
              "legend": {"orientation": "h", "y": -0.25, "font": {"size": 10}}}
    if title.startswith("Learning rate"):
        layout["yaxis"]["exponentformat"] = "e"
    return go.Figure({"data": data, "layout": layout}, _validate=False)


def live_figures(series: list[RunSeries], method: str, weight: float, window: int) -> list[tuple[str, go.Figure]]:
    out = []
    for title, kind, spec, ytitle in PANELS:
        fig = panel_figure(title, kind, spec, ytitle, series, method, weight, window)
        if fig is not None:
            out.append((title, fig))
    return out
