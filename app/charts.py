"""Live metric series (incremental) and Plotly charts: one panel per scale (loss, divergence, ...), one colour
per run (app.colours), smoothing only for noisy per-batch series. No Streamlit import here."""

from __future__ import annotations

import re
from array import array
from dataclasses import dataclass, field

import numpy as np
import plotly.graph_objects as go

from app import colours
from uegr.runs import MetricsReader, Run

SMOOTHINGS = ("EMA (bias-corrected)", "Moving average", "None")
MAX_POINTS = 1000  # per trace sent to the browser; longer series are strided after smoothing


@dataclass(frozen=True)
class Panel:
    """One chart: which metrics, how to draw them."""

    title: str
    kind: str  # "train" or "eval" records
    spec: object  # metric names (in legend order) or a compiled regex
    ytitle: str
    smooth: bool = True  # step-valued series (rates, kept fractions, lr) and sparse ones are never smoothed
    log: bool = False  # log y axis (divergences live around 1e-3 while cross-entropy is ~1)
    steps: bool = False  # draw as a step function (value held until the next record)


PANELS = [
    Panel("Loss", "train", ["loss", "clean", "adv"], "cross-entropy"),
    # JS / KL are ~1e-3 next to CE ~1: on the loss axis they are a flat line at 0, so they get their own panel.
    Panel("Divergence between passes", "train", ["js", "kl"], "divergence (log)", log=True),
    Panel("Validation accuracy", "eval", ["accuracy", "robust_acc"], "accuracy", smooth=False),
    Panel("Learning rate", "train", ["lr"], "lr", smooth=False),
    Panel("Gradient norm", "train", ["grad_norm"], "norm"),
    Panel("Sampled dropout rates", "train", re.compile(r"^rate_\d+$"), "p", smooth=False, steps=True),
    Panel("Kept fraction per layer (selective update)", "train", re.compile(r"^kept_(l\d+|fraction)$"), "fraction",
          smooth=False, steps=True),
]
RAW_PANELS = {p.title for p in PANELS if not p.smooth}
LABELS = {"loss": "total", "clean": "clean", "adv": "adversarial", "js": "JS", "kl": "KL",
          "kept_fraction": "all layers", "grad_norm": "gradient norm", "accuracy": "clean", "lr": "lr",
          "robust_acc": "robust (under attack)"}


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

    def __post_init__(self):
        if self.reader is None:
            self.reader = self.run.reader()

    def update(self) -> int:
        rewinds = self.reader.rewinds
        new = self.reader.poll()
        if self.reader.rewinds != rewinds:  # a resume rewrote metrics.jsonl: rebuild from the start
            self.cols.clear()
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
        return len(new)

    def metrics(self, kind: str) -> list[str]:
        return [m for (k, m) in self.cols if k == kind]

    def n_points(self) -> int:
        return len(self.cols.get(("train", "loss"), ((), ()))[0])


# ------------------------------------------------------------------------------------------ charts
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


def _same(a, b) -> bool:
    return len(a) == len(b) and np.allclose(np.asarray(a, float), np.asarray(b, float), rtol=1e-6, atol=1e-9)


def _metrics_to_draw(s: RunSeries, panel: Panel, multi: bool) -> list[tuple[str, str]]:
    """(metric, legend label) pairs of one run in one panel."""
    ms = _select(s, panel.kind, panel.spec)
    labels = {m: LABELS.get(m, m.replace("kept_l", "layer ").replace("rate_", "pass ")) for m in ms}
    if panel.title == "Loss" and "loss" in ms and "clean" in ms and len(ms) == 2 \
            and _same(s.cols[("train", "loss")][1], s.cols[("train", "clean")][1]):
        ms.remove("clean")  # vanilla: total IS the clean loss; one line, said so, instead of one hidden under it
        labels["loss"] = "total (= clean)"
    if panel.title.startswith("Kept") and multi:
        ms = [m for m in ms if m == "kept_fraction"]  # per-layer lines of several runs would be unreadable
    return [(m, labels[m]) for m in ms]


def panel_title(panel: Panel, series: list[RunSeries]) -> str:
    """The title lists only the parts that are drawn (no "/ KL" when no run logs a KL)."""
    if not isinstance(panel.spec, list) or panel.kind != "train" or len(panel.spec) < 2:
        return panel.title
    present = [m for m in panel.spec if any((panel.kind, m) in s.cols for s in series)]
    parts = [LABELS.get(m, m) for m in present]
    return f"{panel.title}: {' / '.join(parts)}" if parts else panel.title


