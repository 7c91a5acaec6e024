"""Compare: runs side by side — knobs, clean and robust accuracy, Pareto front, attacks, landscape, predictions."""

from __future__ import annotations

import streamlit as st

from app import attack_view as av
from app import common, terms
from app import compare_view as cv
from uegr.compare import (
    BASE_COLUMNS,
    attack_keys,
    comparison_table,
    paired_attack_differences,
    to_csv,
    to_markdown,
)
from uegr.models import ModelLoadError
from uegr.report import build_report

st.title("Compare runs")
terms.line("eps-sharpness", "keep-ratio", "adversarial-perturbation")  # glossary links
st.caption("One row per run, read from its folder: the method's knobs, clean accuracy (best validation "
           "score), accuracy under every saved attack (Attack lab or `uegr attack`), landscape probes "
           "(`uegr landscape`) and training time. Empty cells: that analysis has not been run.")

store = common.store()
runs = store.list()
if not runs:
    st.info(f"No runs in `{store.root}` yet: train some on the Train page.")
    st.stop()
by_name = {r.name: r for r in runs}
chosen = st.multiselect("Runs", list(by_name), key="cmp_runs",  # the Sweep page may preselect them
                        default=None if "cmp_runs" in st.session_state else list(by_name)[:6])
if not chosen:
    st.info("Choose at least one run.")
    st.stop()

rows = comparison_table([by_name[n] for n in chosen])
keys = attack_keys(rows)
pct_cols = {c: st.column_config.NumberColumn(format="%.3f") for c in rows[0]
            if c in ("clean_accuracy", "robust_accuracy") or c.startswith(("under_attack:", "success_rate:"))}
st.dataframe(rows, hide_index=True, width="stretch", column_config=pct_cols)
d1, d2, _ = st.columns([1, 1, 3])
d1.download_button("Download CSV", to_csv(rows), file_name="uegr-comparison.csv", mime="text/csv",
                   icon=":material/download:", key="cmp_csv")
d2.download_button("Download Markdown", to_markdown(rows), file_name="uegr-comparison.md", mime="text/markdown",
                   icon=":material/download:", key="cmp_md")
st.download_button("Download HTML report", lambda: build_report([by_name[n] for n in chosen]),
                   file_name="uegr-report.html", mime="text/html", icon=":material/description:", key="cmp_report",
                   help="These runs in one self-contained file that opens offline: this table with intervals, paired "
                        "differences, and each run's curves, saliency, landscape and attacks (`uegr report`).")

# ------------------------------------------------------------------ clean vs robust
st.header("Clean vs robust", divider="gray")
if not keys:
    st.info("None of these runs has a saved attack yet: run one under *Attack a slice of the data* on the "
            "Attack lab page (or `uegr attack RUN`), then come back.")
