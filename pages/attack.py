"""Attack lab: attack one sentence on several models side by side, explain it, or attack a slice of the data."""

from __future__ import annotations

import math
from pathlib import Path

import streamlit as st

from app import attack_jobs as aj
from app import attack_view as av
from app import common
from app.landscape_view import fmt_s
from uegr import jobs
from uegr.attacks import AttackError
from uegr.models import ModelLoadError
from uegr.runs import RunError

st.title("Attack lab")
st.caption("Adversarial attacks with TextAttack recipes that run offline, explained with Captum's "
           "Integrated Gradients. Models are loaded read-only and cached; nothing here trains or changes them.")
common.provenance_row([
    ("paper", "UEGR is more robust to attacks",
     "The abstract claims better robust accuracy than the baselines on 13 datasets."),
    ("not reproduced", "docs/results.md: not distinguishable from vanilla at this scale — see for yourself below",
     "On SST-2 (500 attacked sentences per run, 3 seeds) UEGR was not distinguishable from vanilla fine-tuning."),
])

store = common.store()
runs = [r for r in store.list() if r.has_checkpoint("best") or r.has_checkpoint("last")]
by_name = {r.name: r for r in runs}
method_of = {r.name: r.summary()["method"] for r in runs}


def _run_label(name: str) -> str:
    return f"{name} · {method_of.get(name, '?')}"


all_recipes = av.recipes()
available = [r for r in all_recipes if r["available"]]
unavailable = [r for r in all_recipes if not r["available"]]
rec_by_name = {r["name"]: r for r in all_recipes}


# One sentence: word swaps over many candidates flip short sentences where one random character edit per
# word (deepwordbug) often runs out of moves after ~13 queries. Datasets: the usual deepwordbug.
SENTENCE_RECIPES = ("textfooler-lite", "pwws", "deepwordbug")


def _recipe_picker(key: str, preferred: tuple[str, ...] = ()) -> str | None:
    if not available:
        st.error("No attack recipe can run here (see the reasons below).")
        return None
    names = [r["name"] for r in available]
    wanted = [st.query_params.get("recipe"), *preferred]  # ?recipe= deep link
    first = next((names.index(n) for n in wanted if n in names), 0)
    name = st.selectbox("Recipe", names, key=key, format_func=lambda n: f"{n} ({rec_by_name[n]['kind']})",
                        index=first, help="Only recipes that run offline on this machine are offered.")
    r = rec_by_name[name]
    st.caption(f"{r['description']}" + (f" — {r['paper']}" if r.get("paper") else ""))
    return name


def _unavailable_note() -> None:
    if unavailable:
        with st.expander(f"{len(unavailable)} recipes unavailable here, and why"):
            for r in unavailable:
                st.markdown(f"- ~~{r['name']}~~ ({r['kind']}): {r['reason']}")


if not runs:
    st.info(f"No trained runs with a checkpoint in `{store.root}` yet. Train one on the Train page; you can "
            "still attack a local Hugging Face classifier folder below.")

# ====================================================================== 1. one sentence
st.header("Attack one sentence", divider="gray")
src = st.radio("Sentence", ["Type a sentence", "Pick one from a run's data"], horizontal=True, key="atk_src",
               disabled=not runs, label_visibility="collapsed")
true_label = None
if src == "Pick one from a run's data" and runs:
    c1, c2, c3 = st.columns([2, 1, 4])
    data_run = by_name[c1.selectbox("Data of run", list(by_name), key="atk_data_run", format_func=_run_label)]
    try:
        run_splits = [s for s in ("validation", "test") if s in av.splits(data_run)]
    except Exception as exc:  # noqa: BLE001 - a data source that cannot load here: explain, do not crash
        st.error(f"Could not load the data of {data_run.name}: {exc}")
        run_splits = []
    if run_splits:
        split = c2.selectbox("Split", run_splits, key="atk_data_split")
        texts, labels, names = av.examples(data_run, split)
        if texts:
            i = c3.selectbox("Example", range(len(texts)), key="atk_data_idx",
                             format_func=lambda k: f"#{k} [{names[labels[k]] if labels[k] < len(names) else labels[k]}]"
                                                   f" {texts[k][:90]}")
            if st.session_state.get("atk_picked") != (data_run.name, split, i):
                st.session_state["atk_picked"] = (data_run.name, split, i)
                st.session_state["atk_text"] = texts[i]
            true_label = labels[i]
            st.caption(f"True label: **{names[true_label] if true_label < len(names) else true_label}** "
                       "(attacked as the label; a model that already gets it wrong is *skipped*).")
