"""Tables for the Runs page (no Streamlit import): summary rows, config diff, metrics CSV."""

from __future__ import annotations

import csv
import io

from uegr.runs import Run


def runs_table(runs: list[Run]) -> list[dict]:
    from app.jobs import effective_state

    rows = []
    for r in runs:
        s = r.summary()
        st = effective_state(r)
        started, ended = st.get("started"), st.get("ended")
        if started and not ended and st.get("state") != "running":
            ended = st.get("updated") or st.get("heartbeat")  # interrupted: last sign of life
        dur = s["duration_s"] if s["duration_s"] is not None else (round(ended - started, 1) if started and ended else None)
        rows.append({"name": s["name"], "method": s["method"], "data": s["data"], "model": s["model"],
                     "status": "damaged" if s["state"] == "damaged" else st.get("state"), "step": f"{s['step'] or 0}/{s['total_steps'] or '?'}",
                     "best validation": s["best_score"],
                     "duration": _fmt(dur)})
    return rows


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
