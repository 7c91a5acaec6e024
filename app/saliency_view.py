"""Helpers for the Saliency page: cached readers of snapshots / weight change, grids and heatmaps."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from uegr.runs import Run

# Weight matrices first, in the order a block computes them; then biases and LayerNorms.
MATRICES = ["query", "key", "value", "attn_out", "ffn_in", "ffn_out"]
OTHERS = [f"{k}_bias" for k in MATRICES] + ["attn_ln", "ffn_ln"]
METRICS = {
    "kept fraction": ("kept_fraction", "fraction of the matrix's elements the mask lets update"),
    "saliency mass": ("saliency_mass", "share of all saliency (summed over eligible tensors) in this matrix"),
    "mean saliency (log10)": ("saliency_mean", "log10 of the mean per-element saliency"),
}
NO_SNAPSHOT_TEXT = {
    "no_mask": "this run has no saliency snapshots: it used a method without selective update ({method}).",
    "disabled": "this run has no saliency snapshots: `runtime.snapshot_saliency` was off.",
    "not_yet": "this run has no saliency snapshots yet: the first mask refresh has not happened "
               "(state: {state}, step {step}).",
}


def kind_order(kinds: set[str], include_others: bool) -> list[str]:
    order = [k for k in MATRICES if k in kinds]
    if include_others:
        order += [k for k in OTHERS if k in kinds] + sorted(kinds - set(MATRICES) - set(OTHERS))
    return order


def grid(rows: list[dict], key: str, kinds: list[str], log: bool = False) -> tuple[np.ndarray, list[int]]:
    """layers x kinds matrix of rows[key] (NaN where a layer has no such tensor)."""
    layers = sorted({r["layer"] for r in rows if r.get("layer") is not None})
    z = np.full((len(layers), len(kinds)), np.nan)
    for r in rows:
        if r.get("layer") is None or r["kind"] not in kinds:
            continue
        v = r.get(key)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        if log:
            v = math.log10(v) if v > 0 else np.nan
        z[layers.index(r["layer"]), kinds.index(r["kind"])] = v
    return z, layers


def heatmap(z: np.ndarray, x: list, y: list, title: str, colorbar: str, zmin=None, zmax=None,
            colorscale: str = "Viridis", text_fmt: str = ".2f", height: int | None = None) -> go.Figure:
    text = [[("" if np.isnan(v) else format(v, text_fmt)) for v in row] for row in z]
    fig = go.Figure(go.Heatmap(z=z, x=x, y=y, colorscale=colorscale, zmin=zmin, zmax=zmax, text=text,
                               texttemplate="%{text}", colorbar={"title": colorbar},
                               hovertemplate="%{y} · %{x}: %{z:.4g}<extra></extra>"))
    fig.update_layout(title=title, height=height or max(260, 60 + 42 * len(y)), margin={"l": 10, "r": 10, "t": 50, "b": 10},
                      yaxis={"autorange": "reversed", "type": "category"}, xaxis={"type": "category"})
    return fig


def tile(m: np.ndarray, title: str, colorbar: str, colorscale: str, zmin=None, zmax=None) -> go.Figure:
    fig = go.Figure(go.Heatmap(z=m, colorscale=colorscale, zmin=zmin, zmax=zmax, colorbar={"title": colorbar},
                               hovertemplate="cell row %{y}, col %{x}: %{z:.4g}<extra></extra>"))
    fig.update_layout(title=title, height=380, margin={"l": 10, "r": 10, "t": 50, "b": 10},
                      yaxis={"autorange": "reversed", "scaleanchor": "x"}, xaxis={"constrain": "domain"})
    return fig


def line_chart(series: dict[str, tuple[list, list]], title: str, ytitle: str, yrange=None) -> go.Figure:
    """Per-layer lines in the layer colours shared with the Live page (app.colours); 'all' in black.
    Kept fractions and IoU change only at a mask refresh, so they are drawn as steps."""
    from app import colours

    fig = go.Figure()
    for name, (x, y) in series.items():
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=name, line_shape="hv",
                                 line={"color": colours.layer_colour(None if name == "all" else name),
                                       "width": 2.5 if name == "all" else 1.8}))
    fig.update_layout(title=title, xaxis_title="step", yaxis_title=ytitle, height=340,
                      margin={"l": 10, "r": 10, "t": 50, "b": 10}, yaxis={"range": yrange} if yrange else {})
    return fig


def no_snapshot_reason(run: Run) -> str:
    try:
        cfg = run.config()
    except Exception:  # noqa: BLE001 - an unreadable config still gets a message
        return NO_SNAPSHOT_TEXT["no_mask"].format(method="unknown method")
    if cfg.method.name in ("vanilla", "rdrop", "freelb") or (cfg.method.name == "uegr" and not cfg.method.selective_update):
        what = f"method = {cfg.method.name}" + (", selective_update off" if cfg.method.name == "uegr" else "")
        return NO_SNAPSHOT_TEXT["no_mask"].format(method=what)
    if not cfg.runtime.snapshot_saliency:
        return NO_SNAPSHOT_TEXT["disabled"]
    st_ = run.status()
    return NO_SNAPSHOT_TEXT["not_yet"].format(state=st_.get("state"), step=st_.get("step", 0))


# ------------------------------------------------------------------ cached readers (keyed by mtimes)
def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


@st.cache_data(show_spinner=False, max_entries=64)
def _snapshot(path: str, step: int, mtime: float) -> dict:
    snap = Run(Path(path)).read_snapshot(step, with_maps=True)
    snap["maps"] = {k: v.numpy() for k, v in snap.get("maps", {}).items()}
    return snap


def snapshot(run: Run, step: int) -> dict:
    return _snapshot(str(run.path), step, _mtime(run.saliency_dir / f"step_{step:07d}.json"))


@st.cache_data(show_spinner=False, max_entries=16)
def _iou(path: str, steps: tuple[int, ...]) -> tuple[list[dict], list[dict]]:
    from uegr.weights import iou_summary, mask_iou

    recs = mask_iou(Run(Path(path)))
    return recs, iou_summary(recs)


def iou(run: Run) -> tuple[list[dict], list[dict]]:
    return _iou(str(run.path), tuple(run.snapshot_steps()))


@st.cache_data(show_spinner=False, max_entries=16)
def _weight_change(path: str, mtime: float) -> dict:
    from uegr.weights import run_weight_change

    return run_weight_change(Run(Path(path)))


def weight_change(run: Run) -> dict:
    """Cached per checkpoint file; raises RunError (no checkpoint) or ModelLoadError (base model)."""
    folder = run.best_checkpoint()
    return _weight_change(str(run.path), _mtime(folder / "model.safetensors"))


def kept_over_time(run: Run) -> dict[str, tuple[list, list]]:
    recs = [r for r in run.metrics("train") if "kept_fraction" in r]
    if not recs:
        return {}
    keys = sorted({k for r in recs for k in r if k.startswith("kept_l")}, key=lambda k: int(k[6:]))
    series = {f"layer {k[6:]}": ([r["step"] for r in recs if k in r], [r[k] for r in recs if k in r]) for k in keys}
    series["all"] = ([r["step"] for r in recs], [r["kept_fraction"] for r in recs])
    return series
