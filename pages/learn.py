"""Learn: the method's real training step opened up, played over N steps, and taken apart rung by rung.

Three tabs, each a fragment, so a knob change reruns only its own tab: one step section by section, "play N
steps" (the trainer's step on a fixed batch set, animated), and the ablation ladder.
"""

from __future__ import annotations

import math
import time

import pandas as pd
import streamlit as st

from app import learn_view as lv
from app import saliency_view as sv
from app import terms
from uegr.models import ModelLoadError

st.title("Learn: the UEGR step, opened up")
st.markdown(
    "Below, **real training steps** of UEGR run on short movie-review snippets from the built-in data, through "
    "the trainer's own step (`Trainer.train_step`: `UEGR.step`, the `SelectiveUpdater`, clipping, AdamW) on a "
    "copy of the model. **One step** opens a single step section by section; **Play** runs N steps and "
    "animates the losses, dropout rates, saliency and mask; the **ablation ladder** adds the method's parts "
    "one at a time. Only the paper's **abstract** is available: it names the two stages (a forward stage with "
    "adversarial inputs and adaptive dropout, a backward stage that updates parameters selectively), says the "
    "number of dropout passes and the dropout range were ablated, and claims the forward stage acts as gradient "
    "regularisation and the selective update flattens the loss landscape. Everything concrete here is this "
    "project's reconstruction from RoAST, R-Drop, CHILD-TUNING, ROSE and FreeLB, and each section says which "
    "is which.")
terms.line("adversarial-perturbation", "linf-per-token", "sub-models", "js-divergence", "fisher-saliency",
           "keep-ratio", "mask-iou", "freeze-moments", "ffn_in")

kn = lv.init_knobs()
top = st.columns([3, 1, 1])
top[0].selectbox("Model", list(lv.MODELS), format_func=lv.MODELS.get, key="learn_model")
top[1].number_input("Batch", 0, 50, step=1, key="learn_batch", help="another 8 sentences (Play: 4 batches of 8)")
top[2].number_input("Seed", 0, 10_000, step=1, key="learn_seed", help="dropout noise and rates")
try:
    lv.model(st.session_state["learn_model"])
except ModelLoadError as exc:
    st.error(f"The model could not be loaded: {exc}")
    st.stop()

tab_step, tab_play, tab_ladder = st.tabs(["One step, opened up", "Play N steps", "Ablation ladder"])


