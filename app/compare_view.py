"""Charts for the Compare page (no Streamlit import): clean-vs-robust scatter with Wilson intervals, sample
sizes and labels placed so they never overlap; grouped bars of accuracy under each attack; training-curve
overlays. Every run has its own colour (app.colours), the same as on Live; the method is the marker shape."""

from __future__ import annotations

import math

import plotly.graph_objects as go

from app import charts, colours
from uegr.compare import attack_keys, pareto_front
from uegr.stats import wilson_interval

# The scatter has a fixed size so label placement (in pixels) is exactly what the browser draws.
SCATTER_W, SCATTER_H = 760, 470
MARGIN = {"l": 60, "r": 20, "t": 50, "b": 60}
FONT_PX = 11
CHAR_W, LINE_H = 0.62 * FONT_PX, 1.35 * FONT_PX  # a conservative box for Plotly's default sans-serif font


def robust_column(key: str | None) -> str:
    """'robust_accuracy' (worst over attacks) or one attack's accuracy-under-attack column."""
    return "robust_accuracy" if not key else f"under_attack:{key}"


def clean_n(run) -> int | None:
    """Size of the validation split the clean accuracy was measured on (from the run's status)."""
    try:
        st = run.status()
    except (OSError, ValueError):
        return None
    splits = ((st.get("dataset") or {}).get("splits") or {})
    n = splits.get("validation")
    return int(n) if isinstance(n, int | float) and n > 0 else None


def _interval(p, n) -> tuple[float, float] | None:
    if p is None or not n:
        return None
    k = min(max(int(round(p * n)), 0), int(n))
    return wilson_interval(k, int(n))


def scatter_points(rows: list[dict], robust_key: str | None, clean_ns: dict[str, int | None]) -> list[dict]:
    """One point per run with both numbers: x/y, their Wilson intervals, n of each, the robust split."""
    col = robust_column(robust_key)
    pts = []
    for r in rows:
        x, y = r.get("clean_accuracy"), r.get(col)
        if x is None or y is None:
            continue
        key = robust_key or r.get("worst_attack")
        ny = r.get(f"attacked_n:{key}") if key else None
        nx = clean_ns.get(r["name"])
        pts.append({"name": r["name"], "method": r.get("method"), "x": float(x), "y": float(y), "nx": nx,
                    "ny": int(ny) if ny else None, "xi": _interval(x, nx), "yi": _interval(y, ny),
                    "split": key.rpartition("/")[2] if key else None, "attack": key})
    return pts


def _label(p: dict) -> str:
    nx = f"{p['nx']:,}" if p["nx"] else "?"
    ny = f"{p['ny']:,}" if p["ny"] else "?"
    return f"{p['name']}<br>n = {nx} val · {ny} {p['split'] or 'attacked'}"


def _box_size(text: str) -> tuple[float, float]:
    lines = text.split("<br>")
    return max(len(t) for t in lines) * CHAR_W + 6, len(lines) * LINE_H + 4


def _overlap(a, b, pad: float = 2.0) -> bool:
    return not (a[2] + pad <= b[0] or b[2] + pad <= a[0] or a[3] + pad <= b[1] or b[3] + pad <= a[1])


def place_labels(pixels: list[tuple[float, float]], sizes: list[tuple[float, float]], width: float,
                 height: float, marker: float = 8.0, obstacles: list[tuple] = ()) -> list[tuple[float, float]]:
    """Offsets (dx, dy) in pixels (y down) of each label's centre from its point, so that no two label boxes
    overlap, no label covers a marker and every label stays inside the plot; other `obstacles` (error bars)
    are avoided where a free spot exists. Greedy, nearest free spot first over rings of candidate positions;
    points are placed from the most crowded out."""
    boxes: list[tuple] = []
    markers = [(px - marker, py - marker, px + marker, py + marker) for px, py in pixels]
    out: list[tuple[float, float] | None] = [None] * len(pixels)

    def crowd(i):
        return sum(math.hypot(pixels[i][0] - q[0], pixels[i][1] - q[1]) < 120 for q in pixels)

    for i in sorted(range(len(pixels)), key=lambda i: (-crowd(i), i)):
        (px, py), (w, h) = pixels[i], sizes[i]
        best = None
        for soft in (list(obstacles), []):  # first try to keep clear of the error bars too
            best = _free_spot(px, py, w, h, width, height, boxes, markers + soft)
            if best:
                break
        out[i] = _settle_spot(best, px, py, w, h, marker, boxes)
    return out  # type: ignore[return-value]


