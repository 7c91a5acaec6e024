"""Landscape page helpers: background `uegr landscape` probes, their progress, the results table and figures.

A probe is a background job (uegr/jobs.py, labels run + probe kind): the CLI reports its progress and
polls its stop request; the result it writes is kept with the run:

    runs/<run>/analyses/landscape-<kind>.json   the latest result (written by the CLI when it ends, also when stopped)
    runs/<run>/analyses/history/landscape-<kind>/<time>-<id>.json   every result, never overwritten (`history`)

No Streamlit import here: tests use it too.
"""

from __future__ import annotations

import functools
import json
import math
import os
import struct
import time
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from app.common import fmt_duration
from uegr import jobs
from uegr.compare import number_or_none
from uegr.landscape import KINDS, ProbeSettings, estimate_cost
from uegr.runs import Run, RunStore

# Seconds a probe process needs before its first evaluation (Python, torch, transformers, data and checkpoint
# loading): ~30 s seen on the shared 2-core machine under load, ~8 s when idle. estimate_cost excludes it.
STARTUP_S = 20.0
KIND_LABELS = {"slice1d": "1-D random slice", "slice2d": "2-D random slice (contour / surface)",
               "interp": "Interpolation between two models", "hessian": "Hessian: top eigenvalue + trace",
               "sharpness": "Sharpness: SAM and ε-sharpness"}
# Settings that reach the CLI as flags (ProbeSettings name -> flag); others keep the CLI's defaults.
FLAGS = {"split": "--split", "examples": "--examples", "batch_size": "--batch-size", "max_length": "--max-length",
         "points": "--points", "span": "--span", "margin": "--margin", "seed": "--seed", "k": "--k",
         "iters": "--iters", "samples": "--samples", "rho": "--rho", "eps": "--eps", "params": "--params"}
USED = {"slice1d": ("points", "span"), "slice2d": ("points", "span"), "interp": ("points", "margin"),
        "hessian": ("k", "iters", "samples"), "sharpness": ("rho", "eps")}
COMMON = ("split", "examples", "batch_size", "seed", "params")
ACTIVE = jobs.ACTIVE
COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown landscape kind {kind!r}; use one of {', '.join(KINDS)}")


# ------------------------------------------------------------------------------------- cost estimate
def n_params(run: Run, params: str = "all") -> int | None:
    """Parameters a probe perturbs, read from the best checkpoint's safetensors header (no model load).

    'encoder' counts tensors of transformer blocks ('.layer.' in the name), 'no_embeddings' all but the
    embeddings; None when the checkpoint is missing or not safetensors.
    """
    try:
        f = run.best_checkpoint() / "model.safetensors"
        with f.open("rb") as fh:
            (size,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(size))
    except (OSError, ValueError, struct.error, Exception):  # noqa: BLE001 - any unreadable checkpoint: unknown
        return None
    total = 0
    for name, info in header.items():
        if name == "__metadata__" or not isinstance(info, dict):
            continue
        if params == "encoder" and ".layer." not in name:
            continue
        if params == "no_embeddings" and ("embeddings." in name or name.startswith("embeddings")):
            continue
        total += math.prod(info.get("shape") or [1])
    return total or None


def n_examples(run: Run, split: str, examples: int) -> int:
    """Examples the probe will evaluate on: `examples`, capped by the split's size when the run recorded it."""
    size = ((run.raw_status().get("dataset") or {}).get("splits") or {}).get(split)
    if not examples:
        return int(size) if size else 0
    return int(min(examples, size)) if size else int(examples)


def estimate(run: Run, kind: str, settings: dict) -> dict:
    """{'probe_s', 'total_s', 'n_params', 'n_examples'}: estimate_cost (library) plus STARTUP_S."""
    s = ProbeSettings.from_any({k: v for k, v in settings.items() if k in ProbeSettings.__dataclass_fields__})
    n_p = n_params(run, s.params)
    n_e = n_examples(run, s.split, s.examples)
    probe = estimate_cost(kind, s, n_p or 22_700_000, n_e or s.examples or 256)
    return {"probe_s": probe, "total_s": probe + STARTUP_S, "n_params": n_p, "n_examples": n_e}


