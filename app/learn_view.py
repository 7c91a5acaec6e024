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
# 2e-5 so one step visibly moves weights.
_D = MethodConfig()
KNOBS = {"learn_model": os.environ.get("UEGR_LEARN_MODEL", "minilm"), "learn_batch": 0, "learn_seed": 0,
         "learn_eps": _D.resolved_adv_eps(), "learn_norm": _D.adv_norm, "learn_adv": _D.adv_enabled,
         "learn_k": _D.k, "learn_range": (_D.p_min, _D.p_max), "learn_rule": _D.rate_rule,
         "learn_lambda_adv": _D.lambda_adv, "learn_lambda_js": _D.lambda_js,
         "learn_saliency": _D.saliency, "learn_keep": _D.keep_ratio, "learn_scope": _D.mask_scope,
         "learn_selective": _D.selective_update, "learn_lr": 1e-4, "learn_freeze": _D.freeze_moments}


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
                        k=int(kn["learn_k"]), p_min=float(lo), p_max=float(hi), rate_rule=kn["learn_rule"],
                        lambda_adv=kn["learn_lambda_adv"], lambda_js=kn["learn_lambda_js"],
                        selective_update=kn["learn_selective"], saliency=kn["learn_saliency"],
                        keep_ratio=kn["learn_keep"], mask_scope=kn["learn_scope"], mask_warmup=0,
                        freeze_moments=kn["learn_freeze"])


@st.cache_resource(show_spinner=False)
def model(name: str):
    """Shared across sessions: walk_step deep-copies it, so it is never trained in place."""
    from uegr.teach import load_learn_model

    return load_learn_model(name)


@st.cache_data(show_spinner=False)
def batch(offset: int) -> tuple[list[str], list[int], list[str]]:
    from uegr.teach import sample_batch

    return sample_batch(8, offset)


@st.cache_data(show_spinner=False, max_entries=32)
def step(model_name: str, offset: int, knobs: tuple) -> dict:
    """One real UEGR step, cached by every knob that changes it."""
    from uegr.teach import walk_step

    kn = dict(knobs)
    m, tok = model(model_name)
    texts, labels, _ = batch(offset)
    return walk_step(m, tok, texts, labels, method_config(kn), int(kn["learn_seed"]), lr=float(kn["learn_lr"]))


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