text = st.text_area("Sentence to attack", key="atk_text", height=80,
                    placeholder="e.g. a gripping, beautifully acted film that never loses its nerve")
if src == "Type a sentence":
    st.caption("A typed sentence is attacked at each model's own prediction.")

names = list(by_name)
default = [n for n in names if method_of[n] == "vanilla"][:1] + [n for n in names if method_of[n] == "uegr"][:1]
default = default or names[:2]
c1, c2 = st.columns([3, 2])
chosen = c1.multiselect("Models (vanilla = baseline)", names, default=default, key="atk_models",
                        format_func=_run_label)
hf_path = c2.text_input("…or a local Hugging Face classifier folder", key="atk_hf", placeholder="/path/to/model")
c1, c2, c3, c4 = st.columns([2, 1, 1, 1])
with c1:
    recipe = _recipe_picker("atk_recipe", SENTENCE_RECIPES)
budget = c2.number_input("Query budget", 10, 100_000, 2000, step=100, key="atk_budget",
                         help="Model queries allowed per attack; an attack that runs out has failed.")
max_perturb = c3.slider("Max perturbed words", 0.05, 1.0, 1.0, 0.05, key="atk_maxp",
                        help="Fraction of the words the attack may change (1 = no cap). The default is no cap: "
                             "with 0.3, a five-word sentence may change only 2 words and most attacks fail at "
                             "once. Dataset attacks below keep TextAttack's usual 0.3.")
ig_steps = c4.number_input("IG steps", 8, 300, 50, step=8, key="atk_steps",
                           help="Integrated-gradients steps; more steps = smaller convergence delta.")
n_words = len(text.split()) if text else 0
if n_words and max_perturb < 1:
    allowed = max(math.ceil(n_words * max_perturb), 1)
    c3.caption(f"{allowed} of {n_words} words may change")
_unavailable_note()

targets: list[tuple[str, str]] = [(_run_label(n), str(by_name[n].best_checkpoint())) for n in chosen]
if hf_path.strip():
    targets.append((Path(hf_path.strip()).name or hf_path.strip(), hf_path.strip()))

if st.button("Attack", type="primary", icon=":material/bolt:", key="atk_go", disabled=recipe is None):
    if not text or not text.strip():
        st.warning("The sentence is empty: type a sentence (or pick one from a run's data) before attacking.")
    elif not targets:
        st.warning("Choose at least one model (a run, or a classifier folder).")
    else:
        results = []
        with st.status(f"Attacking with {recipe} on {len(targets)} model(s)...", expanded=False) as status:
            for label, path in targets:
                status.update(label=f"{recipe} on {label}...")
                try:
                    if not (Path(path) / "config.json").is_file():
                        raise ModelLoadError(f"{path} is not a model folder (no config.json)")
                    out = av.attack_and_explain(path, text.strip(), true_label, recipe, int(budget),
                                                None if max_perturb >= 1 else float(max_perturb), int(ig_steps))
                    results.append({"model": label, **out})
                except (AttackError, ModelLoadError, RunError, OSError, ValueError) as exc:
                    results.append({"model": label, "error": str(exc)})
            status.update(label=f"{recipe}: done", state="complete")
        st.session_state["atk_results"] = results

results = st.session_state.get("atk_results") or []
if results:
    st.markdown(av.legend_html(), unsafe_allow_html=True)
    cols = st.columns(len(results))
    for col, res in zip(cols, results, strict=True):
        with col:
            st.subheader(res["model"])
            if "error" in res:
                st.error(res["error"])
                continue
            r = res["record"]
            outcome = {"successful": ("attack succeeded", "red"), "failed": ("attack failed", "green"),
                       "skipped": ("skipped: already wrong", "gray")}[r["result"]]
            st.badge(outcome[0], color=outcome[1])
            m1, m2 = st.columns(2)
            m1.metric("Before", f"{r['original_prediction_name']} · {r['original_confidence']:.0%}",
                      help="predicted class and its confidence on the original sentence")
            m2.metric("After", f"{r['perturbed_prediction_name']} · {r['perturbed_confidence']:.0%}",
                      help="predicted class and its confidence on the adversarial sentence")
            st.caption(f"label attacked: {r['label_name']} · {r['num_queries']} queries · {r['seconds']:.2f} s · "
                       f"**{r['words_changed']}/{r['num_words']} words changed**"
                       + (" (best attempt)" if r["result"] == "failed" else ""))
            st.markdown("**Original**")
            st.markdown(av.diff_html(r.get("original_words") or [], "original", r["original_text"]), unsafe_allow_html=True)
            st.markdown("**Adversarial**" if r["result"] == "successful" else "**Best attempt (did not flip the label)**"
                        if r["result"] == "failed" else "**Adversarial (not attacked)**")
            st.markdown(av.diff_html(r.get("perturbed_words") or [], "perturbed", r["perturbed_text"]), unsafe_allow_html=True)
            for title, a in (("Attributions: original", res["attr_orig"]), ("Attributions: adversarial", res["attr_adv"])):
                st.markdown(f"**{title}**")
                st.markdown(av.attribution_html(a["tokens"], a["scores"]), unsafe_allow_html=True)
                st.caption(f"target class **{a['target_label']}** (p = {a['probability']:.3f}) · {a['steps']} steps · "
                           f"convergence delta {a['delta']:.2e} · {a['seconds']:.2f} s")
    st.caption("Integrated Gradients of the probability of the class each model predicted on the original "
               "sentence, for both sentences, so the two rows are comparable. Red words push towards that "
               "class, blue words away from it; colour strength is |attribution| / max.")

