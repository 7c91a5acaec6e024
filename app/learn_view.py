"""Helpers for the Learn page: cached model / batch / step, knob defaults, provenance notes and charts."""

from __future__ import annotations

import math
import os

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from uegr.config import MethodConfig

MODELS = {"minilm": "MiniLM (all-MiniLM-L6-v2, pretrained, 6 layers)", "tiny-bert": "tiny BERT (random, 2 layers, fast)"}
# Knob -> default. Defaults follow MethodConfig (this project's defaults), lr a little above the trainer's
# 2e-5 so one step visibly moves weights. Every field of the UEGR method can be set here.
_D = MethodConfig()
KNOBS = {"learn_model": os.environ.get("UEGR_LEARN_MODEL", "minilm"), "learn_batch": 0, "learn_seed": 0,
         "learn_eps": _D.resolved_adv_eps(), "learn_norm": _D.adv_norm, "learn_adv": _D.adv_enabled,
         "learn_adv_steps": _D.adv_steps, "learn_adv_lr": _D.adv_lr, "learn_adv_init": _D.adv_init,
         "learn_k": _D.k, "learn_range": (_D.p_min, _D.p_max), "learn_rule": _D.rate_rule,
         "learn_js_target": _D.js_target, "learn_feedback_step": _D.feedback_step,
         "learn_targets": list(_D.dropout_targets),
         "learn_lambda_adv": _D.lambda_adv, "learn_lambda_js": _D.lambda_js, "learn_js_clean": _D.js_include_clean,
         "learn_saliency": _D.saliency, "learn_saliency_decay": _D.saliency_decay, "learn_keep": _D.keep_ratio,
         "learn_scope": _D.mask_scope, "learn_mask_rule": _D.mask_rule, "learn_b_alpha": _D.bernoulli_alpha,
         "learn_b_beta": _D.bernoulli_beta, "learn_refresh": 5, "learn_warmup": 0,
         "learn_selective": _D.selective_update, "learn_lr": 1e-4, "learn_wd": 0.01, "learn_clip": 1.0,
         "learn_freeze": _D.freeze_moments}
# Knobs that do not change the step (which model and batch are handled separately).
OUTSIDE_STEP = ("learn_model", "learn_batch")
# Intra-op threads for the page's steps (uegr.teach.torch_threads says why 1); 0 = torch's default.
THREADS = int(os.environ.get("UEGR_LEARN_THREADS", "1"))


def threads():
    from uegr.teach import torch_threads

    return torch_threads(THREADS)


def init_knobs() -> dict:
    """Seed session_state with defaults (once) and return the current knob values. Widgets further down the
    page use the same keys, so a change there reruns the script with the new value already here."""
    for k, v in KNOBS.items():
        st.session_state.setdefault(k, v)
    if st.session_state["learn_model"] not in MODELS:
        st.session_state["learn_model"] = "minilm"
    return {k: st.session_state[k] for k in KNOBS}


def method_config(kn: dict) -> MethodConfig:
    lo, hi = kn["learn_range"]
    return MethodConfig(name="uegr", adv_enabled=kn["learn_adv"], adv_norm=kn["learn_norm"], adv_eps=kn["learn_eps"],
                        adv_steps=int(kn["learn_adv_steps"]), adv_lr=float(kn["learn_adv_lr"]),
                        adv_init=float(kn["learn_adv_init"]),
                        k=int(kn["learn_k"]), p_min=float(lo), p_max=float(hi), rate_rule=kn["learn_rule"],
                        js_target=float(kn["learn_js_target"]), feedback_step=float(kn["learn_feedback_step"]),
                        dropout_targets=list(kn["learn_targets"]),
                        lambda_adv=kn["learn_lambda_adv"], lambda_js=kn["learn_lambda_js"],
                        js_include_clean=bool(kn["learn_js_clean"]),
                        selective_update=kn["learn_selective"], saliency=kn["learn_saliency"],
                        saliency_decay=float(kn["learn_saliency_decay"]), keep_ratio=kn["learn_keep"],
                        mask_scope=kn["learn_scope"], mask_rule=kn["learn_mask_rule"],
                        bernoulli_alpha=float(kn["learn_b_alpha"]), bernoulli_beta=float(kn["learn_b_beta"]),
                        refresh_every=int(kn["learn_refresh"]), mask_warmup=int(kn["learn_warmup"]),
                        freeze_moments=kn["learn_freeze"])


