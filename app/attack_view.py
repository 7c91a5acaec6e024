"""Helpers for the Attack lab: cached models / data / recipes, and HTML for word diffs and attributions.

Every piece of user or model text that reaches HTML goes through html.escape.
"""

from __future__ import annotations

import dataclasses
import html
import json
from pathlib import Path

import streamlit as st

from uegr.runs import Run

# Signed attribution colours: red = evidence FOR the target class, blue = AGAINST it.
POS_RGB = (214, 39, 40)
NEG_RGB = (31, 119, 180)
DIFF_STYLE = {
    "removed": "background:#fdd;color:#900;text-decoration:line-through;border-radius:3px;padding:0 2px",
    "added": "background:#dfd;color:#060;font-weight:600;border-radius:3px;padding:0 2px",
}
BOX = ("line-height:2.0;font-size:0.95rem;padding:0.4rem 0.6rem;border:1px solid rgba(128,128,128,.3);"
       "border-radius:6px")


# ---------------------------------------------------------------------------------------------- HTML
def diff_html(words: list, side: str, text: str | None = None) -> str:
    """Words [(word, changed)] as HTML; changed words are marked 'removed' (original) or 'added'.

    With `text` (the sentence the words came from) the sentence is shown as written, punctuation included,
    with the words located in order; a word that cannot be found falls back to joining the words."""
    style = DIFF_STYLE["removed" if side == "original" else "added"]
    pairs = [(str(it[0]), bool(it[1])) if isinstance(it, (list, tuple)) else (str(it), False) for it in words or []]

    def mark(w: str, changed: bool) -> str:
        w = html.escape(w)
        return f'<span style="{style}">{w}</span>' if changed else w

    body = None
    if text:
        parts, pos = [], 0
        for w, changed in pairs:
            at = text.find(w, pos)
            if at < 0:
                break
            parts.append(html.escape(text[pos:at]) + mark(w, changed))
            pos = at + len(w)
        else:
            body = "".join(parts) + html.escape(text[pos:])
    if body is None:
        body = " ".join(mark(w, c) for w, c in pairs)
    return f'<div style="{BOX}">{body or "&nbsp;"}</div>'


def _colour(score: float) -> str:
    s = max(-1.0, min(1.0, float(score)))
    r, g, b = POS_RGB if s >= 0 else NEG_RGB
    return f"rgba({r},{g},{b},{abs(s) * 0.85:.3f})"


def attribution_html(tokens: list[str], scores: list[float]) -> str:
    """Tokens with a background whose colour is the sign and whose opacity is |score| (max |score| = 1)."""
    parts = []
    for t, s in zip(tokens, scores, strict=False):
        fg = "#fff" if abs(s) > 0.55 else "inherit"
        parts.append(f'<span title="{s:+.3f}" style="background:{_colour(s)};color:{fg};border-radius:3px;'
                     f'padding:1px 3px;margin:0 1px">{html.escape(str(t))}</span>')
    return f'<div style="{BOX}">{"".join(parts) or "&nbsp;"}</div>'


def legend_html() -> str:
    stops = ", ".join(_colour(v) for v in (-1, -0.5, 0, 0.5, 1))
    return ('<div style="display:flex;align-items:center;gap:0.5rem;font-size:0.85rem">'
            '<span>against the target class</span>'
            f'<span style="display:inline-block;width:180px;height:12px;border-radius:3px;'
            f'background:linear-gradient(to right, {stops});border:1px solid rgba(128,128,128,.4)"></span>'
            '<span>for the target class</span></div>')


def pct(x) -> str:
    return "-" if x is None else f"{100 * float(x):.1f}%"


# ---------------------------------------------------------------------------------------------- cache
@st.cache_data(show_spinner=False, ttl=600)
def recipes() -> list[dict]:
    from uegr.attacks import list_recipes

    return list_recipes()


@st.cache_resource(show_spinner="Loading model...", max_entries=8)
def _load(path: str, mtime: float):
    """(model, tokenizer) in eval mode; shared by all sessions, never trained or modified."""
    from uegr.models import load_checkpoint

    model, tok = load_checkpoint(path)
    model.eval()
    for p in model.parameters():  # attributions need gradients w.r.t. embeddings only, never weights
        p.requires_grad_(False)
    return model, tok


def load(path: str | Path):
    p = Path(path)
    cfg = p / "config.json"
    return _load(str(p.resolve()), cfg.stat().st_mtime if cfg.is_file() else 0.0)


def label_names(model) -> list[str] | None:
    id2label = getattr(model.config, "id2label", None) or {}
    names = [str(id2label[i]) for i in sorted(id2label)] if id2label else []
    return None if not names or all(n.startswith("LABEL_") for n in names) else names


def _data_key(run: Run) -> str:
    return json.dumps(dataclasses.asdict(dataclasses.replace(run.config().data, max_eval_examples=0)),
                      sort_keys=True)


