"""Runs: every run in a table; config view and diff; metrics CSV; delete; open in Live."""

from __future__ import annotations

import streamlit as st

from app import common, jobs
from app.tables import config_diff, metrics_csv, runs_table
from uegr.runs import RunError

st.title("Runs")
common.show_flash()
store = common.store()
runs = store.list()
if not runs:
    st.info(f"No runs in `{store.root}` yet: start one on the Train page.")
    st.stop()

st.dataframe(runs_table(runs), hide_index=True, width="stretch",
             column_config={"best validation": st.column_config.NumberColumn(format="%.4f")})

names = [r.name for r in runs]
default = st.session_state.get("live_runs", [names[0]])[0] if st.session_state.get("live_runs") else names[0]
name = st.selectbox("Run", names, index=names.index(default) if default in names else 0, key="runs_pick")
run = store.get(name)
state = jobs.effective_state(run)
c1, c2 = st.columns([2, 3])
with c1:
    common.badge(state.get("state"))
    if state.get("error"):
        st.error(state["error"])
with c2:
    common.run_controls(run, "runs", state.get("state"))

t_cfg, t_diff, t_export, t_delete = st.tabs(["Config", "Diff with another run", "Export metrics", "Delete"])
with t_cfg:
    try:
        st.json(run.config().to_dict(), expanded=1)
    except (FileNotFoundError, ValueError) as exc:
        st.error(f"config.json unreadable: {exc}")
with t_diff:
    others = [n for n in names if n != name]
    if not others:
        st.caption("Only one run exists.")
    else:
        other = st.selectbox("Compare with", others, key="runs_other")
        rows = config_diff(run, store.get(other))
        if rows:
            st.dataframe(rows, hide_index=True, width="stretch")
        else:
            st.success("The two configs are identical.")
with t_export:
    kind = st.radio("Records", ["train", "eval", "all"], horizontal=True, key="runs_kind")
    has = run.metrics_path.is_file() and run.metrics_path.stat().st_size > 0
    st.download_button("Download metrics CSV", lambda: metrics_csv(run, None if kind == "all" else kind),
                       file_name=f"{run.name}-{kind}.csv", mime="text/csv", icon=":material/download:",
                       key="runs_download", disabled=not has,
                       help="Built when clicked: one row per logged record, one column per metric.")
    from uegr.trackers import tensorboard_hint

    st.caption(tensorboard_hint(run.path))
with t_delete:
    st.warning(f"Deleting removes the folder `{run.path}` with its checkpoints and metrics.")
    sure = st.checkbox(f"Yes, delete {run.name}", key=f"runs_confirm_{run.name}")
    if st.button("Delete run", disabled=not sure, type="primary", key="runs_delete", icon=":material/delete:"):
        try:
            store.delete(run.name)
        except RunError as exc:
            st.error(str(exc))
        else:
            st.session_state.get("live_series", {}).pop(run.name, None)
            common.flash(f"Deleted {run.name}")
            st.rerun()