def optim_kwargs(kn: dict) -> dict:
    return {"lr": float(kn["learn_lr"]), "weight_decay": float(kn["learn_wd"]), "grad_clip": float(kn["learn_clip"])}


def step_key(kn: dict) -> tuple:
    """Everything the step depends on, hashable (lists as tuples)."""
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in kn.items()))


@st.cache_resource(show_spinner=False)
def model(name: str):
    """Shared across sessions: every step deep-copies it, so it is never trained in place."""
    from uegr.teach import load_learn_model

    return load_learn_model(name)


@st.cache_data(show_spinner=False)
def batch(offset: int) -> tuple[list[str], list[int], list[str]]:
    from uegr.teach import sample_batch

    return sample_batch(8, offset)


@st.cache_data(show_spinner=False)
def play_batches(offset: int) -> list[tuple[list[str], list[int]]]:
    from uegr.teach import sample_batches

    return sample_batches(4, 8, offset)


@st.cache_data(show_spinner=False, max_entries=32)
def step(model_name: str, offset: int, knobs: tuple) -> dict:
    """One real training step (the trainer's), cached by every knob that changes it: a display-only widget,
    or a knob set back to an earlier value, costs nothing."""
    from uegr.teach import walk_step

    kn = dict(knobs)
    m, tok = model(model_name)
    texts, labels, _ = batch(offset)
    with threads():
        return walk_step(m, tok, texts, labels, method_config(kn), int(kn["learn_seed"]), **optim_kwargs(kn))


def changed_knobs(kn: dict, slot: str) -> list[str]:
    """Knob keys that differ from the values last used in `slot` (session state), and remember these."""
    prev = st.session_state.get(slot)
    st.session_state[slot] = dict(kn)
    if prev is None:
        return []
    return [k for k in kn if prev.get(k) != kn[k]]


# ---------------------------------------------------------------------------------------------- play
def new_player(kn: dict):
    from uegr.teach import Player

    m, tok = model(kn["learn_model"])
    with threads():
        return Player(m, tok, play_batches(int(kn["learn_batch"])), method_config(kn), int(kn["learn_seed"]),
                      **optim_kwargs(kn))