fmt_s = fmt_duration  # one duration format across pages (app/common.py)


def calibration(timings: list[dict | None]) -> float | None:
    """Measured / estimated probing time of saved probes (their median), to correct estimate_cost here."""
    ratios = sorted(t["seconds"] / t["estimated_seconds"] for t in timings
                    if t and t.get("estimated_seconds") and t["seconds"] > 0)
    return ratios[len(ratios) // 2] if ratios else None


# ------------------------------------------------------------------------------------- jobs
def build_command(run: Run, kind: str, settings: dict, other: str | None = None) -> list[str]:
    """The `uegr landscape ...` argument list of a probe (progress and stop go through uegr/jobs.py)."""
    _check_kind(kind)
    root = run.path.parent  # the run is named; its own runs folder finds it
    cmd = ["landscape", run.name, "--kind", kind, "--runs-dir", str(root)]
    for key in COMMON + USED[kind]:
        if key in settings and settings[key] is not None:
            cmd += [FLAGS[key], str(settings[key])]
    if kind == "interp":
        if not other:
            raise ValueError("an interpolation needs the other end: another run or 'pretrained'")
        cmd += ["--other", str(other)]
    return cmd


def launch_probe(run: Run, kind: str, settings: dict, other: str | None = None,
                 runs_dir: str | Path | None = None, threads: int | None = None,
                 estimated_s: float | None = None) -> dict:
    """Start `uegr landscape` on a run as a background job; returns its status (probe_status).

    estimated_s: the estimate the page showed (start-up included); default `estimate(...)['total_s']`.
    """
    store = RunStore(runs_dir or run.path.parent)
    for job in jobs.active(store, "landscape", run=run.name, probe=kind):
        raise RuntimeError(f"a {kind} probe of {run.name!r} is already running (job {job.id})")
    if kind == "interp" and other and Path(str(other)).name == run.name:
        raise ValueError(f"interpolating {run.name!r} with itself gives a flat line; choose another run")
    cmd = build_command(run, kind, settings, other)
    if estimated_s is None:
        estimated_s = estimate(run, kind, settings)["total_s"]
    jobs.start(cmd, store, "landscape", {"run": run.name, "probe": kind, "settings": dict(settings), "other": other,
                                         "estimated_s": round(float(estimated_s), 1)},
               env={"OMP_NUM_THREADS": str(int(threads))} if threads else None)
    return probe_status(run, kind, store)


def launch_many(runs: list[Run], kind: str, settings: dict, other: str | None = None,
                runs_dir: str | Path | None = None,
                estimates: dict[str, float] | None = None) -> tuple[list[dict], list[str]]:
    """Launch one probe per run, splitting the CPU threads between them; returns (jobs, error messages)."""
    threads = max(1, (os.cpu_count() or 1) // max(1, len(runs)))
    started, errors = [], []
    for run in runs:
        try:
            started.append(launch_probe(run, kind, settings, other, runs_dir, threads if len(runs) > 1 else None,
                                        (estimates or {}).get(run.name)))
        except (RuntimeError, ValueError, OSError) as exc:
            errors.append(f"{run.name}: {exc}")
    return started, errors


def probe_status(run: Run, kind: str, store: RunStore | None = None) -> dict | None:
    """The newest probe job of (run, kind): its info() plus kind, settings, fraction, label, result (the
    record this job saved), elapsed_s, estimated_s and log_tail. None when no probe was started as a job."""
    _check_kind(kind)
    store = store or RunStore(run.path.parent)
    job = jobs.latest(store, "landscape", run=run.name, probe=kind)
    if job is None:
        return None
    info = job.info()
    path = run.analyses_dir / f"landscape-{kind}.json"
    result = None
    if path.is_file() and path.stat().st_mtime >= (info["started"] or 0) - 1:
        try:
            result = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            result = None
    state = info["state"]
    if state == "completed" and result and result.get("stopped"):
        state = "stopped"
    frac = info["fraction"] or 0.0
    label = info["message"] or "starting (loading libraries, data and checkpoint)"
    if state == "completed":
        frac, label = 1.0, "done"
    return {**info, "state": state, "kind": kind, "job": job, "fraction": frac, "label": label, "result": result,
            "elapsed_s": time.time() - (info["started"] or time.time()), "log_tail": job.log_tail(12)}


def stop_probe(run: Run, kind: str) -> bool:
    """Ask a running probe to stop (it saves what it computed so far). False if none was running."""
    st = probe_status(run, kind)
    return bool(st) and st["job"].request_stop()


def jobs_for(runs: list[Run]) -> list[dict]:
    """The latest probe job of every kind for these runs."""
    return [st for run in runs for kind in KINDS if (st := probe_status(run, kind))]


def any_running(jobs_: list[dict]) -> bool:
    return any(j["state"] in jobs.ACTIVE for j in jobs_)


def wait(run: Run, kind: str, timeout: float = 300.0, poll: float = 0.5) -> dict | None:
    st = probe_status(run, kind)
    if st:
        st["job"].wait(timeout, poll)
    return probe_status(run, kind)


def results(run: Run, picks: dict[str, str] | None = None) -> dict[str, dict]:
    """{kind: saved record} of the run's landscape probes: the latest of each kind, or for a kind in
    `picks` the result with that history id (see `history`)."""
    out = {name[len("landscape-"):]: rec for name, rec in run.analyses("landscape-").items()
           if name[len("landscape-"):] in KINDS}
    for kind, hid in (picks or {}).items():
        hit = next((r for r in history(run, kind) if r.get("history_id") == hid), None)
        if hit is not None:
            out[kind] = hit
    return out


def history(run: Run, kind: str) -> list[dict]:
    """Every saved result of one probe kind for a run, newest first (each with a "history_id")."""
    _check_kind(kind)
    return run.analysis_history(f"landscape-{kind}")


def size_label(rec: dict) -> str:
    """'256 validation ex.': what a probe's losses were computed on."""
    s = rec.get("settings") or {}
    return f"{rec.get('n_examples', s.get('examples', '?'))} {s.get('split', '?')} ex."


def history_label(rec: dict) -> str:
    """One line per saved result for the history selector: time, size, seed and the kind's own knobs."""
    s = rec.get("settings") or {}
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(rec["created"])) if rec.get("created") else "earlier"
    knobs = ", ".join(f"{k} {s[k]}" for k in USED.get(rec.get("kind", ""), ()) if k in s)
    bits = [when, size_label(rec), f"seed {s.get('seed', '?')}"] + ([knobs] if knobs else [])
    return " · ".join(bits) + (" · partial" if rec.get("stopped") else "")


TABS = {"slice1d": "1-D slices", "slice2d": "2-D slice", "interp": "Interpolation", "hessian": "Hessian & sharpness",
        "sharpness": "Hessian & sharpness"}


def newest_kind(res: dict[str, dict[str, dict]]) -> str | None:
    """Kind of the most recently created result among {run: {kind: record}} (its tab opens first)."""
    best = max(((rec.get("created") or 0, kind) for per in res.values() for kind, rec in per.items()), default=None)
    return best[1] if best else None


def show(x, fmt: str = "{:.4g}") -> str:
    """A table cell: a formatted number, the text as is, or '—' for missing (never a literal 'None')."""
    if x is None or x == "" or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int | float):
        return fmt.format(x)
    return str(x)