# ====================================================================== 2. a slice of the data
st.header("Attack a slice of the data", divider="gray")
if not runs:
    st.info("Needs a trained run.")
    st.stop()
c1, c2, c3 = st.columns([2, 2, 1])
job_run = by_name[c1.selectbox("Run", names, key="atk_job_run", format_func=_run_label)]
with c2:
    job_recipe = _recipe_picker("atk_job_recipe")
job_split = c3.selectbox("Split", ["test", "validation"], key="atk_job_split")
c1, c2, c3 = st.columns(3)
job_n = c1.number_input("Examples (N)", 1, 100_000, 20, key="atk_job_n")
job_budget = c2.number_input("Query budget per example", 10, 100_000, 2000, step=100, key="atk_job_budget")
job_fresh = c3.toggle("Start afresh", key="atk_job_fresh",
                      help="Discard saved records of this recipe/split instead of resuming them.")

current = aj.attack_status(job_run, store, job_recipe, job_split) if job_recipe else None
running = bool(current and current["state"] in jobs.ACTIVE)
b1, b2, _ = st.columns([1, 1, 4])
if b1.button("Start attack", icon=":material/play_arrow:", key="atk_job_start", disabled=running or not job_recipe):
    try:
        aj.start_attack(job_run, store, job_recipe, int(job_n), job_split, query_budget=int(job_budget),
                        fresh=job_fresh)
        st.rerun()
    except RuntimeError as exc:
        st.error(str(exc))
if b2.button("Stop", icon=":material/stop:", key="atk_job_stop", disabled=not running):
    current["job"].request_stop()
    st.rerun()


def _summary_rows(run) -> list[dict]:
    rows = []
    for name, s in run.analyses("attack-").items():
        rows.append({"analysis": name, "recipe": s.get("recipe"), "split": s.get("split"),
                     "examples": s.get("num_examples"), "clean accuracy": s.get("clean_accuracy"),
                     "accuracy under attack": s.get("accuracy_under_attack"),
                     "attack success rate": s.get("attack_success_rate"),
                     "avg perturbed word %": s.get("avg_perturbed_word_pct"), "avg queries": s.get("avg_queries"),
                     "seconds": s.get("seconds")})
    return rows


@st.fragment(run_every=1.5 if running else None)
def _progress() -> None:
    st_ = aj.attack_status(job_run, store, job_recipe, job_split) if job_recipe else None
    if not st_:
        st.caption("No attack of this recipe and split has been started from here for this run yet.")
        return
    if st_["state"] in jobs.ACTIVE:
        total = max(int(st_["total"] or 1), 1)
        eta = f" · about {fmt_s(st_['eta_s'])} left" if st_.get("eta_s") else ""
        st.progress(min(st_["done"] / total, 1.0),
                    text=f"{job_recipe} on {job_split}: {st_['done']}/{total} examples{eta}"
                    + (" · stopping" if st_["state"] == "stopping" else ""))
        with st.expander("Log"):
            st.code(st_["log_tail"] or "(starting...)", language=None)
        return
    if running:  # it just finished: redraw the whole page (buttons, summary table)
        st.rerun(scope="app")
    s = st_["summary"]
    if st_["state"] == "completed" and s:
        st.success(f"{job_recipe} on {job_split}: {s['num_examples']} examples "
                   f"({s['successful']} successful, {s['failed']} failed, {s['skipped']} skipped).")
        m = st.columns(5)
        m[0].metric("Clean accuracy", av.pct(s.get("clean_accuracy")))
        m[1].metric("Accuracy under attack", av.pct(s.get("accuracy_under_attack")))
        m[2].metric("Attack success rate", av.pct(s.get("attack_success_rate")))
        apw = s.get("avg_perturbed_word_pct")
        m[3].metric("Avg perturbed words", "-" if apw is None else f"{apw:.1f}%")
        aq = s.get("avg_queries")
        m[4].metric("Avg queries", "-" if aq is None else f"{aq:.1f}")
    elif st_["state"] in ("stopped", "interrupted"):
        st.warning(f"{st_['state'].capitalize()} at {st_['done']}/{st_['total']}; finished examples are kept — "
                   "Start resumes them.")
    else:
        st.error(f"The attack failed: {st_['error'] or 'see the log'}")
        st.code(st_["log_tail"], language=None)


