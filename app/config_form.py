"""The Train form, generated from the config dataclasses and their metadata (uegr.config.field_docs:
label, help, which methods use a field).

Widget state lives under keys "cfg.<section>.<field>"; a plain copy is kept in
st.session_state["cfg_values"] so values survive page switches (Streamlit drops the state of widgets
that are not rendered). `collect()` turns the widget values into a validated Config or a
{field: message} dict of errors, which the page shows next to each field.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from pathlib import Path

import streamlit as st

from uegr import config as C

SECTION_TITLES = {"data": "Data", "model": "Model", "method": "Method", "optim": "Optimisation",
                  "runtime": "Runtime"}
# Widgets follow the schema (uegr.config.FIELD_META): a field with choices is a select box, a list field with
# choices a multiselect, then by type (checkbox, whole-number or number input, text).
_CHOICE_FIELDS = {f"{s}.{f}": (info["type"], C.choices_of(f"{s}.{f}")) for s, fs in C.field_docs().items()
                  for f, info in fs.items() if C.field_meta(f"{s}.{f}")["choices"] is not None}
CHOICES = {d: c for d, (t, c) in _CHOICE_FIELDS.items() if not t.startswith("list")}
MULTI = {d: c for d, (t, c) in _CHOICE_FIELDS.items() if t.startswith("list")}
# Fields drawn by the page itself (data source picker, model picker), not by the generic loop.
CUSTOM = {"data.source", "data.text_column", "data.text_pair_column", "data.label_column", "data.label_names",
          "model.name", "runtime.device"}

# Method sub-groups, so the method fields read as the two stages + each baseline's own knobs. Only the
# fields the chosen method uses (uegr.config.FIELD_META[...]["methods"]) are drawn.
METHOD_GROUPS = [
    ("Stage 1 · adversary", ["adv_enabled", "adv_steps", "adv_norm", "adv_eps", "adv_lr", "adv_init"]),
    ("Stage 1 · adaptive dropout", ["k", "p_min", "p_max", "rate_rule", "js_target", "feedback_step",
                                    "dropout_targets"]),
    ("Stage 1 · losses", ["lambda_adv", "lambda_js", "js_include_clean"]),
    ("Stage 2 · saliency and selective update", ["selective_update", "saliency", "saliency_decay", "keep_ratio",
                                                 "mask_scope", "mask_rule", "bernoulli_alpha", "bernoulli_beta",
                                                 "refresh_every", "mask_warmup", "freeze_moments"]),
    ("R-Drop", ["rdrop_alpha"]),
    ("RoAST", ["roast_kl"]),
    ("CHILD-TUNING_D", ["childtuning_batches"]),
    ("FreeLB", ["freelb_steps", "freelb_lr", "freelb_init", "freelb_max_norm"]),
]
# Limits a preset sets that a user must see (they are easy to miss when the dataset changes).
LIMIT_FIELDS = ["data.max_train_examples", "data.max_eval_examples", "data.max_length", "data.group_by_length"]


def label_of(dotted: str) -> str:
    return C.field_meta(dotted)["label"]


def help_of(dotted: str, default=None) -> str:
    """Tooltip: the help text, then the field's name (for the CLI/YAML) and its built-in default."""
    meta = C.field_meta(dotted)
    tail = f"Field `{dotted}`" + (f", built-in default {default!r}." if default is not None else ".")
    return (meta["help"] + "  \n" if meta["help"] else "") + tail


def key(dotted: str) -> str:
    return f"cfg.{dotted}"


def all_fields() -> list[tuple[str, str, str]]:
    """(section, field, type string) for every config field."""
    return [(s, f, info["type"]) for s, fs in C.field_docs().items() for f, info in fs.items()]


def preset_values(preset: str) -> dict[str, object]:
    cfg = C.build_config(preset if preset != "(defaults)" else None)
    d = cfg.to_dict()
    return {f"{s}.{f}": d[s][f] for s, f, _ in all_fields()}


