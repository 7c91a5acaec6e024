"""Landscape: start loss-landscape probes as background jobs and compare flatness across runs."""

from __future__ import annotations

import streamlit as st

from app import common, terms
from app import landscape_view as lv
from uegr.landscape import KINDS

st.title("Loss landscape")
terms.line("filter-normalisation", "eps-sharpness")  # glossary links
st.caption("How flat is the minimum each run found? Probes run `uegr landscape` in the background on a run's "
           "best checkpoint (dropout off, float32, a fixed seeded subset of a split) and save their result in "
           "the run's `analyses/` folder. Every result is kept: the newest of each kind is shown, earlier ones "
           "can be picked under History.")
common.show_flash()

store = common.store()
runs = [r for r in store.list() if r.has_checkpoint("best") or r.has_checkpoint("last")]
if not runs:
    st.info(f"No trained runs with a checkpoint in `{store.root}` yet: train one on the Train page, then "
            "come back to probe its landscape.")
    st.stop()
by_name = {r.name: r for r in runs}
method_of = {r.name: r.summary()["method"] for r in runs}
chosen_names = st.multiselect("Runs", list(by_name), default=list(by_name)[:2], key="ls_runs",
                              format_func=lambda n: f"{n} · {method_of.get(n, '?')}")
if not chosen_names:
    st.info("Choose at least one run.")
    st.stop()
chosen = [by_name[n] for n in chosen_names]

# ====================================================================== start a probe
st.header("Start a probe", divider="gray")
kind = st.selectbox("Probe", KINDS, key="ls_kind", format_func=lambda k: lv.KIND_LABELS[k])
c = st.columns(4)
splits = list(((chosen[0].raw_status().get("dataset") or {}).get("splits") or {}) or ["validation"])
settings: dict = {
    "split": c[0].selectbox("Split", splits, index=splits.index("validation") if "validation" in splits else 0,
                            key="ls_split"),
    "examples": int(c[1].number_input("Examples (0 = all)", 0, 100_000, 256, step=32, key="ls_examples",
                                      help="A fixed, seeded subset of the split; the same for every run.")),
    "seed": int(c[2].number_input("Seed", 0, 10_000, 0, key="ls_seed",
                                  help="Seed of the random directions, the subset and the random vectors.")),
    "params": c[3].selectbox("Parameters", ("all", "encoder", "no_embeddings"), key="ls_params"),
}
other = None
c = st.columns(4)
if kind in ("slice1d", "slice2d"):
    default_points = 21 if kind == "slice1d" else 11
    settings["points"] = int(c[0].number_input("Points per axis" if kind == "slice2d" else "Points", 3, 101,
                                               default_points, key=f"ls_points_{kind}"))
    settings["span"] = float(c[1].number_input("Span (α in [−span, span])", 0.01, 10.0, 1.0, step=0.1,
                                               key="ls_span"))
elif kind == "interp":
    settings["points"] = int(c[0].number_input("Points", 3, 101, 21, key="ls_points_interp"))
    settings["margin"] = float(c[1].number_input("Margin (α in [−m, 1+m])", 0.0, 2.0, 0.25, step=0.05,
                                                 key="ls_margin"))
    other = c[2].selectbox("Other end (α = 1)", ["pretrained", *by_name], key="ls_other",
                           help="Another run of the same architecture, or the run's pretrained base model "
                                "(with a fresh classifier head).")
elif kind == "hessian":
    settings["k"] = int(c[0].number_input("Top eigenvalues (k)", 1, 10, 1, key="ls_k"))
    settings["iters"] = int(c[1].number_input("Power iterations", 1, 200, 20, key="ls_iters"))
    settings["samples"] = int(c[2].number_input("Hutchinson samples (trace)", 1, 500, 20, key="ls_samples"))
else:
    settings["rho"] = float(c[0].number_input("SAM radius ρ", 0.0001, 10.0, 0.05, step=0.01, format="%.4f",
                                              key="ls_rho"))
    settings["eps"] = float(c[1].number_input("ε (Keskar box)", 1e-6, 1.0, 1e-3, step=1e-4, format="%.5f",
                                              key="ls_eps"))

