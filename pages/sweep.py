"""Sweep: search hyperparameters for clean and robust accuracy with Optuna (`uegr sweep` as background jobs);
watch the study, open its trials in Live and Compare, promote the best."""

from __future__ import annotations

import re

import streamlit as st
import yaml

from app import common
from app import sweep_view as sv
from uegr import config as C
from uegr import jobs
from uegr.runs import NAME_RE, RunError
from uegr.sweep.space import DEFAULT_SPACES, SpaceError
from uegr.sweep.study import OBJECTIVES, PRUNERS, SweepError

st.title("Sweep")
st.caption("Tune: an Optuna study over one method's knobs. Every trial is an ordinary run (Live, Runs, Compare, "
           "Saliency and the Attack lab work on it); robust accuracy is measured on the validation split "
           "while each trial trains. The study lives in the runs folder, so it survives reloads and restarts.")
common.show_flash()
store = common.store()

# ====================================================================== 1. a new study
with st.expander("New study", expanded=not sv.study_names(store)):
    c = st.columns(3)
    method = c[0].selectbox("Method", sv.METHODS, key="sw_method", help="Each method gets its own knobs below.")
    qp = st.query_params.get("preset")  # /sweep?preset=tiny opens the form on that preset
    preset = c[1].selectbox("Base preset", list(C.PRESETS),
                            index=list(C.PRESETS).index(qp if qp in C.PRESETS else "quick-demo"),
                            key="sw_preset", help="Every trial starts from this preset (tiny = seconds, for a try).")
    study_name = c[2].text_input("Study name", value=f"{method}-{preset}", key="sw_study",
                                 help="Letters, digits, '-', '_' or '.'; an existing name continues that study.")
    c = st.columns(4)
    objectives = c[0].multiselect("Objectives", list(OBJECTIVES), default=["harmonic"], key="sw_objectives",
                                  help="harmonic = harmonic mean of clean and robust dev accuracy; two or more "
                                       "make a multi-objective study with a Pareto front.")
    trials = c[1].number_input("Trials", 1, 1000, 8, key="sw_trials")
    workers = c[2].number_input("Workers (processes)", 1, 16, 1, key="sw_workers",
                                help="Workers share the study; on 2 CPU cores more than 2 rarely helps.")
    budget = c[3].number_input("Steps per trial (0 = the preset's)", 0, 1_000_000, 0, key="sw_budget",
                               help="Caps each trial; Promote re-runs a trial at the full budget.")
    c = st.columns(3)
    pruner = c[0].selectbox("Pruner", PRUNERS, key="sw_pruner",
                            help="auto = median for one objective, none for several (Optuna cannot prune those).")
    pruner_options = c[1].text_input(
        "Pruner options", "", key="sw_pruner_options", placeholder="e.g. bootstrap_count=1",
        disabled=pruner in ("auto", "none"),
        help="The Optuna pruner's own options as OPTION=VALUE, comma-separated. Measured on the quick demo: "
             "halving with bootstrap_count=1 and an evaluation every 5 steps ran 2.19x fewer steps at a best "
             "1 point lower (docs/benchmarks.md).")
    if pruner_options.strip() and pruner not in ("auto", "none"):
        pruner = f"{pruner}:{pruner_options.strip()}"
    enqueue_base = c[2].checkbox("Trial 0 = the preset's own setting", value=False, key="sw_enqueue_base",
                                 help="The first trial runs the preset's values of the ticked knobs, so the best "
                                      "trial is never worse than the setting you start from (uegr sweep "
                                      "--enqueue-base).")

    st.markdown(f"**Search space** — the knobs of `{method}`, around its defaults (`uegr sweep` default space). "
                "Untick a knob to keep the preset's value.")
    space: dict[str, dict] = {}
    for f in sv.space_fields(method):
        key = f"sw.{method}.{f['field']}"
        row = st.columns([2.2, 1.3, 1.3, 0.8])
        on = row[0].checkbox(f"{f['label']} (`{f['field']}`)", value=True, key=f"{key}.on", help=f["help"])
        if f["kind"] == "int":
            lo = row[1].number_input("low", value=int(f["low"]), step=1, key=f"{key}.low", disabled=not on)
            hi = row[2].number_input("high", value=int(f["high"]), step=1, key=f"{key}.high", disabled=not on)
        else:
            lo = row[1].number_input("low", value=float(f["low"]), format="%.6g", key=f"{key}.low", disabled=not on)
            hi = row[2].number_input("high", value=float(f["high"]), format="%.6g", key=f"{key}.high",
                                     disabled=not on)
        log = row[3].checkbox("log", value=bool(f.get("log")), key=f"{key}.log", disabled=not on)
        if on:
            space[f["field"]] = {"low": lo, "high": hi, **({"log": True} if log else {})}

    problems = []
    if not NAME_RE.match(study_name or ""):
        problems.append(f"Study name {study_name!r}: use letters, digits, '-', '_' or '.'.")
    if not objectives:
        problems.append("Objectives: choose at least one.")
    try:
        sv.parse_pruner(pruner)
    except SweepError as exc:
        problems.append(f"Pruner options: {exc}")
    if not space:
        problems.append("Search space: tick at least one knob.")
    else:
        try:
            sv.check_space(space, preset, method)
        except (SpaceError, C.ConfigError) as exc:
            problems.append(str(exc))
    for p in problems:
        st.error(p)
    with st.popover("Space as YAML"):
        st.code(yaml.safe_dump(space, sort_keys=True) or "{}", language="yaml")
    if st.button("Start sweep", type="primary", icon=":material/play_arrow:", key="sw_start", disabled=bool(problems)):
        try:
            argv = sv.new_study_argv(store, study_name, preset, method, space, objectives, int(trials), int(workers),
                                     int(budget), pruner, enqueue_base=enqueue_base)
            job = sv.start_sweep(store, study_name, argv)
        except (SweepError, SpaceError, C.ConfigError, RunError, OSError) as exc:
            st.error(str(exc))
        else:
            st.session_state["sw_pick"] = study_name
            common.flash(f"Started study {study_name} (job {job.id}).")
            st.rerun()