else:
    c1, c2 = st.columns([3, 1])
    with c2:
        robust_key = st.selectbox("Robust accuracy from", [None, *keys], key="cmp_robust",
                                  format_func=lambda k: "worst over attacks" if k is None else k)
        metric = st.radio("Bars", ["under_attack", "success_rate", "perturbed_pct"], key="cmp_bar_metric",
                          format_func={"under_attack": "accuracy under attack", "success_rate": "attack success rate",
                                       "perturbed_pct": "perturbed words %"}.get)
    fig, front = cv.pareto_scatter(rows, robust_key, {n: cv.clean_n(by_name[n]) for n in chosen})
    with c1:
        st.plotly_chart(fig, key="cmp_scatter", width="content", config={"displaylogo": False})
    c2.caption("On the Pareto front: " + (", ".join(front) if front else "-"))
    c2.caption("Each run keeps its colour on every page; the marker's shape is its method (circle UEGR, square "
               "vanilla, diamond R-Drop, triangle FreeLB, cross CHILD-TUNING_D, star RoAST). Clean accuracy is "
               "the best validation score; robust accuracy comes from the attacked split named on the axis, "
               "usually far fewer sentences — hence its wider interval.")
    with c2:
        common.provenance_row([
            ("paper", "UEGR: better clean and robust accuracy",
             "The abstract claims UEGR improves both clean and robust accuracy."),
            ("not reproduced", "on SST-2 here", "docs/results.md (SST-2, 3 seeds, 500 attacked sentences per run): "
                                               "UEGR is not distinguishable from vanilla fine-tuning.")])
    st.plotly_chart(cv.attack_bars(rows, metric), key="cmp_bars")
    st.caption("Attack metrics follow TextAttack: accuracy under attack = failed / N; success rate = successful / "
               "(successful + failed); N may differ between runs — see the attacked_n columns.")

    if len(chosen) >= 2:
        st.subheader("Paired on the same sentences")
        reference = st.selectbox("Reference run", chosen, key="cmp_reference")
        paired = [{"run": n, "reference": reference, **row} for n in chosen if n != reference
                  for row in paired_attack_differences(by_name[n], by_name[reference])]
        if paired:
            st.dataframe(paired, hide_index=True, width="stretch",
                         column_config={c: st.column_config.NumberColumn(format="%.3f" if c in ("a", "b") else "%+.3f")
                                        for c in ("a", "b", "difference", "low", "high")})
            st.caption("a, b: accuracy under attack of the run and of the reference on the sentences both were "
                       "attacked on (`shared`); difference = a − b with its 95 % bootstrap interval over those "
                       "sentences. An interval that contains 0 does not tell the two runs apart. Pairing removes "
                       "each sentence's own difficulty, so it is much sharper than comparing the two accuracies.")
        else:
            st.info("No attack was run on both the reference and another chosen run.")

# ------------------------------------------------------------------ training curves
st.header("Training curves", divider="gray")
curves = cv.curve_figures([by_name[n] for n in chosen])
if curves:
    cc = st.columns(len(curves))
    for col, (title, fig) in zip(cc, curves, strict=True):
        col.plotly_chart(fig, key="cmp_curve_" + title.split(" ")[0].lower(), config={"displaylogo": False})
    st.caption("Validation accuracy as recorded; training loss smoothed (EMA 0.9, faint = raw). Same run colours "
               "as above and on Live.")
else:
    st.caption("No metrics logged yet.")

lands = [r for r in rows if any(r.get(c) is not None for c in BASE_COLUMNS if c.startswith(("hessian", "sharpness")))]
if lands:
    st.header("Flatness", divider="gray")
    st.dataframe([{k: r.get(k) for k in ("name", "method", "hessian_top_eigenvalue", "hessian_trace",
                                         "sharpness_sam", "sharpness_eps")} for r in lands],
                 hide_index=True, width="stretch")
    st.caption("Smaller top eigenvalue / trace / sharpness = flatter minimum.")

# ------------------------------------------------------------------ predictions on a sentence
st.header("Predictions on a sentence", divider="gray")
sentence = st.text_input("Sentence", key="cmp_sentence", placeholder="Type a sentence to see every model's prediction")
if sentence.strip():
    from uegr.models import predict_proba

    preds = []
    for n in chosen:
        run = by_name[n]
        try:
            model, tok = av.load(run.best_checkpoint())
        except (ModelLoadError, ValueError, OSError) as exc:
            preds.append({"run": n, "prediction": f"({exc})"})
            continue
        probs = predict_proba(model, tok, [sentence.strip()])[0].tolist()
        names = av.label_names(model) or [str(i) for i in range(len(probs))]
        top = max(range(len(probs)), key=probs.__getitem__)
        preds.append({"run": n, "method": rows[chosen.index(n)]["method"], "prediction": names[top],
                      "confidence": probs[top], **{f"p({names[i]})": p for i, p in enumerate(probs)}})
    cols = st.columns(min(len(preds), 4))
    for i, p in enumerate(preds):
        cols[i % len(cols)].metric(p["run"], p["prediction"],
                                   f"{p['confidence']:.1%}" if "confidence" in p else None, delta_color="off")
    st.dataframe(preds, hide_index=True, width="stretch")
elif "cmp_sentence" in st.session_state and st.session_state["cmp_sentence"] != "":
    st.warning("The sentence is empty.")