_progress()
rows = _summary_rows(job_run)
st.subheader(f"Saved attack results of {job_run.name}")
if rows:
    st.dataframe(rows, hide_index=True, width="stretch",
                 column_config={k: st.column_config.NumberColumn(format="%.3f") for k in
                                ("clean accuracy", "accuracy under attack", "attack success rate")})
    st.caption(f"Saved in `{job_run.analyses_dir}`; per-example records in the folder of the same name.")
else:
    st.caption("None yet.")


# ====================================================================== 3. per example, and where models differ
def _saved_attacks(run) -> list[str]:
    return sorted(n for n in run.analyses("attack-") if (run.analyses_dir / n).is_dir())


saved = _saved_attacks(job_run)
if saved:
    st.subheader("Example by example")
    pick = st.selectbox("Attack", saved, key="atk_examples_of",
                        index=saved.index(aj.attack_name(job_recipe, job_split))
                        if job_recipe and aj.attack_name(job_recipe, job_split) in saved else 0)
    from uegr.attacks.runner import read_records

    recs = read_records(job_run.analyses_dir / pick)
    table = av.records_table(recs)
    st.caption("Select a row to see its word diff and the attributions of both sentences.")
    event = st.dataframe(table, hide_index=True, width="stretch", key="atk_examples", on_select="rerun",
                         selection_mode="single-row", height=min(38 + 35 * len(table), 400),
                         column_config={"changes": st.column_config.TextColumn(width="medium"),
                                        "original": st.column_config.TextColumn(width="large"),
                                        "adversarial": st.column_config.TextColumn(width="large")})
    rows_sel = event.selection.rows if event is not None else []
    if rows_sel:
        r = recs[rows_sel[0]]
        if r["result"] == "skipped":
            st.info("The model already got this sentence wrong, so it was not attacked.")
        else:
            from uegr.attacks.runner import word_diff

            a, b = word_diff(r["original_text"].split(), r["perturbed_text"].split())
            d1, d2 = st.columns(2)
            d1.markdown("**Original**")
            d1.markdown(av.diff_html(a, "original", r["original_text"]), unsafe_allow_html=True)
            d2.markdown("**Adversarial**" if r["result"] == "successful" else "**Best attempt (held)**")
            d2.markdown(av.diff_html(b, "perturbed", r["perturbed_text"]), unsafe_allow_html=True)
            try:
                a_o, a_p = av.explain_pair(str(job_run.best_checkpoint()), r["original_text"], r["perturbed_text"],
                                           int(r["original_prediction"]))
            except (ModelLoadError, RunError, OSError, ValueError) as exc:
                st.error(f"Attributions unavailable: {exc}")
            else:
                st.markdown(av.legend_html(), unsafe_allow_html=True)
                d1.markdown(av.attribution_html(a_o["tokens"], a_o["scores"]), unsafe_allow_html=True)
                d2.markdown(av.attribution_html(a_p["tokens"], a_p["scores"]), unsafe_allow_html=True)

    others = [n for n in names if n != job_run.name and pick in _saved_attacks(by_name[n])]
    st.subheader("Where one model flips and the other holds")
    if not others:
        st.caption(f"Run the same attack ({pick.removeprefix('attack-')}) on another run to compare them sentence "
                   "by sentence.")
    else:
        other = by_name[st.selectbox("Against", others, key="atk_gallery_other", format_func=_run_label)]
        gal = av.flip_gallery(recs, read_records(other.analyses_dir / pick))
        g1, g2 = st.columns(2)
        for col, key_, holder, flipper in ((g1, "a_holds", job_run.name, other.name),
                                           (g2, "b_holds", other.name, job_run.name)):
            with col:
                st.markdown(f"**{holder} holds, {flipper} flips** ({len(gal[key_])})")
                for item in gal[key_][:8]:
                    with st.container(border=True):
                        st.markdown(f"#{item['index']} · {item['original']}")
                        st.caption(f"fooled {flipper}: {item['fooled_other']} ({item['changes']})")
                if not gal[key_]:
                    st.caption("None among the sentences both were attacked on.")