_num = functools.partial(number_or_none, allow_inf=True)  # probe records keep infinite losses


def _grid_max(grid) -> float | None:
    vals = [_num(v) for row in grid or [] for v in row]
    vals = [v for v in vals if v is not None]
    return max(vals) if vals else None


def interp_barrier(rec: dict) -> float | None:
    """Highest loss between the two ends (0 <= α <= 1) above the higher end; ~0 = no barrier.

    The loss at α=1 is read off the curve by linear interpolation when α=1 is not a grid point; None when
    the curve does not reach α=1 (a stopped probe).
    """
    pts = [(float(a), _num(v)) for a, v in zip(rec.get("alphas") or [], rec.get("losses") or [])]
    pts = [(a, v) for a, v in pts if v is not None]
    if len(pts) < 2 or not pts[0][0] <= 1.0 <= pts[-1][0]:
        return None
    xs, ys = [a for a, _ in pts], [v for _, v in pts]
    l0 = _num(rec.get("loss"))
    l0 = float(np.interp(0.0, xs, ys)) if l0 is None else l0
    l1 = float(np.interp(1.0, xs, ys))
    inside = [v for a, v in pts if 0.0 <= a <= 1.0] + [l0, l1]
    return max(inside) - max(l0, l1)


def last_timing(run: Run, kind: str) -> dict | None:
    """{'seconds', 'estimated_seconds'} of the run's latest saved probe of this kind (probing only), or None."""
    rec = results(run).get(kind)
    if not rec or rec.get("seconds") is None:
        return None
    return {"seconds": float(rec["seconds"]), "estimated_seconds": _num(rec.get("estimated_seconds"))}