def play_figures(history: list[dict]) -> dict[str, go.Figure]:
    """Losses, dropout rates, kept fraction / mask IoU over the steps, and the latest saliency and mask maps."""
    from app import saliency_view as sv

    x = [r["step"] for r in history]
    margin = {"l": 10, "r": 10, "t": 50, "b": 10}
    figs: dict[str, go.Figure] = {}
    f = go.Figure()
    for key, name in (("loss", "total"), ("clean", "L_clean"), ("adv", "L_adv"), ("js", "L_JS")):
        if any(r.get(key) is not None for r in history):
            f.add_trace(go.Scatter(x=x, y=[r.get(key) for r in history], name=name, mode="lines+markers"))
    f.update_layout(title="losses per step (training mode)", height=300, margin=margin, xaxis_title="step",
                    legend={"orientation": "h", "y": -0.3})
    figs["losses"] = f
    f = go.Figure()
    k = max((len(r["rates"]) for r in history), default=0)
    for i in range(k):
        f.add_trace(go.Scatter(x=x, y=[r["rates"][i] if i < len(r["rates"]) else None for r in history],
                               name=f"sub-model {i + 1}", mode="lines+markers"))
    f.update_layout(title="dropout rate of each sub-model", height=300, margin=margin, xaxis_title="step",
                    yaxis_title="p", legend={"orientation": "h", "y": -0.3})
    figs["rates"] = f
    f = go.Figure()
    f.add_trace(go.Scatter(x=x, y=[r["kept_fraction"] for r in history], name="kept fraction", mode="lines+markers"))
    f.add_trace(go.Scatter(x=x, y=[r["mask_iou"] for r in history], name="IoU with the previous mask",
                           mode="markers", marker={"size": 10, "symbol": "diamond"}))
    f.update_layout(title="the mask over the steps", height=300, margin=margin, xaxis_title="step",
                    yaxis={"range": [0, 1.05]}, legend={"orientation": "h", "y": -0.3})
    figs["mask_line"] = f
    last = history[-1] if history else None
    if last and last["matrices"]:
        kinds = sv.kind_order({r["kind"] for r in last["matrices"]}, False)
        rows = [r for r in last["matrices"] if r["layer"] is not None]
        for key, title, bar, scale, zmax in (("saliency_mass", f"saliency share per matrix, step {last['step']}",
                                              "share", "Viridis", None),
                                             ("kept_fraction", f"kept fraction per matrix, step {last['step']}",
                                              "kept", None, 1)):
            z, layers = sv.grid(rows, key, kinds)
            kw = {"colorscale": scale} if scale else {}
            figs[key] = sv.heatmap(z, kinds, [f"layer {li}" for li in layers], title, bar, zmin=0, zmax=zmax, **kw)
    return figs


# ---------------------------------------------------------------------------------------------- ladder
def ladder_figures(rows: list[dict]) -> dict[str, go.Figure]:
    names = [r["rung"] for r in rows]
    margin = {"l": 10, "r": 10, "t": 50, "b": 10}
    loss = go.Figure([go.Bar(x=names, y=[r["clean"] for r in rows], name="L_clean"),
                      go.Bar(x=names, y=[r["adv_term"] for r in rows], name="λ_adv·L_adv"),
                      go.Bar(x=names, y=[r["js_term"] for r in rows], name="λ_js·L_JS")])
    loss.update_layout(barmode="stack", title="what each rung adds to the loss", height=320, margin=margin,
                       legend={"orientation": "h", "y": -0.25})
    cos = go.Figure([go.Bar(x=names, y=[r["grad_cos_vanilla"] for r in rows], name="gradient"),
                     go.Bar(x=names, y=[r["update_cos_vanilla"] for r in rows], name="update Δθ")])
    cos.update_layout(barmode="group", title="cosine with vanilla's", height=320, margin=margin,
                      yaxis={"range": [min(0.0, *[r["grad_cos_vanilla"] for r in rows]) - 0.05, 1.05]},
                      legend={"orientation": "h", "y": -0.25})
    moved = go.Figure(go.Bar(x=names, y=[r["moved_fraction"] for r in rows], text=[f"{r['moved_fraction']:.1%}"
                                                                                   for r in rows],
                             textposition="outside", marker_color="#2e7d32"))
    moved.update_layout(title="fraction of weights the step moves", height=320, margin=margin,
                        yaxis={"range": [0, 1.15], "tickformat": ".0%"})
    return {"loss": loss, "cos": cos, "moved": moved}


def provenance(paper: str, project: str) -> None:
    c1, c2 = st.columns(2)
    c1.markdown(f":blue-badge[The paper's words (abstract)] {paper}")
    c2.markdown(f":orange-badge[This project's default] {project}")