@st.fragment
def one_step() -> None:
    """Sections 1-6. A knob here reruns only this fragment; the step itself is cached by every knob."""
    kn = lv.init_knobs()
    changed = [k for k in lv.changed_knobs(kn, "learn_step_seen") if k not in lv.OUTSIDE_STEP]
    if changed:
        st.toast("Recomputing the step: " + ", ".join(k.removeprefix("learn_") for k in changed) + " changed",
                 icon=":material/hourglass_top:")
    t0 = time.perf_counter()
    try:
        with st.spinner("Running one training step..."):
            r = lv.step(kn["learn_model"], int(kn["learn_batch"]), lv.step_key(kn))
    except ValueError as exc:  # e.g. a knob combination the method rejects
        st.error(f"This combination of knobs does not run: {exc}")
        return
    wall = time.perf_counter() - t0
    n = st.session_state["learn_step_runs"] = st.session_state.get("learn_step_runs", 0) + 1
    if changed:
        st.toast(f"Step ready in {wall:.1f} s", icon=":material/check_circle:")
    labels, names = r["labels"], r["label_names"]
    st.caption(f"Step time: {r['step_seconds']:.2f} s (the trainer's step: UEGR step + mask + optimizer), "
               f"{r['total_seconds']:.2f} s with the probes and reports on this page. Cached: the same knobs show "
               f"the stored result at once. View #{n}" + (f", after {', '.join(k.removeprefix('learn_') for k in changed)} "
                                                          f"changed: {wall:.1f} s." if changed else "."))
    K, js_clean = int(kn["learn_k"]), bool(kn["learn_js_clean"])

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
    with st.expander("More adversary knobs (steps, step size, random start)"):
        c = st.columns(3)
        c[0].number_input("Ascent steps (adv_steps)", 1, 5, step=1, key="learn_adv_steps",
                          help="1 = the free step from the clean gradient; more = PGD steps of size adv_lr")
        c[1].select_slider("Ascent step size (adv_lr)", [0.01, 0.02, 0.05, 0.1, 0.2, 0.5], key="learn_adv_lr",
                           help="used only when adv_steps > 1")
        c[2].select_slider("Random start (adv_init)", [0.0, 0.01, 0.05, 0.1, 0.5, 1.0], key="learn_adv_init",
                           help="size of a random δ to start from (0 = start at zero)")
    lv.provenance("The forward stage regularises gradients: the model becomes less sensitive to input "
                  "perturbations.",
                  "One free step in the embedding output e: δ = ε·g/‖g‖∞ per token (RoAST), ε = 0.1; l2 per sentence "
                  "with ε = 1.0 as an option (FreeLB); more PGD steps are a config option.")
    pert = r["perturbation"]
    if pert is None:
        st.info("The adversary is off: the sub-models of step 3 see the clean embeddings.")
        st.caption("So the sub-models' L_adv is their plain cross-entropy: only their dropout rates make them differ.")
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
    c[2].radio("Rate rule", ["uniform", "grid", "schedule", "feedback"], horizontal=True, key="learn_rule",
               help="uniform: K rates drawn from the range each step; grid: evenly spaced (schedule and feedback "
                    "rules change over steps: watch them in Play)")
    with st.expander("More dropout knobs (targets, feedback rule)"):
        c = st.columns(3)
        c[0].multiselect("Where the rates apply (dropout_targets)", ["hidden", "attention", "classifier"],
                         key="learn_targets")
        c[1].number_input("Target JS (feedback rule)", 0.0, 1.0, step=0.01, key="learn_js_target", format="%.3f")
        c[2].number_input("Feedback step", 0.0, 0.5, step=0.005, key="learn_feedback_step", format="%.3f")
    lv.provenance("Adaptive dropout over several forward passes; the ablations vary the number of passes and the "
                  "dropout range.",
                  "K = 3, rates drawn uniformly from [0.05, 0.3] every step, applied to hidden, attention and "
                  "classifier dropout (R-Drop's sub-models, generalised to K).")
    st.plotly_chart(lv.prob_bars({"clean pass": lv.true_prob(r["clean_probs"], labels),
                                  **{f"sub-model {i + 1} (p={p:.2f})": lv.true_prob(sp, labels)
                                     for i, (p, sp) in enumerate(zip(r["rates"], r["sub_probs"]))},
                                  "mixture M": lv.true_prob(r["mixture_probs"], labels)},
                                 "each sub-model's probability of the true label"), key="learn_sub_bars")
    if K == 1:
        st.info("K = 1: a single sub-model. It still adds a perturbed, re-dropped pass (L_adv), but there is no "
                "second distribution to compare it with, so L_JS in step 4 is 0 unless the clean pass is included.")

    # ------------------------------------------------------------------ 4
    st.header("4 · Losses", divider="blue")
    st.markdown("**L_adv** is the sub-models' mean cross-entropy on the perturbed batch. **L_JS** is the generalised "
                "Jensen-Shannon divergence among their distributions: 0 when they agree, at most log K. The total "
                "adds both to L_clean.")
    st.latex(r"L = L_{clean} + \lambda_{adv}\,\frac1K\sum_k CE(P_k, y) + \lambda_{js}\,"
             r"\Big[H(M) - \frac1K\sum_k H(P_k)\Big],\quad M = \frac1K\sum_k P_k")
    c = st.columns(3)
    c[0].slider("λ_adv", 0.0, 3.0, step=0.1, key="learn_lambda_adv")
    c[1].slider("λ_js", 0.0, 10.0, step=0.5, key="learn_lambda_js")
    c[2].toggle("Include the clean pass in JS (js_include_clean)", key="learn_js_clean",
                help="the clean pass becomes one more member of the JS: K + 1 distributions. The quick-demo preset "
                     "uses K = 1 with this on, so JS still compares two dropout views.")
    lv.provenance("No loss formula: the abstract does not give one.",
                  "L_clean + λ_adv·L_adv + λ_js·L_JS with λ_adv = λ_js = 1; means over the batch, computed in float32.")
    loss = r["losses"]
    m = st.columns(4)
    m[0].metric("L_clean", f"{loss['clean']:.4f}")
    m[1].metric("L_adv", f"{loss['adv']:.4f}")
    m[2].metric("L_JS", f"{loss['js']:.2e}", help=f"bound log K = {loss['js_bound']:.3f}")
    m[3].metric("total", f"{loss['total']:.4f}")
    st.plotly_chart(lv.loss_bars(loss), key="learn_losses")
    if K == 1 and not js_clean:
        st.info("Why L_JS = 0 here: with K = 1 there is one distribution, and the divergence of one distribution "
                "from itself is 0 (the bound log K = log 1 = 0). Turn on 'Include the clean pass in JS' to compare "
                f"the sub-model with the clean pass. See {terms.link('js-divergence')}.")
    elif js_clean:
        st.caption(f"JS over {loss['js_members']} members: the {K} sub-model(s) and the clean pass "
                   f"(bound log {loss['js_members']} = {loss['js_bound']:.3f}).")
    if kn["learn_lambda_js"] == 0:
        st.caption("λ_js = 0: L_JS is still computed and shown, but adds nothing to the loss or the gradient.")

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
    with st.expander("More mask knobs (EMA decay, Bernoulli rule, refresh schedule)"):
        c = st.columns(3)
        c[0].slider("Saliency EMA decay", 0.0, 0.99, step=0.01, key="learn_saliency_decay",
                    help="one step has no history: this matters in Play")
        c[1].radio("Mask rule", ["topk", "bernoulli"], horizontal=True, key="learn_mask_rule",
                   help="topk: a hard top-keep-ratio mask; bernoulli: keep each weight with a probability that "
                        "rises with its saliency rank (RoAST), gradients rescaled")
        c[2].number_input("Refresh the mask every (steps)", 0, 100, step=1, key="learn_refresh",
                          help="0 = compute it once; matters in Play")
        c = st.columns(3)
        c[0].slider("Bernoulli α (rank of probability 0.5)", 0.0, 1.0, step=0.05, key="learn_b_alpha")
        c[1].number_input("Bernoulli β (sharpness)", 0.0, 100.0, step=1.0, key="learn_b_beta")
        c[2].number_input("Mask warm-up (steps without a mask)", 0, 100, step=1, key="learn_warmup")
    lv.provenance("The backward stage updates parameters selectively; the selective update flattens the loss "
                  "landscape.",
                  "Fisher saliency (EMA of g², decay 0.9), a hard global top-30 % mask refreshed every 50 steps "
                  "(CHILD-TUNING, RoAST). Here the single step's g² is the whole saliency.")
    sal = r["saliency"]
    if sal is None:
        st.info("Selective update is off: every weight is updated (steps 1-4 alone).")
    elif not sal["has_mask"]:
        st.info(f"No mask yet: this single step is step 0, before the mask warm-up ({kn['learn_warmup']} steps), so "
                "every weight is updated; saliency is accumulated. Play shows the mask appear.")
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
    c = st.columns([2, 2, 1, 3])
    c[0].select_slider("Learning rate", [1e-5, 2e-5, 5e-5, 1e-4, 3e-4, 1e-3], key="learn_lr",
                       format_func=lambda v: f"{v:g}")
    c[1].select_slider("Weight decay", [0.0, 0.001, 0.01, 0.05, 0.1], key="learn_wd")
    c[2].number_input("Clip norm", 0.0, 10.0, step=0.5, key="learn_clip", help="0 = no clipping")
    c[3].toggle("Freeze moments (ROSE): frozen weights skip weight decay too", key="learn_freeze")
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

