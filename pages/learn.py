"""Learn: one real UEGR training step on 8 sentences, opened up section by section."""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from app import learn_view as lv
from app import saliency_view as sv
from uegr.models import ModelLoadError

st.title("Learn: one UEGR step, opened up")
st.markdown(
    "Below, **one real training step** of UEGR runs on 8 short movie-review snippets from the built-in data, "
    "with the same code the trainer uses (`UEGR.step`, `SelectiveUpdater`, AdamW) on a copy of the model. "
    "Change any knob and the step runs again at once. Only the paper's **abstract** is available: it names "
    "the two stages (a forward stage with adversarial inputs and adaptive dropout, a backward stage that "
    "updates parameters selectively), says the number of dropout passes and the dropout range were ablated, "
    "and claims the forward stage acts as gradient regularisation and the selective update flattens the loss "
    "landscape. Everything concrete here is this project's reconstruction from RoAST, R-Drop, CHILD-TUNING, "
    "ROSE and FreeLB, and each section says which is which.")

kn = lv.init_knobs()
top = st.columns([3, 1, 1, 1])
top[0].selectbox("Model", list(lv.MODELS), format_func=lv.MODELS.get, key="learn_model")
top[1].number_input("Batch", 0, 50, step=1, key="learn_batch", help="another 8 sentences")
top[2].number_input("Seed", 0, 10_000, step=1, key="learn_seed", help="dropout noise and rates")
top[3].select_slider("Learning rate", [1e-5, 2e-5, 5e-5, 1e-4, 3e-4, 1e-3], key="learn_lr",
                     format_func=lambda v: f"{v:g}")
kn = lv.init_knobs()

try:
    with st.spinner("Running one UEGR step..."):
        r = lv.step(kn["learn_model"], int(kn["learn_batch"]), tuple(sorted(kn.items())))
except ModelLoadError as exc:
    st.error(f"The model could not be loaded: {exc}")
    st.stop()
except ValueError as exc:  # e.g. a knob combination the method rejects
    st.error(f"This combination of knobs does not run: {exc}")
    st.stop()

labels, names = r["labels"], r["label_names"]
st.caption(f"Step time: {r['step_seconds']:.2f} s (UEGR step + mask + optimizer), {r['total_seconds']:.2f} s with "
           "the probes and reports on this page. Cached: the same knobs show the stored result.")

# ------------------------------------------------------------------ 1
st.header("1 · Clean pass", divider="blue")
st.markdown("The batch goes through the model as in ordinary fine-tuning, with the model's own dropout (0.1). "
            "Its cross-entropy is **L_clean**. Its backward pass also gives, for free, the gradient of the loss "
            "with respect to every token's embedding, which step 2 uses.")
lv.provenance("Only that a step starts with a forward-propagation stage.",
              "A clean pass at the model's own dropout, CE loss, and reuse of its embedding gradient for the "
              "adversary (the 'free' step of FreeLB / RoAST).")
df = pd.DataFrame({"sentence": [lv.short(t, 90) for t in r["texts"]], "label": [names[y] for y in labels],
                   "P(true), this pass": lv.true_prob(r["clean_probs"], labels),
                   "P(true), dropout off": lv.true_prob(r["probs_before_eval"], labels)})
st.dataframe(df, hide_index=True, column_config={c: st.column_config.ProgressColumn(c, min_value=0, max_value=1,
                                                                                    format="%.3f")
                                                 for c in df.columns if c.startswith("P(")})
st.metric("L_clean", f"{r['losses']['clean']:.4f}")

# ------------------------------------------------------------------ 2
st.header("2 · Adversarial perturbation", divider="blue")
st.markdown("The loss gradient tells, for each token, which direction in embedding space hurts the model most. "
            "UEGR moves every token's embedding a small step **ε** that way (δ), keeping padding untouched. The "
            "sub-models of step 3 see these worst-case embeddings, so training makes the model less sensitive "
            "to small input changes.")
c = st.columns(3)
c[0].toggle("Adversary on", key="learn_adv")
c[1].select_slider("ε (perturbation size)", [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0], key="learn_eps")
c[2].radio("Norm", ["linf_token", "l2"], horizontal=True, key="learn_norm",
           help="linf_token: each token's largest coordinate moves by ε (RoAST); l2: the whole sentence's δ has "
                "length ε (FreeLB)")
lv.provenance("The forward stage regularises gradients: the model becomes less sensitive to input "
              "perturbations.",
              "One free step in the embedding output e: δ = ε·g/‖g‖∞ per token (RoAST), ε = 0.1; l2 per sentence "
              "with ε = 1.0 as an option (FreeLB); more PGD steps are a config option.")
pert = r["perturbation"]
if pert is None:
    st.info("The adversary is off: the sub-models of step 3 see the clean embeddings.")