def short(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def true_prob(probs: list[list[float]], labels: list[int]) -> list[float]:
    return [p[y] for p, y in zip(probs, labels)]


def token_heatmap(tokens: list[list[str]], values: list[list[float]], title: str, colorbar: str) -> go.Figure:
    width = max(len(t) for t in tokens)
    z = np.full((len(tokens), width), np.nan)
    text = [[""] * width for _ in tokens]
    for i, (toks, vals) in enumerate(zip(tokens, values)):
        z[i, : len(vals)] = vals
        for j, t in enumerate(toks):
            text[i][j] = t
    fig = go.Figure(go.Heatmap(z=z, text=text, texttemplate="%{text}", textfont={"size": 10}, colorscale="YlOrRd",
                               colorbar={"title": colorbar}, y=[f"#{i}" for i in range(len(tokens))],
                               hovertemplate="sentence %{y}, token %{x} '%{text}': %{z:.3g}<extra></extra>"))
    fig.update_layout(title=title, height=70 + 34 * len(tokens), margin={"l": 10, "r": 10, "t": 50, "b": 10},
                      yaxis={"autorange": "reversed"}, xaxis={"title": "token position"})
    return fig


def prob_bars(groups: dict[str, list[float]], title: str, yrange=(0, 1)) -> go.Figure:
    fig = go.Figure()
    for name, ys in groups.items():
        fig.add_trace(go.Bar(name=name, x=[f"#{i}" for i in range(len(ys))], y=ys))
    fig.add_hline(y=0.5, line_dash="dot", line_color="gray")
    fig.update_layout(title=title, barmode="group", height=330, yaxis={"range": list(yrange), "title": "P(true label)"},
                      margin={"l": 10, "r": 10, "t": 50, "b": 10}, legend={"orientation": "h", "y": -0.2})
    return fig


def loss_bars(losses: dict) -> go.Figure:
    la, lj = losses["lambda_adv"], losses["lambda_js"]
    names = ["L_clean", f"λ_adv·L_adv ({la:g}×)", f"λ_js·L_JS ({lj:g}×)", "total"]
    vals = [losses["clean"], la * losses["adv"], lj * losses["js"], losses["total"]]
    fig = go.Figure(go.Waterfall(x=names, y=vals[:3] + [0], measure=["relative"] * 3 + ["total"],
                                 text=[f"{v:.4f}" for v in vals], textposition="outside"))
    fig.update_layout(title="the step's loss, term by term", height=330, margin={"l": 10, "r": 10, "t": 50, "b": 10},
                      yaxis={"range": [0, max(vals) * 1.25 + 1e-9]})
    return fig


def saliency_hist(sal: dict) -> go.Figure:
    edges = sal["hist_edges"]
    mids = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
    fig = go.Figure([go.Bar(x=mids, y=sal["hist_frozen"], name="frozen (masked out)", marker_color="#9aa5b1"),
                     go.Bar(x=mids, y=sal["hist_kept"], name="kept (updated)", marker_color="#2e7d32")])
    if sal.get("threshold_log10") is not None:
        fig.add_vline(x=sal["threshold_log10"], line_dash="dash", annotation_text="keep threshold")
    fig.update_layout(barmode="stack", title=f"saliency of every eligible weight ({sal['kind']}), log10 scale",
                      xaxis_title="log10 saliency", yaxis_title="weights", height=340, bargap=0,
                      margin={"l": 10, "r": 10, "t": 50, "b": 10}, legend={"orientation": "h", "y": -0.25})
    return fig


def short_name(name: str) -> str:
    """'bert.embeddings.word_embeddings.weight' -> 'embeddings.word_embeddings.weight'; head names unchanged."""
    first, _, rest = name.partition(".")
    return rest if rest and rest.split(".")[0] in ("embeddings", "pooler", "encoder") else name


def fmt_sci(x: float) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2e}"


def run_ladder(kn: dict, progress=None) -> list[dict]:
    from uegr.teach import ladder

    m, tok = model(kn["learn_model"])
    texts, labels, _ = batch(int(kn["learn_batch"]))
    with threads():
        return ladder(m, tok, texts, labels, method_config(kn), int(kn["learn_seed"]), progress=progress,
                      **optim_kwargs(kn))
