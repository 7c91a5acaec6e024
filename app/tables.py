"""Tables for the Runs page (no Streamlit import): summary rows, config diff, metrics CSV."""

from __future__ import annotations

import csv
import io

from uegr.runs import Run

HYPER_COLUMNS = ["lr", "batch", "epochs", "max length", "train examples", "K", "keep ratio", "adv eps"]
ROBUST_COLUMNS = ["robust accuracy", "worst attack", "attacks"]


def _hyper(cfg) -> dict:
    """The knobs people sort and filter by; a knob the run's method does not use is None."""
    from uegr.config import used_by

    m, o, d = cfg.method, cfg.optim, cfg.data
    return {"lr": o.lr, "batch": o.batch_size, "epochs": o.max_steps and f"{o.max_steps} steps" or f"{o.epochs:g}",
            "max length": d.max_length, "train examples": d.max_train_examples or "all",
            "K": m.k if used_by("method.k", m.name) else None,
            "keep ratio": m.keep_ratio if used_by("method.keep_ratio", m.name) else None,
            "adv eps": m.resolved_adv_eps() if used_by("method.adv_eps", m.name) else None}


def runs_table(runs: list[Run]) -> list[dict]:
    """One row per run: identity, status, best score, duration, tags, key knobs and robustness."""
    from uegr.jobs import run_state as effective_state
    from uegr.runs import read_annotations

    rows = []
    for r in runs:
        s = r.summary()
        st = effective_state(r)
        started, ended = st.get("started"), st.get("ended")
        if started and not ended and st.get("state") != "running":
            ended = st.get("updated") or st.get("heartbeat")  # interrupted: last sign of life
        dur = s["duration_s"] if s["duration_s"] is not None else (round(ended - started, 1) if started and ended else None)
        ann = read_annotations(r)
        row = {"name": s["name"], "method": s["method"], "data": s["data"], "model": s["model"],
               "status": "damaged" if s["state"] == "damaged" else st.get("state"), "step": f"{s['step'] or 0}/{s['total_steps'] or '?'}",
               "best validation": s["best_score"], "duration": _fmt(dur), "duration_s": dur,
               "tags": ", ".join(ann["tags"]), "notes": ann["notes"], "created": s.get("created")}
        try:
            row.update(_hyper(r.config()))
        except (FileNotFoundError, ValueError):
            row.update({c: None for c in HYPER_COLUMNS})
        attacks = {k.removeprefix("attack-"): v for k, v in r.analyses("attack-").items()
                   if isinstance(v, dict) and v.get("accuracy_under_attack") is not None}
        worst = min(attacks.items(), key=lambda kv: kv[1].get("accuracy_under_attack") or 0, default=None)
        row.update({"robust accuracy": worst[1].get("accuracy_under_attack") if worst else None,
                    "worst attack": worst[0] if worst else "", "attacks": len(attacks)})
        rows.append(row)
    return rows


def filter_rows(rows: list[dict], text: str = "", methods=(), states=(), tags=()) -> list[dict]:
    """Rows matching a free-text search (name, data, notes, tags) and the chosen methods, states and tags."""
    text = text.strip().lower()
    out = []
    for r in rows:
        hay = " ".join(str(r.get(k) or "") for k in ("name", "data", "model", "notes", "tags")).lower()
        if text and text not in hay:
            continue
        if methods and r["method"] not in methods:
            continue
        if states and r["status"] not in states:
            continue
        row_tags = {t.strip() for t in (r.get("tags") or "").split(",") if t.strip()}
        if tags and not set(tags) <= row_tags:
            continue
        out.append(r)
    return out


def sort_rows(rows: list[dict], column: str, descending: bool = False) -> list[dict]:
    """Sorted by one column (numbers numerically, text case-insensitively); empty cells always last."""
    present = [r for r in rows if r.get(column) not in (None, "")]
    missing = [r for r in rows if r.get(column) in (None, "")]
    numeric = all(isinstance(r[column], int | float) and not isinstance(r[column], bool) for r in present)
    present.sort(key=lambda r: r[column] if numeric else str(r[column]).lower(), reverse=descending)
    return present + missing


def _fmt(seconds):
    if seconds is None:
        return "-"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flat(v, key + "."))
        else:
            out[key] = v
    return out


def config_diff(a: Run, b: Run) -> list[dict]:
    fa, fb = flat(a.config().to_dict()), flat(b.config().to_dict())
    return [{"field": k, a.name: str(fa.get(k)), b.name: str(fb.get(k))}
            for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)]


def metrics_csv(run: Run, kind: str | None) -> str:
    recs = run.metrics(kind)
    if not recs:
        return ""
    cols: list[str] = []
    for r in recs:
        for k in r:
            if k not in cols:
                cols.append(k)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    w.writeheader()
    for r in recs:
        w.writerow({k: (v if not isinstance(v, dict | list) else str(v)) for k, v in r.items()})
    return buf.getvalue()