with tab_step:
    one_step()


# ------------------------------------------------------------------ play
def play_body() -> None:
    kn = lv.init_knobs()
    st.markdown("**Play** runs the trainer's own step again and again on a fixed set of 4 batches (8 sentences "
                "each, in turn), from the pretrained weights, with the knobs of the other tab. The optimizer's "
                "moments, the saliency average and the mask carry over from step to step, as in real training; "
                "the mask is refreshed every 'refresh every' steps (tab 1, section 5, default 5 here).")
    c = st.columns([1.2, 1, 1, 1, 3])
    c[0].number_input("Steps to play", 1, 200, value=10, step=1, key="learn_play_n")
    playing = bool(st.session_state.get("learn_playing"))
    play = c[1].button("Play", icon=":material/play_arrow:", key="learn_play", disabled=playing, type="primary")
    pause = c[2].button("Pause", icon=":material/pause:", key="learn_pause", disabled=not playing)
    reset = c[3].button("Reset", icon=":material/restart_alt:", key="learn_reset")
    player = st.session_state.get("learn_player")
    if reset:
        st.session_state.pop("learn_player", None)
        st.session_state["learn_playing"] = False
        st.rerun()  # the whole page: drops the fragment's timer
    if pause:
        st.session_state["learn_playing"] = False
        st.rerun()
    if play:
        if player is None:
            with st.spinner("Building the trainer on a copy of the model..."):
                try:
                    player = lv.new_player(kn)
                except ValueError as exc:
                    st.error(f"This combination of knobs does not run: {exc}")
                    return
            st.session_state["learn_player"] = player
            st.session_state["learn_player_knobs"] = lv.step_key(kn)
        st.session_state["learn_play_target"] = player.steps_done + int(st.session_state["learn_play_n"])
        st.session_state["learn_playing"] = True
        st.rerun()  # the whole page, so the fragment restarts with its timer
    if playing and player is not None:
        if player.steps_done < st.session_state.get("learn_play_target", 0):
            with lv.threads():
                player.step()  # one step per tick: the charts gain one point each time
        if player.steps_done >= st.session_state.get("learn_play_target", 0):
            st.session_state["learn_playing"] = False
            st.rerun()
    if player is None:
        st.info("Press Play to start from the pretrained weights.")
        return
    if st.session_state.get("learn_player_knobs") != lv.step_key(kn):
        st.warning("Knobs changed since this player started: they apply after Reset.")
    hist = player.history
    last = hist[-1] if hist else None
    m = st.columns(5)
    m[0].metric("Steps played", player.steps_done)
    m[1].metric("Loss (total)", f"{last['loss']:.4f}" if last else "–")
    m[2].metric("L_JS", f"{last['js']:.2e}" if last and last.get("js") is not None else "–")
    m[3].metric("Kept fraction", f"{last['kept_fraction']:.1%}" if last and last["kept_fraction"] is not None else "–")
    m[4].metric("Seconds per step", f"{last['seconds']:.2f}" if last else "–")
    figs = lv.play_figures(hist)
    c = st.columns(3)
    c[0].plotly_chart(figs["losses"], key="learn_play_losses")
    c[1].plotly_chart(figs["rates"], key="learn_play_rates")
    c[2].plotly_chart(figs["mask_line"], key="learn_play_mask_line")
    if "saliency_mass" in figs:
        c = st.columns(2)
        c[0].plotly_chart(figs["saliency_mass"], key="learn_play_saliency")
        c[1].plotly_chart(figs["kept_fraction"], key="learn_play_mask")
        st.caption(f"Saliency share: each matrix's part of the total {terms.link('fisher-saliency', 'saliency')}; "
                   f"{terms.link('mask-iou', 'IoU')} shows at each refresh after the first. Layer parts: "
                   f"{terms.link('ffn_in')}, {terms.link('attn_out')}, ...")
    elif hist:
        st.caption("No mask: the selective update is off, or the mask warm-up has not ended.")
    cfg = player.method_cfg
    if cfg.k == 1 and not cfg.js_include_clean:
        st.caption("K = 1 without the clean pass in JS: one distribution, so the L_JS line stays at 0.")
    if not cfg.adv_enabled:
        st.caption("Adversary off: L_adv is the sub-models' plain cross-entropy on clean embeddings.")


