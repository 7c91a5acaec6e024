"""Saliency: where the selective update lets weights change, how stable the mask is, how far weights moved."""

from __future__ import annotations

import math

import numpy as np
import streamlit as st

from app import common, terms
from app import saliency_view as sv
from uegr.models import ModelLoadError
from uegr.runs import RunError

st.title("Saliency and masks")
terms.line("fisher-saliency", "keep-ratio", "mask-iou", "query", "attn_out", "ffn_in", "ffn_out")  # glossary links
st.caption("Stage 2 of UEGR updates only the most salient weights. The abstract says only that the backward "
           "stage updates parameters selectively by saliency; the saliency (Fisher: EMA of g², decay 0.9), "
           "the global top-30 % mask and its refresh every `refresh_every` steps are this project's defaults, "
           "reconstructed from CHILD-TUNING and RoAST.")

store = common.store()
runs = store.list()
if not runs:
    st.info(f"No runs in `{store.root}` yet: start one on the Train page (a UEGR run records saliency "
            "snapshots at every mask refresh).")
    st.stop()


def _label(r) -> str:
    s = r.summary()
    return f"{s['name']} · {s['method']} · {s['model']} · {s['state']}"


by_name = {r.name: r for r in runs}
with_snaps = [r.name for r in runs if r.snapshot_steps()]
name = st.selectbox("Run", list(by_name), index=list(by_name).index(with_snaps[0]) if with_snaps else 0,
                    format_func=lambda n: _label(by_name[n]), key="sal_run")
run = by_name[name]
steps = run.snapshot_steps()

# ------------------------------------------------------------------ 1. the mask at one refresh
st.header("Mask at a refresh", divider="gray")
if not steps:
    st.info(sv.no_snapshot_reason(run).capitalize() + " Pick a UEGR (or RoAST / CHILD-TUNING) run to see "
            "masks; the weight change below still works for any run with a checkpoint.")
else:
    c1, c2, c3 = st.columns([3, 3, 1.4])
    step = c1.select_slider("Mask refresh (training step)", options=steps, value=steps[-1], key="sal_step")
    metric_label = c2.radio("Colour by", list(sv.METRICS), horizontal=True, key="sal_metric")
    with_others = c3.toggle("Biases, LN", value=False, key="sal_others")
    snap = sv.snapshot(run, step)
    rows = snap["tensors"]
    key, help_text = sv.METRICS[metric_label]
    kinds = sv.kind_order({r["kind"] for r in rows}, with_others)
    z, layers = sv.grid(rows, key, kinds, log=key == "saliency_mean")
    kept = sum(r["kept"] for r in rows)
    total = sum(r["numel"] for r in rows)
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Kept elements (exact)", f"{kept:,}", help="counted from the exact mask at this refresh")
    m2.metric("Eligible elements", f"{total:,}")
    m3.metric("Kept fraction", f"{kept / max(total, 1):.3f}")
    m4.metric("Refreshes recorded", len(steps))
    zrange = {"zmin": 0.0, "zmax": 1.0} if key == "kept_fraction" else {}
    st.plotly_chart(sv.heatmap(z, kinds, [f"layer {li}" for li in layers], f"{metric_label} at step {step}",
                               metric_label, colorscale="Viridis", text_fmt=".2f" if key != "saliency_mass" else ".3f",
                               **zrange), key="sal_heat")
    st.caption(f"Rows: encoder blocks; columns: weight matrices. Colour: {help_text}. Embeddings, pooler, classifier "
               "head and final LayerNorm are always updated and not shown.")

    # ------------------------------------------------------------------ 2. one matrix up close
    st.header("One matrix up close", divider="gray")
    d1, d2 = st.columns(2)
    # Start on the 2-D matrix holding the most saliency (a fully masked-out one shows an empty tile).
    top = max((r for r in rows if f"mask/{r['name']}" in snap["maps"] and r["kind"] in kinds),
              key=lambda r: r["saliency_mass"], default=None)
    layer = d1.selectbox("Layer", layers, index=layers.index(top["layer"]) if top else 0,
                         format_func=lambda li: f"layer {li}", key="sal_tile_layer")
    tile_kinds = [k for k in kinds if any(r["layer"] == layer and r["kind"] == k and
                                          f"mask/{r['name']}" in snap["maps"] for r in rows)]
    if not tile_kinds:
        st.info("No 2-D weight matrix in this layer has a stored map.")
    else:
        best = top["kind"] if top and top["layer"] == layer and top["kind"] in tile_kinds else tile_kinds[0]
        kind = d2.selectbox("Matrix", tile_kinds, index=tile_kinds.index(best), key="sal_tile_kind")
        row = next(r for r in rows if r["layer"] == layer and r["kind"] == kind)
        mask_map = snap["maps"][f"mask/{row['name']}"]
        sal_map = snap["maps"].get(f"saliency/{row['name']}")
        st.markdown(f"`{row['name']}`: **{row['kept']:,} of {row['numel']:,}** elements kept "
                    f"(exact: {row['kept_fraction']:.2%}); saliency share {row['saliency_mass']:.2%}."
                    + (f" Exact IoU with the previous refresh: {row['iou_prev']:.3f}." if "iou_prev" in row else ""))
        t1, t2 = st.columns(2)
        t1.plotly_chart(sv.tile(mask_map, "mask (kept fraction per cell)", "kept", "Greens", 0.0, 1.0),
                        key="sal_tile_mask")
        if sal_map is not None:
            with np.errstate(divide="ignore"):
                log_sal = np.where(sal_map > 0, np.log10(np.maximum(sal_map, 1e-300)), np.nan)
            t2.plotly_chart(sv.tile(log_sal, "saliency (log10 of cell mean)", "log10", "Magma"), key="sal_tile_sal")
        st.caption(f"Downsampled to {mask_map.shape[0]} x {mask_map.shape[1]} cells: each cell shows the mean over a "
                   "block of elements (the kept fraction of that block, not single elements). The counts above are "
                   "exact.")

    # ------------------------------------------------------------------ 3. kept fraction over time
    st.header("Update ratio per layer over time", divider="gray")
    series = sv.kept_over_time(run)
    if series:
        st.plotly_chart(sv.line_chart(series, "kept fraction per layer (from the training metrics)", "kept fraction",
                                      [0, 1]), key="sal_kept_time")
        st.caption("With a global mask (the default) layers compete: a layer far from 30 % gets more or less "
                   "than its share because its gradients are larger or smaller.")
    else:
        st.info("The training metrics hold no kept fractions yet.")

    # ------------------------------------------------------------------ 4. IoU between consecutive masks
    st.header("Mask stability: IoU between consecutive refreshes", divider="gray")
    recs, summary = sv.iou(run)
    if not summary:
        st.info("Needs at least two mask refreshes.")
    else:
        by_layer: dict = {}
        for s in summary:
            label = "all" if s["layer"] == "all" else f"layer {s['layer']}"
            by_layer.setdefault(label, ([], []))
            by_layer[label][0].append(s["step"])
            by_layer[label][1].append(s["iou"])
        st.plotly_chart(sv.line_chart(by_layer, "IoU of kept elements, refresh vs the one before", "IoU", [0, 1.02]),
                        key="sal_iou")
        if all(s["exact"] for s in summary):
            st.caption("Exact: intersection / union of kept elements counted on the full masks when each refresh "
                       "happened (snapshot field `iou_prev`). 1 = the same weights stay trainable; a layer that "
                       "keeps nothing twice counts as 1.")
        else:
            st.warning("Approximate: this run's snapshots predate exact mask overlaps, so IoU is estimated from the "
                       "downsampled mask maps (sum of per-cell minima / sum of per-cell maxima of the kept "
                       "fractions). That is an upper bound of the exact IoU, only over 2-D weight matrices.")