def widget_value(dotted: str, value):
    """Config value -> the widget's representation."""
    if dotted == "data.label_names":
        return ", ".join(value)
    return list(value) if isinstance(value, list) else value


def load_preset(preset: str) -> None:
    st.session_state.pop("cfg_clone_of", None)
    vals = preset_values(preset)
    st.session_state["cfg_values"] = dict(vals)
    for dotted, v in vals.items():
        st.session_state[key(dotted)] = widget_value(dotted, v)
    for k in [k for k in st.session_state if str(k).startswith("ui.")]:
        del st.session_state[k]  # source/model pickers are re-derived from the new values


def load_config(cfg: C.Config, clone_of: str | None = None) -> None:
    """Fill the form from an existing config (Runs page: clone and edit)."""
    d = cfg.to_dict()
    vals = {f"{s}.{f}": d[s][f] for s, f, _ in all_fields() if s in d and f in d[s]}
    st.session_state["cfg_values"] = dict(vals)
    for dotted, v in vals.items():
        st.session_state[key(dotted)] = widget_value(dotted, v)
    for k in [k for k in st.session_state if str(k).startswith("ui.")]:
        del st.session_state[k]
    st.session_state["cfg_clone_of"] = clone_of
    if clone_of:
        st.session_state["ui_run_name"] = ""


def ensure_state(preset: str = "quick-demo") -> None:
    """Restore widget values from the persistent copy (first visit: from the preset)."""
    if "cfg_values" not in st.session_state:
        load_preset(preset)
        return
    for dotted, v in st.session_state["cfg_values"].items():
        if key(dotted) not in st.session_state:
            st.session_state[key(dotted)] = widget_value(dotted, v)


def remember() -> None:
    vals = st.session_state.setdefault("cfg_values", {})
    for s, f, _ in all_fields():
        k = key(f"{s}.{f}")
        if k in st.session_state:
            v = st.session_state[k]
            vals[f"{s}.{f}"] = [x.strip() for x in v.split(",") if x.strip()] if f == "label_names" else v


def error_slot(dotted: str, slots: dict) -> None:
    """A placeholder under the field where its validation error goes (filled by show_errors)."""
    slots[dotted] = st.empty()


def show_errors(errors: dict[str, str], slots: dict) -> None:
    for dotted, msg in errors.items():
        target = slots.get(dotted)
        (target or st).error(f"**{label_of(dotted)}** (`{dotted}`): {msg}", icon=":material/error:")


def field_defaults() -> dict:
    return {f"{s}.{f}": info["default"] for s, fs in C.field_docs().items() for f, info in fs.items()}


def render_field(section: str, name: str, type_s: str, defaults: dict, slots: dict) -> None:
    dotted = f"{section}.{name}"
    k = key(dotted)
    label = label_of(dotted)
    help_ = help_of(dotted, defaults.get(dotted))
    if dotted in CHOICES:
        st.selectbox(label, CHOICES[dotted], key=k, help=help_)
    elif dotted in MULTI:
        st.multiselect(label, MULTI[dotted], key=k, help=help_)
    elif "bool" in type_s:
        st.checkbox(label, key=k, help=help_)
    elif "int" in type_s:
        st.number_input(label, key=k, step=1, help=help_)
    elif "float" in type_s:
        v = abs(float(st.session_state.get(k) or defaults[dotted] or 0.1))
        step = 10 ** (int(f"{v:e}".split("e")[1])) if v else 0.01
        st.number_input(label, key=k, step=float(step), format="%g", help=help_)
    else:
        st.text_input(label, key=k, help=help_)
    error_slot(dotted, slots)


def chosen_method() -> str:
    return str(st.session_state.get(key("method.name")) or "uegr")