def summary_row(run: Run, method: str | None = None, res: dict[str, dict] | None = None) -> dict:
    """One table row: loss at the checkpoint (and what it was computed on), slice rises, top eigenvalue,
    trace, SAM and ε-sharpness. res: {kind: record} to show (default: the latest of each kind)."""
    res = results(run) if res is None else res
    s1, s2, it = res.get("slice1d") or {}, res.get("slice2d") or {}, res.get("interp") or {}
    h, sh = res.get("hessian") or {}, res.get("sharpness") or {}
    loss, loss_on = None, None
    for kind, r in (("slice1d", s1), ("slice2d", s2), ("hessian", h), ("interp", it)):
        if _num(r.get("loss")) is not None:
            loss, loss_on = _num(r["loss"]), f"{size_label(r)} ({kind})"
            break
    if loss is None and _num((sh.get("sam") or {}).get("loss")) is not None:
        loss, loss_on = _num(sh["sam"]["loss"]), f"{size_label(sh)} (sharpness)"
    eig = h.get("eigenvalues") or []
    g2 = _grid_max(s2.get("losses"))
    sam, eps = sh.get("sam") or {}, sh.get("eps") or {}
    stopped = [k for k, r in res.items() if r.get("stopped")]
    return {
        "run": run.name, "method": method if method is not None else run.summary()["method"],
        "loss": loss, "loss on": loss_on,
        "1-D max rise": _num(s1.get("max_increase")),
        "2-D max rise": (g2 - _num(s2["loss"])) if g2 is not None and _num(s2.get("loss")) is not None else None,
        "interp barrier": interp_barrier(it) if it else None,
        "top eigenvalue": _num(eig[0]) if eig else None,
        "Hessian trace": _num(h.get("trace")),
        "SAM sharpness": _num(sam.get("sharpness")),
        "ε-sharpness": _num(eps.get("sharpness")),
        "probes": ", ".join(k for k in KINDS if k in res) or "none",
        "partial (stopped)": ", ".join(stopped),
    }


def settings_caption(rec: dict) -> str:
    s = rec.get("settings") or {}
    bits = [f"{rec.get('n_examples', s.get('examples'))} {s.get('split', '?')} examples", f"seed {s.get('seed')}",
            f"params {s.get('params')}"]
    if rec.get("seconds") is not None:
        bits.append(f"{rec['seconds']:.1f} s")
    if rec.get("stopped"):
        bits.append("stopped early: partial")
    return ", ".join(str(b) for b in bits)


# ------------------------------------------------------------------------------------- figures
def _layout(fig: go.Figure, title: str, xtitle: str, ytitle: str, height: int = 420) -> go.Figure:
    fig.update_layout(title=title, xaxis_title=xtitle, yaxis_title=ytitle, height=height, hovermode="x unified",
                      margin={"l": 60, "r": 20, "t": 50, "b": 50}, legend={"orientation": "h", "y": -0.2})
    return fig