else:
    view = st.radio("Colour tokens by", ["gradient ‖∂L/∂e‖ (sensitivity)", "perturbation ‖δ‖₂"], horizontal=True,
                    key="learn_token_view")
    vals = pert["grad_l2"] if view.startswith("gradient") and "grad_l2" in pert else pert["delta_l2"]
    st.plotly_chart(lv.token_heatmap(r["tokens"], vals, "per token, each row one sentence", view.split(" ")[0]),
                    key="learn_tokens")
    st.plotly_chart(lv.prob_bars({"clean": lv.true_prob(r["probs_before_eval"], labels),
                                  "perturbed": lv.true_prob(r["adv_probs_eval"], labels)},
                                 "what the perturbation alone does (dropout off)"), key="learn_adv_bars")
    st.caption(f"‖δ‖∞ per token = ε = {pert['eps']:g} under linf_token, so the l2 size per token shows how "
               "spread the gradient is over the embedding dimensions. The gradient map shows which tokens the "
               "loss is most sensitive to.")

# ------------------------------------------------------------------ 3
st.header("3 · K sub-models with adaptive dropout", divider="blue")
st.markdown("The same weights run **K** times on the perturbed batch, each time with a different dropout rate: "
            "K slightly different sub-networks. They run as one forward pass over a K-times repeated batch, with "
            "dropout that applies a different rate to each block of rows.")
c = st.columns(3)
c[0].slider("K (sub-models)", 1, 6, key="learn_k")
c[1].slider("Dropout range [p_min, p_max]", 0.0, 0.6, step=0.01, key="learn_range")
c[2].radio("Rate rule", ["uniform", "grid"], horizontal=True, key="learn_rule",
           help="uniform: K rates drawn from the range each step; grid: evenly spaced (schedule and feedback "
                "rules need many steps, see the config)")
lv.provenance("Adaptive dropout over several forward passes; the ablations vary the number of passes and the "
              "dropout range.",
              "K = 3, rates drawn uniformly from [0.05, 0.3] every step, applied to hidden, attention and "
              "classifier dropout (R-Drop's sub-models, generalised to K).")
st.plotly_chart(lv.prob_bars({"clean pass": lv.true_prob(r["clean_probs"], labels),
                              **{f"sub-model {i + 1} (p={p:.2f})": lv.true_prob(sp, labels)
                                 for i, (p, sp) in enumerate(zip(r["rates"], r["sub_probs"]))},
                              "mixture M": lv.true_prob(r["mixture_probs"], labels)},
                             "each sub-model's probability of the true label"), key="learn_sub_bars")

# ------------------------------------------------------------------ 4
st.header("4 · Losses", divider="blue")
st.markdown("**L_adv** is the sub-models' mean cross-entropy on the perturbed batch. **L_JS** is the generalised "
            "Jensen-Shannon divergence among their distributions: 0 when they agree, at most log K. The total "
            "adds both to L_clean.")
st.latex(r"L = L_{clean} + \lambda_{adv}\,\frac1K\sum_k CE(P_k, y) + \lambda_{js}\,"
         r"\Big[H(M) - \frac1K\sum_k H(P_k)\Big],\quad M = \frac1K\sum_k P_k")
c = st.columns(2)
c[0].slider("λ_adv", 0.0, 3.0, step=0.1, key="learn_lambda_adv")
c[1].slider("λ_js", 0.0, 10.0, step=0.5, key="learn_lambda_js")
lv.provenance("No loss formula: the abstract does not give one.",
              "L_clean + λ_adv·L_adv + λ_js·L_JS with λ_adv = λ_js = 1; means over the batch, computed in float32.")
loss = r["losses"]
m = st.columns(4)
m[0].metric("L_clean", f"{loss['clean']:.4f}")
m[1].metric("L_adv", f"{loss['adv']:.4f}")
m[2].metric("L_JS", f"{loss['js']:.2e}", help=f"bound log K = {loss['js_bound']:.3f}")
m[3].metric("total", f"{loss['total']:.4f}")
st.plotly_chart(lv.loss_bars(loss), key="learn_losses")

# ------------------------------------------------------------------ 5
st.header("5 · Saliency and the mask", divider="blue")
st.markdown("Backward through the total loss gives every weight a gradient. Its **saliency** scores how much "
            "that weight matters for this loss; only the top **keep ratio** of encoder weights may change, the "
            "rest are frozen for this step. Embeddings and the classifier head are always updated.")
c = st.columns(4)
c[0].toggle("Selective update", key="learn_selective")
c[1].slider("Keep ratio", 0.05, 1.0, step=0.05, key="learn_keep")
c[2].radio("Saliency", ["fisher", "taylor", "grad"], horizontal=True, key="learn_saliency",
           help="fisher: g² (EMA over steps; one step here); taylor: |θ·g|; grad: |g|")