est = {r.name: lv.estimate(r, kind, settings) for r in chosen}
timings = {r.name: lv.last_timing(r, kind) for r in chosen}
ratio = lv.calibration(list(timings.values()))
if ratio:  # the saved probes of this kind measured how far off the generic estimate is on this machine
    for e in est.values():
        e["probe_s"] *= ratio
        e["total_s"] = e["probe_s"] + lv.STARTUP_S
worst = max(e["total_s"] for e in est.values())
work = sum(e["total_s"] for e in est.values())
per_run = ", ".join(f"{n}: {lv.fmt_s(e['probe_s'])} probing" for n, e in est.items())
st.info(f"Estimated cost: about **{lv.fmt_s(worst)}** per run ({per_run}, plus "
        f"~{lv.STARTUP_S:.0f} s to start each process). {len(chosen)} run(s) start at once and share the CPU, so "
        f"expect up to ~{lv.fmt_s(work)} in all. A rough estimate from parameter and example counts"
        + (f", scaled ×{ratio:.3g} by how long the saved {kind} probes of these runs took" if ratio else "")
        + ", not a measurement.", icon=":material/timer:")
seen = [f"{n} {lv.fmt_s(t['seconds'])} (estimated {lv.fmt_s(t['estimated_seconds'])})"
        for n, t in timings.items() if t]
if seen:
    st.caption(f"Saved {kind} probes of these runs took, probing only: {', '.join(seen)}; their settings may "
               "differ from the ones above.")
if work > 600:
    st.warning("This is a long probe: fewer examples, points or iterations make it faster.")

jobs = lv.jobs_for(chosen)
busy = {(j["run"], j["kind"]) for j in jobs if j["state"] in lv.ACTIVE}
blocked = [r.name for r in chosen if (r.name, kind) in busy]
if st.button(f"Start {kind} on {len(chosen)} run(s)", icon=":material/play_arrow:", key="ls_start", type="primary",
             disabled=bool(blocked), help=f"Already running: {', '.join(blocked)}" if blocked else None):
    launched, errors = lv.launch_many(chosen, kind, settings, other, runs_dir=store.root,
                                      estimates={n: e["total_s"] for n, e in est.items()})
    for e in errors:
        common.flash(f"Could not start: {e}", "error")
    if launched:
        common.flash(f"Started {kind} on {', '.join(j['run'] for j in launched)}.", "success")
    st.rerun()


# ====================================================================== progress
@st.fragment(run_every=1.5 if lv.any_running(jobs) else None)
def _progress() -> None:
    now = lv.jobs_for(chosen)
    recent = [j for j in now if j["state"] in lv.ACTIVE or j["elapsed_s"] < 3600]
    if not recent:
        return
    st.subheader("Probe jobs")
    for j in sorted(recent, key=lambda j: -j["started"]):
        c1, c2, c3 = st.columns([2, 5, 1])
        c1.markdown(f"**{j['run']}** · {j['kind']}")
        if j["state"] in lv.ACTIVE:
            c2.progress(min(max(j["fraction"], 0.0), 1.0),
                        text=f"{'stopping… ' if j['state'] == 'stopping' else ''}{j['label']} · "
                             f"{lv.fmt_s(j['elapsed_s'])} of ~{lv.fmt_s(j['estimated_s'])}")
            if c3.button("Stop", key=f"ls_stop.{j['run']}.{j['kind']}", icon=":material/stop:",
                         disabled=j["state"] == "stopping", help="Stop and keep the partial result"):
                lv.stop_probe(by_name[j["run"]], j["kind"])
                st.rerun(scope="fragment")
        elif j["state"] == "completed":
            c2.success(f"done in {lv.fmt_s((j['result'] or {}).get('seconds'))} of probing", icon=":material/check:")
        elif j["state"] == "stopped":
            c2.warning("stopped: the partial result is saved" if j["result"] else "stopped before any result",
                       icon=":material/stop_circle:")
        else:
            c2.error(f"failed: {j['error'] or 'see the log'}", icon=":material/error:")
            with c2.expander("Log"):
                st.code(j["log_tail"] or "(empty)", language=None)
    if lv.any_running(jobs) and not lv.any_running(now):
        st.rerun(scope="app")  # a job just ended: redraw the results


