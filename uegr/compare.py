"""Model comparison: one row per run gathered from its folder (config, status, metrics, analyses).

    rows = comparison_table(RunStore().list())
    front = pareto_front([(r["clean_accuracy"], r["robust_accuracy"]) for r in rows])
    print(to_markdown(rows))

Per run: name, method, model, the key knobs of its method, clean accuracy (best validation score,
else the best eval accuracy in metrics.jsonl), and for every saved attack analysis
(`analyses/attack-<recipe>-<split>.json`) the accuracy under attack, attack success rate and perturbed
word %; `robust_accuracy` is the worst accuracy under attack over those attacks. Landscape analyses
(`landscape-hessian`, `landscape-sharpness`) give the top Hessian eigenvalue, the Hessian trace and the
SAM / eps sharpness. Anything missing is None, never an error.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence

from .runs import Run

# Columns always present, in display order; attack columns follow (see attack_keys).
BASE_COLUMNS = ["name", "method", "model", "data", "state", "k", "p_range", "adv_eps", "keep_ratio", "lambda_adv",
                "lambda_js", "other_knobs", "clean_accuracy", "robust_accuracy", "worst_attack",
                "hessian_top_eigenvalue", "hessian_trace", "sharpness_sam", "sharpness_eps", "train_seconds",
                "steps"]
ATTACK_METRICS = {"under_attack": "accuracy_under_attack", "success_rate": "attack_success_rate",
                  "perturbed_pct": "avg_perturbed_word_pct", "attacked_n": "num_examples"}
SELECTIVE = ("uegr", "childtuning", "roast")


def number_or_none(x, allow_inf: bool = False) -> float | None:
    """A float, or None for NaN, missing values and non-numbers (and infinities unless allowed)."""
    if isinstance(x, bool) or x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) or (allow_inf and math.isinf(v)) else None


def _knobs(cfg) -> dict:
    """The method's key knobs; the ones a method does not use are None."""
    m = cfg.method
    name = m.name
    out = {"k": None, "p_range": None, "adv_eps": None, "keep_ratio": None, "lambda_adv": None, "lambda_js": None,
           "other_knobs": ""}
    if name == "uegr":
        out.update(k=m.k, p_range=f"{m.p_min:g}-{m.p_max:g}", lambda_js=m.lambda_js,
                   adv_eps=m.resolved_adv_eps() if m.adv_enabled else None,
                   lambda_adv=m.lambda_adv if m.adv_enabled else None,
                   keep_ratio=m.keep_ratio if m.selective_update else None)
        out["other_knobs"] = f"rate_rule={m.rate_rule}, saliency={m.saliency}, refresh={m.refresh_every}"
    elif name == "roast":
        out.update(adv_eps=m.resolved_adv_eps(), keep_ratio=m.keep_ratio)
        out["other_knobs"] = f"roast_kl={m.roast_kl:g}"
    elif name == "childtuning":
        out.update(keep_ratio=m.keep_ratio)
    elif name == "rdrop":
        out["other_knobs"] = f"rdrop_alpha={m.rdrop_alpha:g}"
    elif name == "freelb":
        out["other_knobs"] = f"steps={m.freelb_steps}, lr={m.freelb_lr:g}, max_norm={m.freelb_max_norm:g}"
    return out


def _clean_accuracy(run: Run, summary: dict) -> float | None:
    best = number_or_none(summary.get("best_score"))
    if best is not None:
        return best
    accs = [number_or_none(r.get("accuracy")) for r in run.metrics("eval")]
    accs = [a for a in accs if a is not None]
    return max(accs) if accs else None


def attack_key(analysis_name: str) -> str:
    """'attack-deepwordbug-test' -> 'deepwordbug/test' (recipe names may contain '-')."""
    body = analysis_name[len("attack-"):] if analysis_name.startswith("attack-") else analysis_name
    recipe, _, split = body.rpartition("-")
    return f"{recipe}/{split}" if recipe else body


def _attacks(run: Run) -> dict[str, dict]:
    out = {}
    for name, payload in run.analyses("attack-").items():
        if isinstance(payload, dict) and "accuracy_under_attack" in payload:
            out[attack_key(name)] = payload
    return out


def _landscape(run: Run) -> dict:
    res = {"hessian_top_eigenvalue": None, "hessian_trace": None, "sharpness_sam": None, "sharpness_eps": None}
    got = run.analyses("landscape-")
    h = got.get("landscape-hessian") or {}
    eig = [number_or_none(v) for v in (h.get("eigenvalues") or [])] if isinstance(h.get("eigenvalues"), list) else []
    eig = [v for v in eig if v is not None]
    if eig:  # power iteration: the first is the largest in magnitude (the "top" one)
        res["hessian_top_eigenvalue"] = eig[0]
    res["hessian_trace"] = number_or_none(h.get("trace"))
    s = got.get("landscape-sharpness") or {}
    if isinstance(s.get("sam"), dict):
        res["sharpness_sam"] = number_or_none(s["sam"].get("sharpness"))
    if isinstance(s.get("eps"), dict):
        res["sharpness_eps"] = number_or_none(s["eps"].get("sharpness"))
    return res