def _free_spot(px, py, w, h, width, height, boxes, blocked):
    for ring in range(1, 12):
        r = 4 + ring * 10
        for k in range(16):
            ang = -math.pi / 2 + k * math.pi / 8  # start straight above, go round
            dx = math.cos(ang) * (r + w / 2)
            dy = math.sin(ang) * (r + h / 2)
            box = (px + dx - w / 2, py + dy - h / 2, px + dx + w / 2, py + dy + h / 2)
            if box[0] < 0 or box[1] < 0 or box[2] > width or box[3] > height:
                continue
            if any(_overlap(box, b) for b in boxes) or any(_overlap(box, m, 0) for m in blocked):
                continue
            return dx, dy, box
    return None


def _settle_spot(best, px, py, w, h, marker, boxes) -> tuple[float, float]:
    if best is None:  # nowhere free (very crowded): straight above the point
        dx, dy = 0.0, -(marker + h / 2 + 4)
        best = (dx, dy, (px + dx - w / 2, py + dy - h / 2, px + dx + w / 2, py + dy + h / 2))
    boxes.append(best[2])
    return best[0], best[1]


def _range(values: list[float], lo_pad: float, hi_pad: float) -> list[float]:
    lo, hi = min(values), max(values)
    span = max(hi - lo, 0.04)
    return [max(0.0, lo - lo_pad * span) if lo >= 0 else lo - lo_pad * span,
            min(1.0, hi + hi_pad * span) if hi <= 1 else hi + hi_pad * span]


def pareto_scatter(rows: list[dict], robust_key: str | None = None,
                   clean_ns: dict[str, int | None] | None = None) -> tuple[go.Figure, list[str]]:
    """(figure, names on the front). Runs without both numbers are left out of the plot."""
    pts = scatter_points(rows, robust_key, clean_ns or {})
    fig = go.Figure()
    if not pts:
        fig.update_layout(title="Clean vs robust accuracy", width=SCATTER_W, height=SCATTER_H)
        return fig, []
    front_idx = pareto_front([(p["x"], p["y"]) for p in pts])
    xs = [v for p in pts for v in ((p["xi"] or (p["x"], p["x"])) + (p["x"],))]
    ys = [v for p in pts for v in ((p["yi"] or (p["y"], p["y"])) + (p["y"],))]
    xr, yr = _range(xs, 0.25, 0.25), _range(ys, 0.3, 0.45)  # room around the data for the labels
    for p in pts:
        err = {}
        if p["xi"]:
            err["error_x"] = {"type": "data", "symmetric": False, "array": [p["xi"][1] - p["x"]],
                              "arrayminus": [p["x"] - p["xi"][0]], "thickness": 1.2, "width": 3}
        if p["yi"]:
            err["error_y"] = {"type": "data", "symmetric": False, "array": [p["yi"][1] - p["y"]],
                              "arrayminus": [p["y"] - p["yi"][0]], "thickness": 1.2, "width": 3}
        colour = colours.run_colour(p["name"])
        hover = (f"{p['name']} ({p['method']})<br>clean %{{x:.3f}} (validation, n = {p['nx'] or '?'})"
                 f"<br>robust %{{y:.3f}} ({p['attack'] or '?'}, n = {p['ny'] or '?'})<extra></extra>")
        fig.add_trace(go.Scatter(x=[p["x"]], y=[p["y"]], mode="markers", name=p["name"], legendgroup=p["name"],
                                 meta=p["name"], hovertemplate=hover,
                                 marker={"size": 13, "color": colour, "symbol": colours.method_symbol(p["method"]),
                                         "line": {"width": 1, "color": "#333"}}, **err))
    if front_idx:
        fig.add_trace(go.Scatter(x=[pts[i]["x"] for i in front_idx], y=[pts[i]["y"] for i in front_idx],
                                 mode="lines", name="Pareto front", hoverinfo="skip",
                                 line={"dash": "dash", "color": "#666", "width": 1.5}))
    # Label placement in the pixel space of the fixed-size plot area.
    pw, ph = SCATTER_W - MARGIN["l"] - MARGIN["r"], SCATTER_H - MARGIN["t"] - MARGIN["b"]
    pix = [((p["x"] - xr[0]) / (xr[1] - xr[0]) * pw, (yr[1] - p["y"]) / (yr[1] - yr[0]) * ph) for p in pts]
    texts = [_label(p) for p in pts]

    def px_x(v):
        return (v - xr[0]) / (xr[1] - xr[0]) * pw

    def px_y(v):
        return (yr[1] - v) / (yr[1] - yr[0]) * ph

    bars = [(px_x(p["xi"][0]), px_y(p["y"]) - 3, px_x(p["xi"][1]), px_y(p["y"]) + 3) for p in pts if p["xi"]]
    bars += [(px_x(p["x"]) - 3, px_y(p["yi"][1]), px_x(p["x"]) + 3, px_y(p["yi"][0])) for p in pts if p["yi"]]
    offsets = place_labels(pix, [_box_size(t) for t in texts], pw, ph, obstacles=bars)
    for p, t, (dx, dy) in zip(pts, texts, offsets, strict=True):
        fig.add_annotation(x=p["x"], y=p["y"], ax=dx, ay=dy, axref="pixel", ayref="pixel", text=t,
                           showarrow=True, arrowhead=0, arrowwidth=0.8, arrowcolor="#999", standoff=7,
                           font={"size": FONT_PX, "color": "#222"}, bordercolor=colours.run_colour(p["name"]),
                           borderwidth=1, bgcolor="rgba(255,255,255,0.9)", borderpad=1, name=p["name"])
    splits = sorted({p["split"] for p in pts if p["split"]})
    ylabel = ("worst accuracy under attack" if not robust_key else f"accuracy under {robust_key.split('/')[0]}") + \
        (f" ({', '.join(splits)} split)" if splits else "")
    fig.update_layout(title={"text": "Clean vs robust accuracy (up-right is better) · bars = 95 % Wilson intervals",
                             "font": {"size": 14}},
                      width=SCATTER_W, height=SCATTER_H, margin=MARGIN, showlegend=False,
                      xaxis={"title": {"text": "clean accuracy (best validation score, validation split)"},
                             "range": xr, "zeroline": False},
                      yaxis={"title": {"text": ylabel}, "range": yr, "zeroline": False})
    return fig, [pts[i]["name"] for i in front_idx]