_progress()

# ====================================================================== results
st.header("Results", divider="gray")
running = {}  # run -> kinds with a probe running now
for j in jobs:
    if j["state"] in lv.ACTIVE:
        running.setdefault(j["run"], []).append(j["kind"])


def _waiting(names: list[str], kind: str) -> tuple[list[str], list[str]]:
    """(runs with a probe of this kind running, runs with none)."""
    busy = [n for n in names if kind in running.get(n, [])]
    return busy, [n for n in names if n not in busy]


hist = {r.name: {k: lv.history(r, k) for k in KINDS} for r in chosen}
n_saved = sum(len(v) for per in hist.values() for v in per.values())
picks: dict[str, dict[str, str]] = {r.name: {} for r in chosen}
with st.expander(f"History: {n_saved} saved result(s); the newest of each kind is shown", icon=":material/history:"):
    st.caption("No probe overwrites another: pick an earlier result of a kind to show it in the table and charts.")
    for kind in KINDS:
        owners = [n for n in chosen_names if hist[n][kind]]
        if not owners:
            continue
        cols = st.columns(min(len(owners), 3))
        for i, n in enumerate(owners):
            entries = hist[n][kind]
            picked = cols[i % len(cols)].selectbox(
                f"{n} · {kind} ({len(entries)})", [e["history_id"] for e in entries], key=f"ls_hist.{n}.{kind}",
                format_func=lambda h, es=entries: lv.history_label(next(e for e in es if e["history_id"] == h)))
            picks[n][kind] = picked
res = {r.name: lv.results(r, picks[r.name]) for r in chosen}
rows = [lv.summary_row(r, method_of.get(r.name), res[r.name]) for r in chosen]
# Cells as text: the grid prints a missing number as a literal "None" whatever the format, so a dash
# stands in for it; numbers keep 4 significant digits.
st.dataframe([{k: lv.show(v) for k, v in row.items()} for row in rows], hide_index=True, width="stretch",
             key="ls_table")
sizes = {row["loss on"].split(" (")[0] for row in rows if row["loss on"]}
if len(sizes) > 1:
    st.warning(f"The loss column comes from probes on different data ({', '.join(sorted(sizes))}): compare "
               "losses only between rows with the same 'loss on'.", icon=":material/warning:")
st.caption("Smaller = flatter. Max rise: highest loss on the slice minus the loss at the checkpoint. "
           "Interp barrier: highest loss between the two ends above the higher end. Top eigenvalue and trace "
           "of the Hessian (power iteration, Hutchinson; ± and convergence in the last tab); SAM sharpness = L(θ+ρ·g/‖g‖) − L(θ); ε-sharpness "
           "(Keskar et al.) in % of 1 + L(θ). Compare runs only at equal settings.")
for r in chosen:
    if not res[r.name]:
        if r.name in running:
            st.info(f"A {', '.join(running[r.name])} probe of **{r.name}** is running; its result appears here "
                    "when it ends.", icon=":material/hourglass_top:")
        else:
            st.info(f"No probes yet for **{r.name}** — start one above.", icon=":material/landscape:")


def _missing(names: list[str], kind: str, noun: str, hint: str) -> None:
    busy, idle = _waiting(names, kind)
    if busy:
        st.info(f"The {noun} of {', '.join(busy)} is running; it appears here when it ends.",
                icon=":material/hourglass_top:")
    if idle:
        st.info(f"No {noun} yet for {', '.join(idle)} — start one above ({hint}).")