# ====================================================================== 2. one study
names = sv.study_names(store)
running = {j.labels.get("study") for j in jobs.active(store, "sweep")}
names = sorted(set(names) | running, key=lambda n: (n not in running, names.index(n) if n in names else 0))
if not names:
    st.info("No study yet: set one up above. `--preset tiny` finishes a few trials in about a minute.")
    st.stop()
if st.session_state.get("sw_pick") not in names:
    st.session_state["sw_pick"] = names[0]
pick = st.selectbox("Study", names, key="sw_pick", help="Studies of this runs folder, running ones first.")


@st.fragment(run_every=2.0 if pick in running else None)
def _study() -> None:
    job = jobs.latest(store, "sweep", study=pick)
    info = job.info() if job else None
    state = info["state"] if info else None
    c = st.columns([3, 1, 1])
    if info:
        total = info["total"] or 0
        text = f"job {info['id']}: {state}" + (f" · {info['step']}/{total} trials finished" if total else "")
        if info.get("eta_s") and state in jobs.ACTIVE:
            text += f" · about {info['eta_s']:.0f} s left"
        if state in jobs.ACTIVE:
            c[0].progress(info["fraction"] or 0.0, text=text)
        elif state in ("failed", "interrupted"):
            c[0].error(f"{text}: {info['error'] or 'see the log'}")
        else:
            c[0].caption(text)
    if c[1].button("Stop", key="sw_stop", icon=":material/stop:", disabled=state not in jobs.ACTIVE,
                   help="The running trials stop (checkpoint kept, trial failed so Resume retries it)."):
        job.request_stop()
        st.rerun()
    if c[2].button("Resume", key="sw_resume", icon=":material/play_arrow:", disabled=state in jobs.ACTIVE,
                   help="Run the trials still missing; a stopped trial is retried."):
        try:
            sv.start_sweep(store, pick, sv.resume_argv(store, pick))
        except (SweepError, OSError) as exc:
            st.error(str(exc))
        st.rerun(scope="app")
    if job is not None:
        with st.expander("Log"):
            st.code(job.log_tail(20) or "(empty)", language=None)
    study = sv.load_study(store, pick)
    if study is None:
        st.caption("The study is being created…")
        return
    if state not in jobs.ACTIVE and pick in running:
        st.rerun(scope="app")  # it just ended: redraw the buttons

    rows = sv.trials_rows(study)
    figs = sv.figures(study)
    tabs = st.tabs(["Optimization history", "Parallel coordinates", "Parameter importances",
                    "Pareto front (clean vs robust)", "Slices"])
    for tab, key in zip(tabs, ("history", "parallel", "importances", "pareto", "slice")):
        with tab:
            fig = figs[key]
            if isinstance(fig, str):
                st.caption(fig)
            else:
                st.plotly_chart(fig, key=f"sw_fig_{key}", width="stretch")

    st.subheader("Trials")
    if not rows:
        st.caption("No trial yet.")
        return
    hint = sv.all_pruned_hint(study)
    if hint:
        st.warning(hint, icon=":material/content_cut:")
    st.dataframe(rows, hide_index=True, width="stretch", key="sw_trials_table",
                 column_config={"run": st.column_config.TextColumn(help="the trial's run (Runs page)")})
    labels = {r["trial"]: f"trial {r['trial']} · {r['state']}" + (f" · {r['run']}" if r["run"] else "") for r in rows}
    trial = st.selectbox("Trial", list(labels), format_func=labels.get, key="sw_trial",
                         help="Open its run in Live or Compare, or promote it.")
    row = next(r for r in rows if r["trial"] == trial)
    run_name = row["run"]
    c = st.columns(4)
    if c[0].button("Open in Live", key="sw_live", icon=":material/monitoring:", disabled=not run_name):
        common.open_in_live(run_name)
    if c[1].button("Open in Compare", key="sw_compare", icon=":material/compare_arrows:", disabled=not run_name):
        best = [r["run"] for r in rows if r["state"] == "complete" and r["run"]][:5]
        st.session_state["cmp_runs"] = list(dict.fromkeys([run_name, *best]))
        st.switch_page(common.COMPARE_PAGE)
    seeds = c[2].number_input("Seeds", 1, 10, 1, key="sw_seeds")
    if c[3].button(f"Promote trial {row['trial']}", key="sw_promote", icon=":material/upgrade:",
                   disabled=row["state"] not in ("complete", "pruned"),
                   help="Train this trial's settings at the full budget (a background job); a pruned trial too."):
        job = jobs.start(sv.promote_argv(store, pick, row["trial"], int(seeds)), store, "sweep-promote",
                         {"study": pick, "trial": row["trial"]})
        common.flash(f"Promoting trial {row['trial']} of {pick} (job {job.id}); its runs are named "
                     f"{pick}-t{row['trial']:04d}-full-s*.")
        st.rerun(scope="app")


_study()
with st.expander("Default search spaces"):
    st.caption("Used by `uegr sweep` when no --space is given; the form above starts from them.")
    st.code(yaml.safe_dump({m: s for m, s in DEFAULT_SPACES.items()}, sort_keys=False), language="yaml")
st.caption("CLI: " + re.sub(r"\s+", " ", "`uegr sweep --study NAME --preset PRESET --set method.name=M "
                                         "--objective harmonic --trials 16` (see README, Tune)."))
