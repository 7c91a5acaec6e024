"""Sweep page helpers: the search-space form's fields, the `uegr sweep` argument lists the page starts as
background jobs (uegr/jobs.py), and read-only views of a study (trials table, figures).

No Streamlit import here: tests use it too.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import plotly.graph_objects as go

from uegr import config as C
from uegr import jobs
from uegr.runs import RunStore
from uegr.sweep.space import DEFAULT_SPACES, parse_space
from uegr.sweep.study import SweepError, check_objectives, make_spec, parse_pruner, resolve_storage

METHODS = tuple(DEFAULT_SPACES)
STUDY_ATTR = "uegr"


def space_fields(method: str) -> list[dict]:
    """One row per knob of `method`'s default space: field, label, help, kind (int/float/choice) and the
    default range. Only fields the method reads (config.used_by) are offered."""
    out = []
    for dotted, spec in DEFAULT_SPACES[method].items():
        if not C.used_by(dotted, method):
            continue
        meta = C.field_meta(dotted)
        kind = "choice" if "choices" in spec else ("int" if isinstance(spec["low"], int) and
                                                   isinstance(spec["high"], int) else "float")
        out.append({"field": dotted, "label": meta.get("label") or dotted, "help": meta.get("help") or "",
                    "kind": kind, **spec})
    return out


def check_space(space: dict, preset: str, method: str) -> dict:
    """The space validated against the schema on this preset + method (SpaceError names the field)."""
    return parse_space(space, base_config(preset, method))


def base_config(preset: str, method: str) -> C.Config:
    return C.build_config(preset, None, [f"method.name={method}"])


def new_study_argv(store: RunStore, study: str, preset: str, method: str, space: dict, objectives: list[str],
                   trials: int, workers: int = 1, budget_steps: int = 0, pruner: str = "auto",
                   extra_sets: list[str] | None = None, enqueue_base: bool = False) -> list[str]:
    """Validate everything, save the space as YAML next to the study, return the `uegr sweep` argv.
    enqueue_base: trial 0 runs the preset's own values of the space's knobs."""
    check_objectives(objectives)
    parse_pruner(pruner)
    if not 1 <= int(trials) <= 1000:
        raise SweepError(f"trials {trials}: 1 to 1000")
    if not 1 <= int(workers) <= 16:
        raise SweepError(f"workers {workers}: 1 to 16")
    sets = [f"method.name={method}", *(extra_sets or [])]
    base = C.build_config(preset, None, sets)  # a bad --set fails here, before anything is written
    parsed = check_space(space, preset, method)
    if enqueue_base:  # the preset's values must lie inside the edited ranges (SpaceError names the knob)
        make_spec(base, {}, parsed, objectives, int(trials), enqueue_base=True)
    path = store.sweep_space_path(study)
    import yaml

    path.write_text(yaml.safe_dump(space, sort_keys=True), encoding="utf-8")
    argv = ["sweep", "--study", study, "--preset", preset, "--space", str(path), "--objective", ",".join(objectives),
            "--trials", str(int(trials)), "--workers", str(int(workers)), "--pruner", pruner,
            "--runs-dir", str(store.root), "--quiet"]
    for s in sets:
        argv += ["--set", s]
    if budget_steps:
        argv += ["--budget-steps", str(int(budget_steps))]
    if enqueue_base:
        argv.append("--enqueue-base")
    return argv


def start_sweep(store: RunStore, study: str, argv: list[str]) -> jobs.Job:
    for job in jobs.active(store, "sweep", study=study):
        raise SweepError(f"study {study!r} is already running (job {job.id}); stop it first")
    return jobs.start(argv, store, "sweep", {"study": study})


def resume_argv(store: RunStore, study: str, workers: int = 1) -> list[str]:
    """Join the study again: it runs the trials still missing; a stopped (failed) trial is retried."""
    return ["sweep", "--study", study, "--workers", str(int(workers)), "--retry-failed", "--runs-dir",
            str(store.root), "--quiet"]


def promote_argv(store: RunStore, study: str, trial: int, seeds: int = 1) -> list[str]:
    return ["sweep", "--study", study, "--promote", str(int(trial)), "--seeds", str(int(seeds)),
            "--runs-dir", str(store.root), "--quiet"]


# ------------------------------------------------------------------------------------------ reading a study
_STORAGES: dict[str, object] = {}  # one engine per storage URL for this app process (pages rerun every 2 s)


def _storage(store: RunStore):
    from uegr.sweep.study import _quiet_optuna, open_storage

    _quiet_optuna()
    url = resolve_storage(None, store)
    if url not in _STORAGES:  # the library's opener: it serialises the creation of a new SQLite file
        _STORAGES[url] = open_storage(url)
    return _STORAGES[url]


def study_names(store: RunStore) -> list[str]:
    """Studies in the runs folder's default storage (newest first); [] when there is none yet."""
    import optuna

    url = resolve_storage(None, store)
    if not Path(url.removeprefix("sqlite:///")).is_file():
        return []
    summaries = optuna.get_all_study_summaries(_storage(store), include_best_trial=False)
    return [s.study_name for s in sorted(summaries, key=lambda s: s.datetime_start or 0, reverse=True)]