# ------------------------------------------------------------------ 5. weight change from the pretrained weights
st.header("How far weights moved from the pretrained weights", divider="gray")
st.caption("‖θ − θ₀‖ / ‖θ₀‖ per matrix between the run's best checkpoint and the weights it started from (the "
           "base model reloaded by the run's config: model name and seed, so a new classifier head is "
           "re-initialised exactly as in training). Selective update should leave masked-out matrices closer "
           "to θ₀.")
others = [n for n in by_name if n != name]
default_cmp = next((n for n in others if by_name[n].summary()["method"] == "vanilla"), others[0] if others else None)
compare = st.selectbox("Compare with", ["(none)"] + others,
                       index=(others.index(default_cmp) + 1) if default_cmp else 0,
                       format_func=lambda n: n if n == "(none)" else _label(by_name[n]), key="sal_compare")
chosen = [name] + ([compare] if compare != "(none)" else [])
results = {}
for n in chosen:
    try:
        with st.spinner(f"Loading {n}'s checkpoint and its pretrained weights..."):
            results[n] = sv.weight_change(by_name[n])
    except RunError:
        st.info(f"Run {n} has no checkpoint yet (it is written at the first evaluation).")
    except ModelLoadError as exc:
        st.warning(f"Run {n}: the pretrained reference could not be loaded: {exc}")
if results:
    kinds_all = sv.kind_order({r["kind"] for res in results.values() for r in res["rows"]}, False)
    grids = {n: sv.grid(res["rows"], "rel_change", kinds_all, log=True) for n, res in results.items()}
    finite = [v for z, _ in grids.values() for v in z.flatten() if not math.isnan(v)]
    lo, hi = (min(finite), max(finite)) if finite else (None, None)
    cols = st.columns(len(grids))
    for col, (n, (z, layers_w)) in zip(cols, grids.items()):
        method = by_name[n].summary()["method"]
        col.plotly_chart(sv.heatmap(z, kinds_all, [f"layer {li}" for li in layers_w], f"{n} ({method})",
                                    "log10 rel.", zmin=lo, zmax=hi, colorscale="Viridis"), key=f"sal_wc_{n}")
    st.caption("Colour: log10 of the relative change, on one scale for both runs (−3 = 0.1 % of the weight's norm).")
    table = []
    for n, res in results.items():
        outside = [r for r in res["rows"] if r["layer"] is None and not math.isnan(r["rel_change"])]
        inside = [r for r in res["rows"] if r["layer"] is not None and r["kind"] in sv.MATRICES]
        for label, group in (("encoder matrices", inside), ("embeddings + head", outside)):
            dn = math.sqrt(sum(r["delta_norm"] ** 2 for r in group))
            rn = math.sqrt(sum(r["ref_norm"] ** 2 for r in group))
            table.append({"run": n, "method": by_name[n].summary()["method"], "tensors": label,
                          "relative change": dn / rn if rn else float("nan"), "checkpoint": res["checkpoint"]})
    st.dataframe(table, hide_index=True, column_config={"relative change": st.column_config.NumberColumn(format="%.2e")})
