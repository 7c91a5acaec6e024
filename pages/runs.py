"""Runs: every run in a sortable, filterable table with its knobs and robustness; tags and notes; clone and
edit (opens Train prefilled); config view and diff; metrics CSV; delete; open in Live."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import colours, common
from app import config_form as F
from app.tables import (
    HYPER_COLUMNS,
    ROBUST_COLUMNS,
    config_diff,
    filter_rows,
    metrics_csv,
    runs_table,
    sort_rows,
)
from uegr import jobs
from uegr.report import build_report
from uegr.runs import RunError, read_annotations, write_annotations

st.title("Runs")
common.show_flash()
store = common.store()
runs = store.list()
if not runs:
    st.info(f"No runs in `{store.root}` yet: start one on the Train page.")
    st.stop()

# ------------------------------------------------------------------ filter and sort
rows = runs_table(runs)
all_tags = sorted({t.strip() for r in rows for t in r["tags"].split(",") if t.strip()})
f1, f2, f3, f4, f5, f6 = st.columns([3, 2, 2, 2, 2, 1.4])
text = f1.text_input("Search", key="runs_search", placeholder="name, data, model, notes or tag")
methods = f2.multiselect("Method", sorted({r["method"] for r in rows}), key="runs_methods")
states = f3.multiselect("Status", sorted({str(r["status"]) for r in rows}), key="runs_states")
tags = f4.multiselect("Tags", all_tags, key="runs_tags", disabled=not all_tags)
SORTABLE = ["created", "name", "method", "status", "best validation", "robust accuracy", "duration_s", *HYPER_COLUMNS]
sort_by = f5.selectbox("Sort by", SORTABLE, key="runs_sort",
                       format_func=lambda c: {"duration_s": "duration", "created": "newest"}.get(c, c))
descending = f6.toggle("Desc.", value=True, key="runs_desc")
shown = sort_rows(filter_rows(rows, text, methods, states, tags), sort_by, descending)
st.caption(f"{len(shown)} of {len(rows)} runs. Click a column header to sort the table in place too.")
view = pd.DataFrame([{k: v for k, v in r.items() if k not in ("duration_s", "created")} for r in shown])
if not view.empty:  # each name in its run's colour, the one its curves have on Live and Compare
    view = view.style.apply(lambda col: [f"color:{colours.run_colour(v)};font-weight:600" for v in col],
                            subset=["name"])
st.dataframe(
    view, hide_index=True, width="stretch", key="runs_table",
    column_order=["name", "method", "status", "tags", "best validation", *ROBUST_COLUMNS, "step", "duration",
                  *HYPER_COLUMNS, "data", "model", "notes"],
    column_config={"best validation": st.column_config.NumberColumn(format="%.4f"),
                   "robust accuracy": st.column_config.NumberColumn(format="%.3f",
                                                                    help="Worst accuracy under a saved attack"),
                   "lr": st.column_config.NumberColumn(format="%.1e")})

names = [r.name for r in runs]
default = st.session_state.get("live_runs", [names[0]])[0] if st.session_state.get("live_runs") else names[0]
name = st.selectbox("Run", names, index=names.index(default) if default in names else 0, key="runs_pick")
run = store.get(name)
state = jobs.run_state(run)
c1, c2, c3 = st.columns([2, 3, 1.2])
with c1:
    st.markdown(f"<span style='color:{colours.run_colour(run.name)};font-size:1.3rem'>●</span> **{run.name}**",
                unsafe_allow_html=True)
    common.badge(state.get("state"))
    if state.get("error"):
        st.error(state["error"])
with c2:
    common.run_controls(run, "runs", state.get("state"))
if c3.button("Clone and edit", key="runs_clone", icon=":material/content_copy:",
             help="Open the Train page with this run's settings filled in"):
    try:
        F.load_config(run.config(), clone_of=run.name)
    except (FileNotFoundError, ValueError) as exc:
        st.error(f"config.json unreadable: {exc}")
    else:
        st.switch_page(common.TRAIN_PAGE)

t_notes, t_cfg, t_diff, t_export, t_delete = st.tabs(["Tags and notes", "Config", "Diff with another run",
                                                       "Export metrics", "Delete"])
with t_notes:
    ann = read_annotations(run)
    with st.form(f"runs_ann_{run.name}", border=False):
        new_tags = st.text_input("Tags (comma-separated)", value=", ".join(ann["tags"]),
                                 placeholder="baseline, sst2, keep", key=f"runs_tags_in.{run.name}")
        new_notes = st.text_area("Notes", value=ann["notes"], height=110,
                                 placeholder="What this run tried, what you saw", key=f"runs_notes_in.{run.name}")
        if st.form_submit_button("Save", icon=":material/save:", key="runs_ann_save"):
            try:
                write_annotations(run, new_tags.split(","), new_notes)
            except (RunError, OSError) as exc:
                st.error(str(exc))
            else:
                common.flash(f"Saved tags and notes of {run.name}")
                st.rerun()
    st.caption(f"Stored in `{run.path / 'annotations.json'}` beside the run.")
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
        diff_rows = config_diff(run, store.get(other))
        if diff_rows:
            st.dataframe(diff_rows, hide_index=True, width="stretch")
        else:
            st.success("The two configs are identical.")
with t_export:
    kind = st.radio("Records", ["train", "eval", "all"], horizontal=True, key="runs_kind")
    has = run.metrics_path.is_file() and run.metrics_path.stat().st_size > 0
    st.download_button("Download metrics CSV", lambda: metrics_csv(run, None if kind == "all" else kind),
                       file_name=f"{run.name}-{kind}.csv", mime="text/csv", icon=":material/download:",
                       key="runs_download", disabled=not has,
                       help="Built when clicked: one row per logged record, one column per metric.")
    st.download_button("Download HTML report", lambda: build_report([run]), file_name=f"{run.name}-report.html",
                       mime="text/html", icon=":material/description:", key="runs_report",
                       help="One self-contained file (config, curves, saliency, landscape, attacks) that opens "
                            "offline in any browser; also `uegr report RUN -o report.html`.")
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