def load_study(store: RunStore, name: str):
    import optuna

    try:
        return optuna.load_study(study_name=name, storage=_storage(store))
    except KeyError:
        return None


def all_pruned_hint(study) -> str | None:
    """A line for a study whose every finished trial was pruned (it has no best trial): which one to promote."""
    from uegr.sweep.study import OBJECTIVES, best_pruned

    objectives = [o for o in objectives_of(study) if o in OBJECTIVES]
    if not objectives:
        return None
    bp = best_pruned(study, objectives[0])
    if bp is None:
        return None
    return (f"No trial ran to the end: the pruner stopped every one. The best pruned trial is {bp['trial']} "
            f"({objectives[0]} {bp['value']:.4f} at step {bp['step']}): promote it to train it in full, or start "
            "a study with a gentler pruner.")


def objectives_of(study) -> list[str]:
    return list((study.user_attrs.get(STUDY_ATTR) or {}).get("objectives") or ["objective"])


def trials_rows(study) -> list[dict]:
    """One row per trial: number, state, objective values, clean/robust accuracy, run, parameters."""
    names = objectives_of(study)
    rows = []
    for t in study.get_trials(deepcopy=False):
        vals = dict(zip(names, t.values)) if t.values else {}
        row = {"trial": t.number, "state": t.state.name.lower(), **{n: vals.get(n) for n in names},
               "clean_acc": t.user_attrs.get("clean_acc"), "robust_acc": t.user_attrs.get("robust_acc"),
               "run": t.user_attrs.get("run") or "",
               "seconds": round((t.datetime_complete - t.datetime_start).total_seconds(), 1)
               if t.datetime_complete and t.datetime_start else None}
        row.update({k: v for k, v in t.params.items()})
        rows.append(row)
    return rows


def _finished(study) -> int:
    from optuna.trial import TrialState

    return sum(1 for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE)


def figures(study) -> dict[str, go.Figure | str]:
    """Optuna's own Plotly figures (history, parallel coordinates, importances, slices, Pareto front),
    each replaced by a one-line reason when the study cannot draw it yet."""
    from optuna import visualization as V

    names = objectives_of(study)
    multi = len(names) > 1
    target = (lambda t: t.values[0]) if multi else None
    tname = names[0]
    out: dict[str, go.Figure | str] = {}
    complete = _finished(study)
    makers = {
        "history": lambda: V.plot_optimization_history(study, target=target, target_name=tname),
        "parallel": lambda: V.plot_parallel_coordinate(study, target=target, target_name=tname),
        "importances": lambda: V.plot_param_importances(study, target=target, target_name=tname),
        "slice": lambda: V.plot_slice(study, target=target, target_name=tname),
    }
    for key, make in makers.items():
        need = 2 if key in ("importances", "parallel") else 1
        if complete < need:
            out[key] = f"needs {need} complete trial(s); {complete} so far"
            continue
        try:
            out[key] = make()
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:
            out[key] = f"not available yet ({str(exc).splitlines()[0][:120]})"
    out["pareto"] = pareto_figure(study)
    return out


def pareto_figure(study) -> go.Figure | str:
    """Clean vs robust accuracy of every complete trial, the non-dominated ones joined (Optuna's own
    plot_pareto_front when the study's objectives are exactly those two)."""
    from optuna import visualization as V

    names = objectives_of(study)
    if sorted(names) == ["clean_acc", "robust_acc"] and _finished(study):
        try:
            return V.plot_pareto_front(study, target_names=names)
        except (ValueError, RuntimeError) as exc:
            return f"not available yet ({exc})"
    pts = [(r["clean_acc"], r["robust_acc"], r["trial"]) for r in trials_rows(study)
           if r["state"] == "complete" and r["clean_acc"] is not None and r["robust_acc"] is not None]
    if not pts:
        return "needs complete trials with robust evaluations (objective robust_acc or harmonic)"
    front = [p for p in pts if not any(q[0] >= p[0] and q[1] >= p[1] and q[:2] != p[:2] for q in pts)]
    front.sort()
    fig = go.Figure()
    fig.add_scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="markers", name="trials",
                    text=[f"trial {p[2]}" for p in pts], marker={"color": "#9aa5b1", "size": 9})
    fig.add_scatter(x=[p[0] for p in front], y=[p[1] for p in front], mode="lines+markers", name="Pareto front",
                    text=[f"trial {p[2]}" for p in front], marker={"color": "#d62728", "size": 11})
    fig.update_layout(title="Pareto front: clean vs robust accuracy (dev)", xaxis_title="clean accuracy",
                      yaxis_title="robust accuracy", height=420, margin={"l": 50, "r": 20, "t": 50, "b": 40})
    return fig


def fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def spec_of(study) -> dict:
    return json.loads(json.dumps(study.user_attrs.get(STUDY_ATTR) or {}, default=str))