def _xy(rec: dict, relative: bool) -> tuple[list[float], list[float | None]]:
    xs = list(rec.get("alphas") or [])
    ys = [_num(v) for v in rec.get("losses") or []]
    base = _num(rec.get("loss")) if relative else 0.0
    ys = [None if v is None or base is None else v - base for v in ys]
    return xs[:len(ys)], ys


def slice1d_figure(recs: dict[str, dict], relative: bool = False) -> go.Figure:
    """Several runs' 1-D slices overlaid (recs: run name -> landscape-slice1d record)."""
    fig = go.Figure()
    for i, (name, rec) in enumerate(recs.items()):
        xs, ys = _xy(rec, relative)
        label = name + (" (partial)" if rec.get("stopped") else "")
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=label,
                                 line={"color": COLOURS[i % len(COLOURS)]}, marker={"size": 5}))
    fig.add_vline(x=0, line_dash="dot", line_color="gray")
    return _layout(fig, "Loss along a random filter-normalised direction",
                   "α (θ + α·d, d filter-normalised)", "loss − loss at α=0" if relative else "loss")


def interp_figure(recs: dict[str, dict]) -> go.Figure:
    """Interpolation curves: α=0 is the run, α=1 the other end (another run or the pretrained model)."""
    fig = go.Figure()
    for i, (name, rec) in enumerate(recs.items()):
        xs, ys = _xy(rec, False)
        other = rec.get("other") or "other"
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=f"{name} → {other}"
                                 + (" (partial)" if rec.get("stopped") else ""),
                                 line={"color": COLOURS[i % len(COLOURS)]}, marker={"size": 5}))
    for x, text in ((0, "α=0: the run"), (1, "α=1: the other end")):
        fig.add_vline(x=x, line_dash="dot", line_color="gray", annotation_text=text, annotation_position="top")
    return _layout(fig, "Loss on the straight line between two models", "α ((1−α)·θ_run + α·θ_other)", "loss")


def _grid(rec: dict) -> tuple[list[float], list[float], list[list[float | None]]]:
    """x = alphas (d1), y = betas (d2), z[j][i] = loss at (alpha_i, beta_j) as Plotly wants rows = y."""
    a, b = list(rec.get("alphas") or []), list(rec.get("betas") or rec.get("alphas") or [])
    g = rec.get("losses") or []
    z = [[_num(g[i][j]) if i < len(g) and j < len(g[i]) else None for i in range(len(a))] for j in range(len(b))]
    return a, b, z


def contour_figure(rec: dict, name: str = "") -> go.Figure:
    a, b, z = _grid(rec)
    fig = go.Figure(go.Contour(x=a, y=b, z=z, colorscale="Viridis", colorbar={"title": "loss"},
                               contours={"showlabels": True, "labelfont": {"size": 10, "color": "white"}},
                               hovertemplate="α=%{x:.2f}<br>β=%{y:.2f}<br>loss=%{z:.4f}<extra></extra>"))
    fig.add_trace(go.Scatter(x=[0], y=[0], mode="markers", marker={"symbol": "x", "size": 11, "color": "red"},
                             name="checkpoint", hoverinfo="skip"))
    fig.update_layout(showlegend=False)
    fig = _layout(fig, f"2-D slice of {name}: contour", "α (direction 1)", "β (direction 2)", height=460)
    fig.update_layout(hovermode="closest")
    return fig


def surface_figure(rec: dict, name: str = "") -> go.Figure:
    a, b, z = _grid(rec)
    fig = go.Figure(go.Surface(x=a, y=b, z=z, colorscale="Viridis", colorbar={"title": "loss"},
                               hovertemplate="α=%{x:.2f}<br>β=%{y:.2f}<br>loss=%{z:.4f}<extra></extra>"))
    fig.update_layout(title=f"2-D slice of {name}: surface", height=460, margin={"l": 0, "r": 0, "t": 50, "b": 0},
                      scene={"domain": {"x": [0.06, 1.0]}, "xaxis_title": "α", "yaxis_title": "β", "zaxis_title": "loss",
                             "camera": {"eye": {"x": 1.7, "y": -1.7, "z": 1.1}}})
    return fig