def method_groups(method: str) -> list[tuple[str, list[str]]]:
    """The method's own knobs, grouped; groups it does not use are left out."""
    docs = C.field_docs()["method"]
    grouped = {n for _, ns in METHOD_GROUPS for n in ns}
    groups = [(t, [n for n in ns if n in docs and C.used_by(f"method.{n}", method)]) for t, ns in METHOD_GROUPS]
    rest = [n for n in docs if n not in grouped and n != "name" and C.used_by(f"method.{n}", method)]
    if rest:  # fields added to the dataclass later still get a widget
        groups.append(("Other", rest))
    return [(t, ns) for t, ns in groups if ns]


def render_section(section: str, slots: dict, columns: int = 3, skip: set | None = None) -> None:
    defaults = field_defaults()
    docs = C.field_docs()[section]
    skip = set(skip or ()) | CUSTOM
    if section == "method":
        from app.common import provenance_md

        for title, names in method_groups(chosen_method()):
            paper = [label_of(f"method.{n}") for n in names if C.field_meta(f"method.{n}")["source"] == "paper"]
            project = [n for n in names if C.field_meta(f"method.{n}")["source"] == "project"]
            marks = (f"{provenance_md('paper')} {', '.join(paper)}" if paper else "") + \
                (f" {provenance_md('project')} {'the rest' if paper else 'all'}" if project else "")
            st.markdown(f"**{title}** {marks}")
            cols = st.columns(columns)
            for i, n in enumerate(names):
                with cols[i % columns]:
                    render_field(section, n, docs[n]["type"], defaults, slots)
        return
    names = [n for n in docs if f"{section}.{n}" not in skip]
    cols = st.columns(columns)
    for i, n in enumerate(names):
        with cols[i % columns]:
            render_field(section, n, docs[n]["type"], defaults, slots)


def _message(exc: C.ConfigError) -> str:
    return f"{exc.value!r} is not allowed: {exc.allowed}"


def collect() -> tuple[C.Config | None, dict[str, str]]:
    """Widget values -> (validated Config, {}) or (None, {field: message}) with EVERY invalid field.

    Method knobs the chosen method does not use keep their built-in defaults, so a vanilla config never
    carries UEGR settings that were edited while another method was selected."""
    cfg = C.Config()
    errors: dict[str, str] = {}
    values = {**st.session_state.get("cfg_values", {})}
    method = chosen_method()
    for s, f, _ in all_fields():
        dotted = f"{s}.{f}"
        v = st.session_state[key(dotted)] if key(dotted) in st.session_state else values.get(dotted)
        if v is None or (s == "method" and not C.used_by(dotted, method)):
            continue
        try:
            C.set_field(cfg, dotted, v)
        except C.ConfigError as exc:
            errors[exc.field] = _message(exc)
    for dotted, exc in C.all_errors(cfg).items():
        errors.setdefault(dotted, _message(exc))
    return (None, errors) if errors else (cfg, {})


def preset_limits(preset: str) -> dict[str, object]:
    """The limits a preset sets that differ from the built-in defaults (shown next to the dataset)."""
    if preset == "(defaults)":
        return {}
    vals, defaults = preset_values(preset), field_defaults()
    return {d: vals[d] for d in LIMIT_FIELDS if vals[d] != defaults[d]}


# ------------------------------------------------------------------------------------------ estimate
# Seconds per step per (example x token x forward pass) on CPU, from docs/benchmarks.md (MiniLM vanilla
# 1.34 s/step at 32 x 48 on 2 cores; a tiny 2-layer BERT is ~300x cheaper). Used only when the runs
# folder holds no finished run of the same model to learn from.
UNIT_COST = {"minilm": 1.34 / (32 * 48), "tiny-bert": 0.0045 / (32 * 48)}


def passes(cfg: C.Config) -> float:
    """Forward+backward passes per step relative to vanilla (measured: UEGR K=3 ~4x vanilla)."""
    m = cfg.method
    return {"vanilla": 1.0, "childtuning": 1.0, "rdrop": 2.0, "roast": 2.0,
            "freelb": float(m.freelb_steps), "uegr": 1.0 + m.k}.get(m.name, 1.0)


