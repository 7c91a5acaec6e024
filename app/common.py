"""Shared Streamlit helpers: the runs folder, cached loaders, status badges, navigation to Live."""

from __future__ import annotations

import os
import time
from pathlib import Path

import streamlit as st

from uegr.runs import RunStore, default_root

LIVE_PAGE = "../pages/live.py"  # st.switch_page paths are relative to app/streamlit_app.py
TRAIN_PAGE = "../pages/train.py"
SWEEP_PAGE = "../pages/sweep.py"
COMPARE_PAGE = "../pages/compare.py"
RUNS_PAGE = "../pages/runs.py"

BADGE_COLOURS = {"queued": "gray", "running": "blue", "completed": "green", "failed": "red",
                 "stopped": "orange", "interrupted": "violet", "damaged": "red"}
BADGE_ICONS = {"queued": ":material/schedule:", "running": ":material/autorenew:",
               "completed": ":material/check_circle:", "failed": ":material/error:",
               "stopped": ":material/stop_circle:", "interrupted": ":material/warning:",
               "damaged": ":material/broken_image:"}


def runs_root() -> Path:
    """$UEGR_HOME, default ./runs (relative to where the app was started), as an absolute path."""
    return default_root().resolve()


def store() -> RunStore:
    return RunStore(runs_root())


def uploads_dir() -> Path:
    return runs_root() / "_uploads"


@st.cache_resource(show_spinner=False)
def devices() -> dict:
    """CPU threads and accelerators (CUDA with memory, MPS). Cached for the server's life."""
    info = {"cpu_count": os.cpu_count() or 1, "torch_threads": None, "torch": None, "cuda": [], "mps": False}
    try:
        import torch
    except ImportError:
        return info
    info["torch"] = torch.__version__
    info["torch_threads"] = torch.get_num_threads()
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            info["cuda"].append({"index": i, "name": p.name, "memory_gb": round(p.total_memory / 2**30, 1)})
    mps = getattr(torch.backends, "mps", None)
    info["mps"] = bool(mps and mps.is_available())
    return info


@st.cache_data(show_spinner=False, ttl=60)
def named_datasets(data_dir: str) -> list[str]:
    from uegr.config import DataConfig
    from uegr.data import available_named

    return available_named(DataConfig(data_dir=data_dir))


# ------------------------------------------------------------------ paper vs project
# One small marker wherever a method claim or a reconstructed choice is shown. Only the paper's abstract is
# public (docs/method.md): "paper" = the abstract says it; "project" = this project's reconstruction;
# "not reproduced" = the paper claims it, and docs/results.md did not find it at this scale.
PROVENANCE = {
    "paper": ("paper", "blue", ":material/menu_book:",
              "Stated in the paper's abstract (arXiv 2503.16550), the only part of the paper available."),
    "project": ("project choice", "orange", ":material/build:",
                "Not in the abstract: this project's reconstruction, a config field you can change."),
    "not reproduced": ("not reproduced here", "red", ":material/science:",
                       "Claimed by the paper; docs/results.md did not reproduce it at this scale."),
}


def provenance(kind: str, note: str | None = None, container=None) -> None:
    """The paper-vs-project marker: a small badge whose tooltip says what it means (and `note`, if given)."""
    label, colour, icon, meaning = PROVENANCE[kind]
    (container or st).badge(label, color=colour, icon=icon, help=meaning + (f"\n\n{note}" if note else ""))


def provenance_row(items: list[tuple[str, str, str | None]]) -> None:
    """Markers with what each covers, [(kind, what it covers, tooltip note)], each pair kept together."""
    with st.container(horizontal=True, vertical_alignment="center", gap="medium"):
        for kind, text, note in items:
            with st.container(horizontal=True, vertical_alignment="center", width="content", gap="small"):
                provenance(kind, note)
                st.caption(text)


def provenance_md(kind: str) -> str:
    """The same marker inline in Markdown (labels, captions, table-free text)."""
    label, colour, icon, _ = PROVENANCE[kind]
    return f":{colour}-badge[{icon} {label}]"


def badge(state: str | None) -> None:
    state = state or "queued"
    st.badge(state, color=BADGE_COLOURS.get(state, "gray"), icon=BADGE_ICONS.get(state))


def fmt_duration(seconds: float | None) -> str:
    """12 s, 3m05s, 1h02m; '<1 s' below a second, '-' when unknown."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return "<1 s"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s} s")


def fmt_time(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else "-"


def open_in_live(names: list[str] | str) -> None:
    """Select runs for the Live page and go there."""
    names = [names] if isinstance(names, str) else list(names)
    st.session_state["live_runs"] = names
    st.query_params.clear()
    st.switch_page(LIVE_PAGE, query_params={"run": names[0]} if names else None)


def flash(message: str, kind: str = "success") -> None:
    """A message shown once on the next render (survives st.rerun)."""
    st.session_state.setdefault("_flash", []).append((kind, message))


def show_flash() -> None:
    for kind, msg in st.session_state.pop("_flash", []):
        getattr(st, kind)(msg)


def run_controls(run, key_prefix: str, state: str | None = None) -> None:
    """Stop / Resume / Open in Live buttons for one run."""
    from uegr import jobs
    from uegr.runs import RunError

    state = state or jobs.run_state(run).get("state")
    c1, c2, c3 = st.columns([1, 1, 1.3])
    if c1.button("Stop", key=f"{key_prefix}.stop.{run.name}", icon=":material/stop:",
                 disabled=not jobs.can_stop(state), help="Ask the run to checkpoint and stop"):
        jobs.stop_run(run)
        st.toast(f"Stop requested for {run.name}")
    if c2.button("Resume", key=f"{key_prefix}.resume.{run.name}", icon=":material/play_arrow:",
                 disabled=not jobs.can_resume(state), help="Continue from the last checkpoint"):
        try:
            jobs.resume_run(run, store())
            st.toast(f"Resumed {run.name}")
        except RunError as exc:
            st.error(str(exc))
    if c3.button("Open in Live", key=f"{key_prefix}.live.{run.name}", icon=":material/monitoring:"):
        open_in_live(run.name)


def jobs_panel(kind: str | None = None, key: str = "jobs", limit: int = 10, **labels) -> list[dict]:
    """The background jobs of this runs folder (uegr/jobs.py; state on disk, so every session sees the same
    list): a table, and a Stop button per running job. Returns the rows shown."""
    from uegr import jobs

    rows = [j.info() for j in jobs.list_jobs(store(), kind, **labels)[:limit]]
    if not rows:
        st.caption("No background jobs yet.")
        return rows
    table = [{"job": r["id"], "kind": r["kind"], "run / study": r.get("run") or r.get("study") or "",
              "state": r["state"],
              "progress": f"{r['step']}/{r['total']}" if r.get("total") else "",
              "left": f"{r['eta_s']:.0f} s" if r.get("eta_s") is not None and r["state"] in jobs.ACTIVE else "",
              "message": r.get("error") or r.get("message") or ""} for r in rows]
    st.dataframe(table, hide_index=True, width="stretch", key=f"{key}.table")
    for r in rows:
        if r["state"] not in jobs.ACTIVE:
            continue
        force = r["state"] == "stopping"  # it was asked already: this one sends SIGTERM
        if st.button(f"{'Force stop' if force else 'Stop'} {r['id']}", key=f"{key}.stop.{r['id']}",
                     icon=":material/stop:", help="SIGTERM to the job's processes" if force else
                     "Ask the job to stop; it keeps what it finished"):
            jobs.get(store(), r["id"]).request_stop(force=force)
            st.rerun()
    return rows