@st.cache_data(show_spinner="Loading the run's data...", max_entries=8)
def _examples(data_key: str, split: str, limit: int) -> tuple[list[str], list[int], list[str]]:
    from uegr.config import DataConfig
    from uegr.data import load_dataset

    ds = load_dataset(DataConfig(**json.loads(data_key)))
    sp = ds.splits.get(split)
    if sp is None:
        return [], [], list(ds.label_names)
    return list(sp.texts[:limit]), list(sp.labels[:limit]), list(ds.label_names)


def examples(run: Run, split: str, limit: int = 200):
    """(texts, labels, label_names) of the first `limit` examples of a run's split ([] if absent)."""
    return _examples(_data_key(run), split, limit)


@st.cache_data(show_spinner=False, max_entries=8)
def _splits(data_key: str) -> list[str]:
    from uegr.config import DataConfig
    from uegr.data import load_dataset

    return list(load_dataset(DataConfig(**json.loads(data_key))).splits)


def splits(run: Run) -> list[str]:
    return _splits(_data_key(run))


# ---------------------------------------------------------------------------------------------- work
def attack_and_explain(path: str, text: str, label: int | None, recipe: str, query_budget: int,
                       max_perturb: float | None, steps: int) -> dict:
    """Attack one sentence on one model, then attribute the original and the adversarial sentence to the
    class the model originally predicted (attack target). Returns {"record", "attr_orig", "attr_adv"}."""
    from uegr.attacks import attack_sentence
    from uegr.explain import attribute

    model, tok = load(path)
    names = label_names(model)
    rec = attack_sentence(model, tok, text, label=label, recipe=recipe, query_budget=query_budget or None,
                          max_perturb_fraction=max_perturb, label_names=names)
    target = int(rec["original_prediction"])
    fast = getattr(tok, "is_fast", False)
    a_orig = attribute(model, tok, rec["original_text"], target=target, steps=steps, words=fast, label_names=names)
    a_adv = attribute(model, tok, rec["perturbed_text"], target=target, steps=steps, words=fast, label_names=names)
    return {"record": rec, "attr_orig": a_orig, "attr_adv": a_adv}


# ---------------------------------------------------------------------------------------------- datasets
RESULT_WORDS = {"successful": "flipped", "failed": "held", "skipped": "already wrong"}


def changes_text(original: str, perturbed: str) -> str:
    """The word edits of one record as 'old → new' pairs (records of dataset attacks keep no word lists)."""
    from uegr.attacks.runner import word_diff

    a, b = word_diff(original.split(), perturbed.split())
    if len(a) == len(b):
        return " · ".join(f"{x} → {y}" for (x, c), (y, _) in zip(a, b, strict=True) if c) or "-"
    removed = " ".join(w for w, c in a if c)
    added = " ".join(w for w, c in b if c)
    return f"{removed or '∅'} → {added or '∅'}"


def records_table(records: list[dict]) -> list[dict]:
    """One row per attacked example: what a reader scans first (result, the sentences, the edits, cost)."""
    rows = []
    for r in records:
        skipped = r["result"] == "skipped"
        rows.append({"#": r.get("index"), "result": RESULT_WORDS.get(r["result"], r["result"]),
                     "changes": "-" if skipped else changes_text(r["original_text"], r["perturbed_text"]),
                     "original": r["original_text"], "adversarial": "" if skipped else r["perturbed_text"],
                     "words changed": r.get("words_changed", 0), "queries": r.get("num_queries"),
                     "prediction": f"{r.get('original_prediction_name', r.get('original_prediction'))} → "
                                   f"{r.get('perturbed_prediction_name', r.get('perturbed_prediction'))}"})
    return rows


def flip_gallery(records_a: list[dict], records_b: list[dict]) -> dict[str, list[dict]]:
    """Sentences both runs were attacked on where exactly one model flips: {"a_holds": [...], "b_holds": [...]}.

    Each item: index, original text, and the adversarial sentence that fooled the other model."""
    by_a = {r["index"]: r for r in records_a if "index" in r}
    by_b = {r["index"]: r for r in records_b if "index" in r}
    out: dict[str, list[dict]] = {"a_holds": [], "b_holds": []}
    for i in sorted(set(by_a) & set(by_b)):
        ra, rb = by_a[i], by_b[i]
        if ra["original_text"] != rb["original_text"]:
            continue
        if ra["result"] == "failed" and rb["result"] == "successful":
            out["a_holds"].append({"index": i, "original": ra["original_text"], "fooled_other": rb["perturbed_text"],
                                   "changes": changes_text(rb["original_text"], rb["perturbed_text"])})
        elif rb["result"] == "failed" and ra["result"] == "successful":
            out["b_holds"].append({"index": i, "original": rb["original_text"], "fooled_other": ra["perturbed_text"],
                                   "changes": changes_text(ra["original_text"], ra["perturbed_text"])})
    return out


def explain_pair(path: str, original: str, perturbed: str, target: int, steps: int = 32) -> tuple[dict, dict]:
    """Integrated-Gradients attributions of both sentences to the class predicted on the original."""
    from uegr.explain import attribute

    model, tok = load(path)
    names = label_names(model)
    fast = getattr(tok, "is_fast", False)
    return (attribute(model, tok, original, target=target, steps=steps, words=fast, label_names=names),
            attribute(model, tok, perturbed, target=target, steps=steps, words=fast, label_names=names))
