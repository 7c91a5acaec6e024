"""Charts for the Compare page (no Streamlit import): clean-vs-robust scatter with the Pareto front,
grouped bars of accuracy under each attack."""

from __future__ import annotations

import plotly.graph_objects as go

from uegr.compare import attack_keys, pareto_front

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf"]


def method_colours(rows: list[dict]) -> dict[str, str]:
    methods = sorted({str(r.get("method")) for r in rows})
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(methods)}


def robust_column(key: str | None) -> str:
    """'robust_accuracy' (worst over attacks) or one attack's accuracy-under-attack column."""
    return "robust_accuracy" if not key else f"under_attack:{key}"


def pareto_scatter(rows: list[dict], robust_key: str | None = None) -> tuple[go.Figure, list[str]]:
    """(figure, names on the front). Runs without both numbers are left out of the plot."""
    col = robust_column(robust_key)
    pts = [(r.get("clean_accuracy"), r.get(col)) for r in rows]
    front = pareto_front(pts)
    colours = method_colours(rows)
    fig = go.Figure()
    shown = [(r, p) for r, p in zip(rows, pts, strict=True) if p[0] is not None and p[1] is not None]
    for method in sorted({str(r.get("method")) for r, _ in shown}):
        sel = [(r, p) for r, p in shown if str(r.get("method")) == method]
        fig.add_trace(go.Scatter(
            x=[p[0] for _, p in sel], y=[p[1] for _, p in sel], mode="markers+text", name=method,
            text=[r["name"] for r, _ in sel], textposition="top center",
            marker={"size": 13, "color": colours[method], "line": {"width": 1, "color": "#333"}},
            hovertemplate="%{text}<br>clean %{x:.3f}<br>robust %{y:.3f}<extra>" + method + "</extra>"))
    if front:
        fx = [pts[i][0] for i in front]
        fy = [pts[i][1] for i in front]
        fig.add_trace(go.Scatter(x=fx, y=fy, mode="lines", name="Pareto front", line={"dash": "dash", "color": "#444",
                                                                                      "width": 2}, hoverinfo="skip"))
    label = "worst accuracy under attack" if not robust_key else f"accuracy under {robust_key}"
    fig.update_layout(title="Clean vs robust accuracy (up-right is better)", height=430,
                      xaxis_title="clean accuracy (best validation)", yaxis_title=label,
                      margin={"l": 10, "r": 10, "t": 50, "b": 10}, legend={"orientation": "h", "y": -0.2},
                      xaxis={"range": [-0.02, 1.05]}, yaxis={"range": [-0.02, 1.08]})
    return fig, [rows[i]["name"] for i in front]


def attack_bars(rows: list[dict], metric: str = "under_attack") -> go.Figure:
    """Grouped bars: one group per attack (recipe/split), one bar per run."""
    keys = attack_keys(rows)
    titles = {"under_attack": "Accuracy under attack (higher = more robust)",
              "success_rate": "Attack success rate (lower = more robust)",
              "perturbed_pct": "Avg perturbed words % of successful attacks (higher = harder to fool)"}
    fig = go.Figure()
    for i, r in enumerate(rows):
        fig.add_trace(go.Bar(name=r["name"], x=keys, y=[r.get(f"{metric}:{k}") for k in keys],
                             marker_color=PALETTE[i % len(PALETTE)],
                             hovertemplate=r["name"] + "<br>%{x}: %{y:.3f}<extra></extra>"))
    fig.update_layout(barmode="group", title=titles.get(metric, metric), height=380,
                      margin={"l": 10, "r": 10, "t": 50, "b": 10}, legend={"orientation": "h", "y": -0.25})
    return fig