def total_steps(cfg: C.Config, n_train: int | None) -> int | None:
    o = cfg.optim
    if o.max_steps:
        return o.max_steps
    if not n_train:
        return None
    n = min(n_train, cfg.data.max_train_examples) if cfg.data.max_train_examples else n_train
    return max(1, math.ceil(o.epochs * math.ceil(n / o.batch_size)))


def estimate_seconds(cfg: C.Config, n_train: int | None, history: list[dict] | None = None) -> float | None:
    """Rough wall time of a run: steps x seconds per step. Seconds per step come from finished runs of the
    same model here (scaled by batch, length and passes), else from UNIT_COST; None when unknown."""
    steps = total_steps(cfg, n_train)
    if steps is None:
        return None
    work = cfg.optim.batch_size * cfg.data.max_length * passes(cfg)
    units = [h["seconds_per_step"] / h["work"] for h in history or []
             if h.get("model") == cfg.model.name and h.get("work") and h.get("seconds_per_step")]
    if units:
        unit = sorted(units)[len(units) // 2]
    elif cfg.model.name in UNIT_COST:
        unit = UNIT_COST[cfg.model.name]
    else:
        return None
    return steps * unit * work


def run_history(runs) -> list[dict]:
    """Seconds per step of finished runs, with the work per step they did (for `estimate_seconds`)."""
    out = []
    for r in runs:
        try:
            s, cfg = r.summary(), r.config()
        except (OSError, ValueError):
            continue
        if s.get("state") == "completed" and s.get("duration_s") and s.get("step"):
            out.append({"model": cfg.model.name, "seconds_per_step": s["duration_s"] / s["step"],
                        "work": cfg.optim.batch_size * cfg.data.max_length * passes(cfg)})
    return out


# ------------------------------------------------------------------------------------------ uploads
SAFE = re.compile(r"[^A-Za-z0-9_.-]+")
UPLOAD_SUFFIXES = (".csv", ".json", ".jsonl")
MAX_UPLOAD_BYTES = 20 * 2**20


def sanitise_name(name: str) -> str:
    base = Path(name.replace("\\", "/")).name  # drop any client-side directories
    stem, dot, suffix = base.rpartition(".")
    if not dot:
        stem, suffix = base, ""
    stem = SAFE.sub("_", stem).strip("._-")[:80] or "upload"
    suffix = suffix.lower()
    return f"{stem}.{suffix}" if suffix else stem


def save_upload(name: str, data: bytes, uploads: Path) -> Path:
    """Write an uploaded file under the runs folder's _uploads/ only, content-addressed:
    _uploads/<sha256 prefix>/<sanitised name>. A re-upload under the same name with other bytes lands in
    another folder, so the data a run was trained (and is later evaluated) on never changes under it.
    Raises ValueError when refused."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise ValueError(f"the file is {len(data) / 2**20:.1f} MB; the limit is {MAX_UPLOAD_BYTES // 2**20} MB")
    safe = sanitise_name(name)
    if not safe.endswith(UPLOAD_SUFFIXES):
        raise ValueError(f"{name!r}: only {', '.join(UPLOAD_SUFFIXES)} files are accepted")
    digest = hashlib.sha256(data).hexdigest()[:16]
    folder = uploads / digest
    folder.mkdir(parents=True, exist_ok=True)
    target = (folder / safe).resolve()
    if target.parent != folder.resolve() or uploads.resolve() not in target.parents:
        raise ValueError(f"refusing to write {target} outside {uploads}")
    if not target.is_file() or hashlib.sha256(target.read_bytes()).hexdigest()[:16] != digest:
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.chmod(0o444)  # content-addressed: never edited in place
        tmp.replace(target)
    return target