def run_row(run: Run) -> dict:
    """One comparison row for a run (see the module doc)."""
    s = run.summary()
    row = {"name": run.name, "method": s["method"], "model": s["model"], "data": s["data"], "state": s["state"]}
    try:
        row.update(_knobs(run.config()))
    except (FileNotFoundError, ValueError):
        row.update({k: None for k in ("k", "p_range", "adv_eps", "keep_ratio", "lambda_adv", "lambda_js")},
                   other_knobs="")
    row["clean_accuracy"] = _clean_accuracy(run, s)
    attacks = _attacks(run)
    worst, worst_key = None, None
    for key, payload in sorted(attacks.items()):
        for col, field in ATTACK_METRICS.items():
            row[f"{col}:{key}"] = number_or_none(payload.get(field))
        acc = number_or_none(payload.get("accuracy_under_attack"))
        if acc is not None and (worst is None or acc < worst):
            worst, worst_key = acc, key
    row["robust_accuracy"] = worst
    row["worst_attack"] = worst_key
    row.update(_landscape(run))
    row["train_seconds"] = number_or_none(s.get("duration_s"))
    row["steps"] = s.get("step")
    return row


def comparison_table(runs: Iterable[Run]) -> list[dict]:
    """Rows with the same columns for every run (BASE_COLUMNS, then the union of attack columns)."""
    rows = [run_row(r) for r in runs]
    keys = attack_keys(rows)
    cols = columns(keys)
    return [{c: r.get(c) for c in cols} for r in rows]


def attack_keys(rows: Sequence[dict]) -> list[str]:
    """The 'recipe/split' keys that appear in any row, sorted."""
    return sorted({c.split(":", 1)[1] for r in rows for c in r if c.startswith("under_attack:")})


def columns(keys: Sequence[str]) -> list[str]:
    return BASE_COLUMNS + [f"{col}:{k}" for k in keys for col in ATTACK_METRICS]


def pareto_front(points: Sequence[tuple | None]) -> list[int]:
    """Indices of the non-dominated points when maximising both coordinates, sorted by the first.

    A point dominates another if it is >= in both and > in at least one. Points with a None/NaN
    coordinate are ignored; duplicates of a front point are all on the front."""
    valid = []
    for i, p in enumerate(points):
        if p is None or len(p) < 2:
            continue
        x, y = number_or_none(p[0]), number_or_none(p[1])
        if x is not None and y is not None:
            valid.append((i, x, y))
    front = [i for i, x, y in valid
             if not any(x2 >= x and y2 >= y and (x2 > x or y2 > y) for _, x2, y2 in valid)]
    pos = {i: (x, y) for i, x, y in valid}
    return sorted(front, key=lambda i: (pos[i][0], -pos[i][1], i))


def attack_survival(run: Run, key: str) -> dict[int, tuple[str, bool]]:
    """Dataset index -> (original text, still right after the attack) from an attack's records."""
    from .attacks.runner import read_records

    recipe, _, split = key.rpartition("/")
    return {r["index"]: (r.get("original_text"), r.get("result") == "failed")
            for r in read_records(run.analyses_dir / f"attack-{recipe}-{split}") if "index" in r}


def paired_attack_differences(run_a: Run, run_b: Run, resamples: int = 10_000) -> list[dict]:
    """Accuracy under attack of run_a minus run_b, per attack both ran, on the sentences both attacked.

    Each run's summary may cover a different N; pairing on the shared sentences removes both that and
    each sentence's own difficulty, so the 95 % bootstrap interval is far narrower than two separate
    intervals. Attacks run with a different seed, query budget or perturbation cap are not compared
    (their outcomes are not the same experiment); sentences whose text differs are dropped."""
    from .stats import paired_bootstrap

    out = []
    sa, sb = _attacks(run_a), _attacks(run_b)
    for key in sorted(set(sa) & set(sb)):
        row = {"attack": key, "shared": 0, "a": None, "b": None, "difference": None, "low": None, "high": None,
               "note": ""}
        out.append(row)
        differs = [f for f in ("seed", "query_budget", "max_perturb_fraction") if sa[key].get(f) != sb[key].get(f)]
        if differs:
            row["note"] = "settings differ: " + ", ".join(differs)
            continue
        ra, rb = attack_survival(run_a, key), attack_survival(run_b, key)
        shared = sorted(i for i in set(ra) & set(rb) if ra[i][0] == rb[i][0])
        if not shared:
            row["note"] = "no sentence attacked in both"
            continue
        a, b = [float(ra[i][1]) for i in shared], [float(rb[i][1]) for i in shared]
        diff, lo, hi = paired_bootstrap(a, b, resamples=resamples)
        row.update(shared=len(shared), a=sum(a) / len(a), b=sum(b) / len(b), difference=diff, low=lo, high=hi)
    return out


def _fmt(v, digits: int = 4) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) >= 1e4 or (v != 0 and abs(v) < 1e-3) else f"{round(v, digits)}"
    return str(v)


def to_csv(rows: Sequence[dict]) -> str:
    """CSV with a header of the union of the rows' columns (first-seen order); None = empty cell."""
    cols: list[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in rows:
        w.writerow(["" if r.get(c) is None else r.get(c) for c in cols])
    return buf.getvalue()


def to_markdown(rows: Sequence[dict], columns: Sequence[str] | None = None, digits: int = 4) -> str:
    """A GitHub-flavoured Markdown table; None = empty cell; '|' in values is escaped."""
    if columns is None:
        columns = []
        for r in rows:
            columns += [c for c in r if c not in columns]
    if not columns:
        return ""

    def cell(v) -> str:
        return _fmt(v, digits).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(c) for c in columns) + " |",
             "| " + " | ".join("---" for _ in columns) + " |"]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"