def attack_bars(rows: list[dict], metric: str = "under_attack") -> go.Figure:
    """Grouped bars: one group per attack (recipe/split), one bar per run, in the run's colour."""
    keys = attack_keys(rows)
    titles = {"under_attack": "Accuracy under attack (higher = more robust)",
              "success_rate": "Attack success rate (lower = more robust)",
              "perturbed_pct": "Avg perturbed words % of successful attacks (higher = harder to fool)"}
    fig = go.Figure()
    for r in rows:
        n = [r.get(f"attacked_n:{k}") for k in keys]
        fig.add_trace(go.Bar(name=r["name"], x=keys, y=[r.get(f"{metric}:{k}") for k in keys],
                             marker_color=colours.run_colour(r["name"]), meta=r["name"], customdata=n,
                             hovertemplate=r["name"] + "<br>%{x}: %{y:.3f} (n = %{customdata})<extra></extra>"))
    fig.update_layout(barmode="group", title=titles.get(metric, metric), height=380,
                      margin={"l": 10, "r": 10, "t": 50, "b": 10}, legend={"orientation": "h", "y": -0.25})
    return fig


CURVES = [charts.Panel("Validation accuracy", "eval", ["accuracy"], "accuracy", smooth=False),
          charts.Panel("Training loss (total)", "train", ["loss"], "loss")]


def curve_figures(runs: list, method: str = "EMA (bias-corrected)", weight: float = 0.9) -> list:
    """Training curves of several runs overlaid (validation accuracy, total loss), one colour per run."""
    series = []
    for run in runs:
        s = charts.RunSeries(run)
        s.update()
        series.append(s)
    out = []
    for panel in CURVES:
        fig = charts.panel_figure(panel, series, method, weight)
        if fig is not None:
            out.append((panel.title, fig))
    return out