c[3].radio("Ranking", ["global", "per_tensor"], horizontal=True, key="learn_scope",
           help="global: one ranking across all matrices; per_tensor: keep the same share of each")
lv.provenance("The backward stage updates parameters selectively; the selective update flattens the loss "
              "landscape.",
              "Fisher saliency (EMA of g², decay 0.9), a hard global top-30 % mask refreshed every 50 steps "
              "(CHILD-TUNING, RoAST). Here the single step's g² is the whole saliency.")
sal = r["saliency"]
if sal is None:
    st.info("Selective update is off: every weight is updated (steps 1-4 alone).")
else:
    c1, c2 = st.columns([3, 2])
    if "hist_edges" in sal:
        c1.plotly_chart(lv.saliency_hist(sal), key="learn_hist")
    kinds = sv.kind_order({x["kind"] for x in sal["rows"]}, False)
    z, layers = sv.grid(sal["rows"], "kept_fraction", kinds)
    c2.plotly_chart(sv.heatmap(z, kinds, [f"layer {li}" for li in layers], "kept fraction per matrix", "kept",
                               zmin=0, zmax=1), key="learn_mask")
    sampled = (f" The histogram counts every {sal['hist_stride']}th weight, scaled back."
               if sal.get("hist_stride", 1) > 1 else "")
    st.caption(f"{sal['kept_fraction']:.2%} of {sal['numel']:,} encoder weights kept (keep ratio "
               f"{sal['keep_ratio']:g}, exact); {sal['zeros']:,} had exactly zero saliency and are not in the "
               f"histogram.{sampled}")

# ------------------------------------------------------------------ 6
st.header("6 · The update", divider="blue")
st.markdown("Masked-out gradients are set to zero, gradients are clipped to norm 1, and AdamW takes its step. "
            "A frozen weight still shrinks by weight decay (θ ← θ·(1 − lr·wd)) unless 'freeze moments' is on.")
st.toggle("Freeze moments (ROSE): frozen weights skip weight decay too", key="learn_freeze")
lv.provenance("Parameters are updated selectively.",
              "Zero masked gradients before AdamW (lr 2e-5 in training; the knob above), weight decay 0.01 on "
              "matrices; ROSE's freeze_moments as an option.")
up = r["update"]
rows = up["rows"]
kinds_u = sv.kind_order({x["kind"] for x in rows}, False)
z, layers = sv.grid(rows, "rel_change", kinds_u, log=True)
c1, c2 = st.columns([3, 2])
c1.plotly_chart(sv.heatmap(z, kinds_u, [f"layer {li}" for li in layers], "log10 ‖Δθ‖ / ‖θ‖ per matrix",
                           "log10", colorscale="Viridis"), key="learn_update")
with c2:
    st.metric("Loss on this batch (dropout off)", f"{r['loss_after_eval']:.4f}",
              delta=f"{r['loss_after_eval'] - r['loss_before_eval']:+.2e}", delta_color="inverse")
    st.metric("Gradient norm (before clipping)", f"{r['grad_norm']:.3f}")
    if up["masked"]:
        st.metric("Kept / frozen weights", f"{up['kept_elements']:,} / {up['frozen_elements']:,}")
        note = (f"Frozen weights moved by weight decay only (largest other change "
                f"{up['frozen_max_excess']:.1e}).")
        (st.success if up["frozen_max_excess"] < 1e-6 else st.warning)(note)
outside = [x for x in rows if x["layer"] is None]
if up["masked"]:
    table = pd.DataFrame([{"matrix": x["name"], "kept": x["kept_fraction"], "relative change": x["rel_change"],
                           "mean |Δ| kept": x["mean_abs_change_kept"], "mean |Δ| frozen": x["mean_abs_change_frozen"]}
                          for x in rows if x.get("selective") and x["kind"] in sv.MATRICES])
    st.dataframe(table, hide_index=True, column_config={
        "kept": st.column_config.ProgressColumn("kept", min_value=0, max_value=1, format="%.2f"),
        **{k: st.column_config.NumberColumn(k, format="%.2e") for k in ("relative change", "mean |Δ| kept",
                                                                          "mean |Δ| frozen")}})
    st.caption("On Adam's first step every updated element moves by about lr (m̂/√v̂ = ±1), so how far a matrix "
               "moves mostly says how many of its elements the mask kept.")
st.caption("Always updated (outside the mask), relative change: " + ", ".join(
    f"{lv.short_name(x['name'])} {lv.fmt_sci(x['rel_change'])}" for x in outside
    if not math.isnan(x["rel_change"])) + ".")