with tab_play:
    st.fragment(play_body, run_every=0.25 if st.session_state.get("learn_playing") else None)()


# ------------------------------------------------------------------ ablation ladder
@st.fragment
def ladder_body() -> None:
    kn = lv.init_knobs()
    st.markdown("The **ablation ladder** runs one training step per rung on the same batch, the same weights and "
                "the same seed, each adding one part of the method: **vanilla** fine-tuning → **+ adversary** (one "
                "perturbed pass, K = 1, no JS) → **+ sub-models and JS** (K sub-models) → **+ selective update** "
                "(the full method). Each rung turns its part on whatever the toggles in tab 1 say; every other knob "
                "(ε, K, λs, keep ratio, lr, ...) is yours. Each step is the trainer's own, with a fresh optimizer.")
    key = (kn["learn_model"], int(kn["learn_batch"]), lv.step_key(kn))
    saved = st.session_state.get("learn_ladder")
    if st.button("Run the ladder", icon=":material/stairs:", key="learn_ladder_run", type="primary"):
        bar = st.progress(0.0, text="starting")
        try:
            saved = {"key": key, "rows": lv.run_ladder(kn, lambda i, name: bar.progress(
                i / 4, text=f"rung {i + 1} of 4: {name}"))}
        except ValueError as exc:
            st.error(f"This combination of knobs does not run: {exc}")
            return
        bar.empty()
        st.session_state["learn_ladder"] = saved
    if saved is None:
        st.info("Press 'Run the ladder' (four training steps: a few seconds on MiniLM).")
        return
    if saved["key"] != key:
        st.warning("Knobs changed since the ladder ran: run it again to see their effect.")
    rows = saved["rows"]
    table = pd.DataFrame([{"rung": r["rung"], "loss": r["loss"], "added to the loss": r["loss_added"],
                           "‖g‖ (before clip)": r["grad_norm"], "cos(g, vanilla)": r["grad_cos_vanilla"],
                           "cos(g, previous)": r["grad_cos_previous"], "‖Δθ‖": r["update_norm"],
                           "cos(Δθ, vanilla)": r["update_cos_vanilla"], "weights moved": r["moved_fraction"]}
                          for r in rows])
    st.dataframe(table, hide_index=True, column_config={
        "weights moved": st.column_config.ProgressColumn("weights moved", min_value=0, max_value=1, format="percent"),
        **{k: st.column_config.NumberColumn(k, format="%.4f") for k in table.columns if k not in
           ("rung", "weights moved")}})
    figs = lv.ladder_figures(rows)
    c = st.columns(3)
    c[0].plotly_chart(figs["loss"], key="learn_ladder_loss")
    c[1].plotly_chart(figs["cos"], key="learn_ladder_cos")
    c[2].plotly_chart(figs["moved"], key="learn_ladder_moved")
    k = int(rows[2]["config"]["k"])
    notes = ["The adversary rung adds λ_adv·L_adv: the gradient turns away from vanilla's by the perturbed pass.",
             "Selective update adds nothing to the loss (stage 2 acts on the gradient): it zeroes most encoder "
             f"gradients, so fewer weights move (see {terms.link('keep-ratio')})."]
    if k == 1 and not rows[2]["config"]["js_include_clean"]:
        notes.insert(1, "K = 1: the sub-models rung adds no JS term (one distribution), so it only re-samples the "
                        "dropout rate: its loss and gradient stay close to the adversary rung's.")
    st.markdown("\n".join(f"- {n}" for n in notes))
    st.caption("‖g‖: the gradient the optimizer gets, after masking, before clipping. Weights moved: elements with "
               "a non-zero gradient; on Adam's first step exactly the ones that move (weight decay aside). Even vanilla "
               "moves only part of the model: word-embedding rows of tokens absent from the batch get no gradient "
               "(MiniLM's embedding table is about half its weights). Adam's first step moves every such weight by "
               "about lr (m̂/√v̂ = ±1), so ‖Δθ‖ mostly counts how many weights move; the cosines show the direction.")


with tab_ladder:
    ladder_body()