tab_names = ["1-D slices", "2-D slice", "Interpolation", "Hessian & sharpness"]
newest = lv.newest_kind({n: {k: v[0] for k, v in per.items() if v} for n, per in hist.items()})
tab1, tab2, tab3, tab4 = st.tabs(tab_names, default=lv.TABS.get(newest, tab_names[0]))
with tab1:
    recs = {n: v["slice1d"] for n, v in res.items() if "slice1d" in v}
    if recs:
        rel = st.toggle("Show the rise above the checkpoint's loss", value=True, key="ls_rel")
        st.plotly_chart(lv.slice1d_figure(recs, rel), key="ls_fig_1d")
        for n, rec in recs.items():
            st.caption(f"{n}: {lv.settings_caption(rec)}, span ±{rec['settings'].get('span')}")
        if len({(rec["settings"].get("seed"), rec["settings"].get("span"), rec["settings"].get("params"),
                 rec.get("n_examples")) for rec in recs.values()}) > 1:
            st.warning("These slices used different seeds, spans, parameter sets or example counts: compare with care.")
    _missing([n for n in chosen_names if n not in recs], "slice1d", "1-D slice", "probe: 1-D random slice")
with tab2:
    have2 = [n for n in chosen_names if "slice2d" in res[n]]
    if have2:
        pick = st.selectbox("Run", have2, key="ls_2d_run")
        rec = res[pick]["slice2d"]
        c1, c2 = st.columns(2)
        c1.plotly_chart(lv.contour_figure(rec, pick), key="ls_fig_contour")
        c2.plotly_chart(lv.surface_figure(rec, pick), key="ls_fig_surface")
        st.caption(f"{pick}: {lv.settings_caption(rec)}, {len(rec.get('alphas') or [])}² grid, "
                   f"span ±{rec['settings'].get('span')}; the red × is the checkpoint.")
    _missing([n for n in chosen_names if n not in have2], "slice2d", "2-D slice", "probe: 2-D random slice")
with tab3:
    recs = {n: v["interp"] for n, v in res.items() if "interp" in v}
    if recs:
        st.plotly_chart(lv.interp_figure(recs), key="ls_fig_interp")
        for n, rec in recs.items():
            st.caption(f"{n} → {rec.get('other', '?')}: {lv.settings_caption(rec)}")
    _missing([n for n in chosen_names if n not in recs], "interp", "interpolation",
             "probe: interpolation; the other end may be another run or the pretrained model")
with tab4:
    detail = []
    for n in chosen_names:
        h, s = res[n].get("hessian") or {}, res[n].get("sharpness") or {}
        if not h and not s:
            continue
        sam, eps = s.get("sam") or {}, s.get("eps") or {}
        trace = h.get("trace")
        detail.append({"run": n, "eigenvalues": ", ".join(lv.show(v) for v in h.get("eigenvalues") or []) or None,
                       "iterations": ", ".join(str(i) for i in h.get("iterations") or []) or None,
                       "converged": ", ".join("yes" if c else "no" for c in h.get("converged") or []) or None,
                       "trace": (f"{trace:.4g} ± {lv.show(h.get('trace_stderr'), '{:.2g}')}"
                                 if isinstance(trace, float) else lv.show(trace)),
                       "trace samples": h.get("trace_samples"), "Hessian on": lv.size_label(h) if h else None,
                       "SAM ρ": sam.get("rho"), "SAM loss → perturbed":
                       (f"{sam['loss']:.4f} → {sam['loss_perturbed']:.4f}" if "loss_perturbed" in sam else None),
                       "grad norm": sam.get("grad_norm"), "ε": eps.get("eps"), "ε max loss": eps.get("max_loss"),
                       "sharpness on": lv.size_label(s) if s else None,
                       "seconds": (h.get("seconds") or 0) + (s.get("seconds") or 0)})
    if detail:
        st.dataframe([{k: lv.show(v) if k != "run" else v for k, v in row.items()} for row in detail],
                     hide_index=True, width="stretch", key="ls_detail")
    _missing([n for n in chosen_names if not res[n].get("hessian")], "hessian", "Hessian probe",
             "probe: Hessian")
    _missing([n for n in chosen_names if not res[n].get("sharpness")], "sharpness", "sharpness probe",
             "probe: sharpness")