def _colour(s: RunSeries, m: str, panel: Panel, multi: bool) -> tuple[str, str]:
    """(colour, dash): the run's colour with a dash per part; single-run layer lines use the layer colours
    shared with the Saliency page."""
    if panel.title.startswith("Kept") and not multi:
        return (colours.layer_colour(m) if m != "kept_fraction" else colours.ALL_LAYERS), "solid"
    parts = panel.spec if isinstance(panel.spec, list) else _select(s, panel.kind, panel.spec)
    i = parts.index(m) if m in parts else 0
    return colours.run_colour(s.run.name), colours.DASHES[i % len(colours.DASHES)]


def panel_figure(panel: Panel, series: list[RunSeries], method: str = "None", weight: float = 0.9,
                 window: int = 20) -> go.Figure | None:
    """One chart; traces = runs x metrics. Returns None when no run has data for it.

    Built from plain dicts and wrapped without plotly's per-property validation, which otherwise
    costs ~0.2 s per chart at 10,000 steps (the Live page redraws every second).
    """
    data = []
    multi = len(series) > 1
    raw = not panel.smooth or method == "None"
    for s in series:
        for m, label in _metrics_to_draw(s, panel, multi):
            xs, ys = s.cols[(panel.kind, m)]
            x = np.array(xs, dtype=np.int64)
            y = np.array(ys, dtype=float)
            if panel.log:  # a 0 (identical passes) cannot sit on a log axis: show it at the smallest value seen
                pos = y[y > 0]
                if not pos.size:
                    continue
                y = np.where(y > 0, y, pos.min())
            colour, dash = _colour(s, m, panel, multi)
            name = f"{s.run.name} · {label}" if multi else label
            # one legend group per run x part (raw + smoothed toggle together); a group per run would stack
            # a horizontal legend into a column. meta = the run, for tests and hover.
            common = {"legendgroup": f"{s.run.name}:{m}", "meta": s.run.name}
            width = 2.5 if m == "kept_fraction" else 1.8
            if raw:
                xd, yd = _stride(x, y)
                data.append(_trace(xd, yd, name, colour, mode="lines+markers" if len(xd) < 40 else "lines",
                                   line={"dash": dash, "width": width, **({"shape": "hv"} if panel.steps else {})},
                                   marker={"size": 5}, **common))
                continue
            sm = smooth(y, method, weight, window) if not panel.log else np.exp(smooth(np.log(y), method, weight,
                                                                                       window))
            xd, yd = _stride(x, y)
            data.append(_trace(xd, yd, name, colour, mode="lines", line={"width": 1, "dash": dash}, opacity=0.25,
                               showlegend=False, hoverinfo="skip", **common))
            xd, sd = _stride(x, sm)
            data.append(_trace(xd, sd, name, colour, mode="lines", line={"dash": dash, "width": width}, **common))
    if not data:
        return None
    # Title and legend above the plot, the axis title alone below it: nothing sits on top of anything.
    layout = {"title": {"text": panel_title(panel, series), "font": {"size": 14}, "y": 0.97, "yanchor": "top",
                        "x": 0.01, "xanchor": "left"},
              "height": 320, "margin": {"l": 55, "r": 10, "t": 78, "b": 45},
              "xaxis": {"title": {"text": "step", "standoff": 6}},
              "yaxis": {"title": {"text": panel.ytitle}}, "uirevision": "keep", "hovermode": "x unified",
              "legend": {"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0, "xanchor": "left",
                         "font": {"size": 10}}}
    if panel.log:
        layout["yaxis"].update(type="log", exponentformat="power")
    if panel.title.startswith("Learning rate"):
        layout["yaxis"]["exponentformat"] = "e"
    return go.Figure({"data": data, "layout": layout}, _validate=False)


def live_figures(series: list[RunSeries], method: str, weight: float, window: int) -> list[tuple[str, go.Figure]]:
    out = []
    for panel in PANELS:
        fig = panel_figure(panel, series, method, weight, window)
        if fig is not None:
            out.append((panel.title, fig))
    return out
