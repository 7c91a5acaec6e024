"""One self-contained HTML report for one or more runs: `uegr report RUN [RUN ...] -o report.html`.

The file opens offline with no server: plotly.js is inlined once and every figure is an interactive
Plotly div; styles are inline; nothing is fetched. Contents, per run: the config (changed fields and the
whole JSON), training curves, the saliency summary (kept fraction per matrix at the last snapshot and
mask IoU between refreshes), landscape results, attack results with 95 % Wilson intervals and example
word diffs. Across runs: the comparison table (uegr.compare) with intervals and, for two runs or more,
paired differences under attack with bootstrap intervals. Last, the paper-vs-project note (docs/method.md)
and the glossary.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
import os
import tempfile
from pathlib import Path

import plotly.graph_objects as go
import plotly.io as pio

from .compare import attack_key, comparison_table, number_or_none, paired_attack_differences
from .config import Config
from .glossary import TERMS
from .runs import Run, RunStore
from .stats import wilson_interval

METHOD_DOC = Path(__file__).resolve().parents[1] / "docs" / "method.md"
# Sections of docs/method.md that make the paper-vs-project note.
NOTE_SECTIONS = ("What is the paper's", "What is this project's reconstruction")
LAYOUT = {"margin": {"l": 50, "r": 20, "t": 50, "b": 40}, "height": 360}

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1200px;padding:24px;
color:#1d2733;line-height:1.45}
h1{margin-bottom:4px}h2{border-bottom:2px solid #3b6fb6;padding-bottom:4px;margin-top:36px}
h3{margin-top:24px;color:#2b4f80}
table{border-collapse:collapse;margin:8px 0 16px;font-size:13px}
th,td{border:1px solid #d5dbe3;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef2f7}td.num{text-align:right;font-variant-numeric:tabular-nums}
.muted{color:#66727f;font-size:13px}.grid{display:grid;grid-template-columns:1fr 1fr;gap:12px}
.diff del{background:#fbd5d5;text-decoration:line-through}.diff ins{background:#cdeccd;text-decoration:none}
pre{background:#f6f8fa;padding:10px;overflow:auto;font-size:12px;max-height:420px}
details{margin:8px 0}code{background:#f0f2f5;padding:1px 4px;border-radius:3px}
nav a{margin-right:12px}.scroll{overflow-x:auto}
"""


class ReportError(ValueError):
    pass


# ---------------------------------------------------------------------------------------------- building blocks
class _Figures:
    """Figures as HTML divs; plotly.js goes inline with the first one only."""

    def __init__(self):
        self.count = 0

    def html(self, fig: go.Figure) -> str:
        fig.update_layout(template="plotly_white", margin=fig.layout.margin.to_plotly_json() or LAYOUT["margin"],
                          height=fig.layout.height or LAYOUT["height"])
        out = pio.to_html(fig, full_html=False, include_plotlyjs=self.count == 0,
                          config={"displaylogo": False, "responsive": True}, div_id=f"fig-{self.count}")
        self.count += 1
        return f'<div class="figure">{out}</div>'


def _e(x) -> str:
    return html.escape(str(x))


def fmt(v, digits: int = 4) -> str:
    """Numbers as the tables show them (the test reads them back): 4 significant decimals, '' for None."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return f"{v:.{digits}g}" if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3) else f"{v:.{digits}f}"
    return str(v)


def table(rows: list[dict], columns: list[str] | None = None, headers: dict[str, str] | None = None,
          cls: str = "") -> str:
    if not rows:
        return '<p class="muted">(none)</p>'
    columns = columns or list(dict.fromkeys(c for r in rows for c in r))
    headers = headers or {}
    head = "".join(f"<th>{_e(headers.get(c, c))}</th>" for c in columns)
    body = []
    for r in rows:
        cells = []
        for c in columns:
            v = r.get(c)
            num = isinstance(v, int | float) and not isinstance(v, bool)
            cells.append(f'<td class="num">{_e(fmt(v))}</td>' if num else f"<td>{_e(fmt(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class="scroll"><table class="{cls}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def interval(p: float | None, n: int | None) -> str:
    """'0.812 [0.74, 0.87]' with the 95 % Wilson interval of a proportion over n items."""
    if p is None or not n:
        return fmt(p)
    lo, hi = wilson_interval(round(p * n), n)
    return f"{fmt(p)} [{lo:.3f}, {hi:.3f}]"


def markdown_html(text: str) -> str:
    import markdown

    return markdown.markdown(text, extensions=["tables"])


def paper_note() -> str:
    """The paper-vs-project sections of docs/method.md as HTML (a one-line pointer when docs/ is absent)."""
    if not METHOD_DOC.is_file():
        return ("<p>Only the paper's abstract was available to this project; everything concrete is the project's "
                "reconstruction from RoAST, R-Drop, CHILD-TUNING, ROSE and FreeLB (see docs/method.md).</p>")
    text = METHOD_DOC.read_text(encoding="utf-8")
    head, *sections = text.split("\n## ")
    source = head.split("\n", 1)[1] if "\n" in head else ""
    keep = [s for s in sections if s.startswith(NOTE_SECTIONS)]
    return markdown_html(source + "\n\n" + "\n\n".join("### " + s for s in keep))


# ---------------------------------------------------------------------------------------------- per-run parts
def _changed_fields(cfg: Config) -> list[dict]:
    base = Config().to_dict()
    out = []
    for section, values in cfg.to_dict().items():
        for k, v in values.items():
            if base[section].get(k) != v:
                out.append({"field": f"{section}.{k}", "value": json.dumps(v), "default": json.dumps(base[section].get(k))})
    return out


def _curves(run: Run, figs: _Figures) -> str:
    train, evals = run.metrics("train"), run.metrics("eval")
    if not train and not evals:
        return '<p class="muted">No metrics logged.</p>'
    parts = []
    if train:
        f = go.Figure()
        steps = [r.get("step") for r in train]
        for key, name in (("loss", "total loss"), ("clean", "L_clean"), ("adv", "L_adv"), ("js", "L_JS")):
            ys = [number_or_none(r.get(key)) for r in train]
            if any(y is not None for y in ys):
                f.add_trace(go.Scatter(x=steps, y=ys, name=name, mode="lines"))
        f.update_layout(title="training losses", xaxis_title="step")
        parts.append(figs.html(f))
        kept = [number_or_none(r.get("kept_fraction")) for r in train]
        rates = sorted({k for r in train for k in r if k.startswith("rate_")}, key=lambda k: int(k.split("_")[1]))
        if any(v is not None for v in kept) or rates:
            f = go.Figure()
            if any(v is not None for v in kept):
                f.add_trace(go.Scatter(x=steps, y=kept, name="kept fraction", mode="lines"))
            for k in rates:
                f.add_trace(go.Scatter(x=steps, y=[number_or_none(r.get(k)) for r in train], name=f"dropout {k}",
                                       mode="lines", line={"width": 1}))
            f.update_layout(title="kept fraction and dropout rates", xaxis_title="step")
            parts.append(figs.html(f))
    if evals:
        f = go.Figure()
        for key in ("accuracy", "f1_macro", "loss"):
            ys = [number_or_none(r.get(key)) for r in evals]
            if any(y is not None for y in ys):
                f.add_trace(go.Scatter(x=[r.get("step") for r in evals], y=ys, name=key, mode="lines+markers"))
        f.update_layout(title="evaluation", xaxis_title="step")
        parts.append(figs.html(f))
    return '<div class="grid">' + "".join(parts) + "</div>"


def _saliency(run: Run, figs: _Figures) -> str:
    steps = run.snapshot_steps()
    if not steps:
        return '<p class="muted">No saliency snapshots (the method has no selective update, or snapshots were off).</p>'
    from .weights import iou_summary, mask_iou

    snap = run.read_snapshot(steps[-1])
    rows = [r for r in snap["tensors"] if r.get("layer") is not None]
    kinds = list(dict.fromkeys(r["kind"] for r in rows if not r["kind"].endswith("_bias") and "ln" not in r["kind"]))
    layers = sorted({r["layer"] for r in rows})
    cell = {(r["layer"], r["kind"]): r["kept_fraction"] for r in rows}
    z = [[cell.get((li, k)) for k in kinds] for li in layers]
    parts = []
    f = go.Figure(go.Heatmap(z=z, x=kinds, y=[f"layer {li}" for li in layers], zmin=0, zmax=1, colorscale="Viridis",
                             colorbar={"title": "kept"}, texttemplate="%{z:.2f}"))
    f.update_layout(title=f"kept fraction per matrix, step {steps[-1]}", yaxis={"autorange": "reversed"})
    parts.append(figs.html(f))
    summary = [s for s in iou_summary(mask_iou(run)) if s["layer"] == "all"]
    if summary:
        f = go.Figure(go.Scatter(x=[s["step"] for s in summary], y=[s["iou"] for s in summary], mode="lines+markers",
                                 name="IoU"))
        f.update_layout(title="mask IoU with the previous refresh", xaxis_title="step", yaxis={"range": [0, 1.02]})
        parts.append(figs.html(f))
    total = sum(r["numel"] for r in snap["tensors"])
    kept = sum(r["kept"] for r in snap["tensors"])
    top = sorted(snap["tensors"], key=lambda r: -r.get("saliency_mass", 0))[:5]
    text = (f"<p>{len(steps)} snapshots; at step {steps[-1]}, {kept:,} of {total:,} eligible weights kept "
            f"({kept / max(total, 1):.1%}). Matrices with the largest share of saliency:</p>")
    return ('<div class="grid">' + "".join(parts) + "</div>" + text +
            table([{"matrix": r["name"], "layer": r["layer"], "kind": r["kind"], "saliency share": r.get("saliency_mass"),
                    "kept fraction": r["kept_fraction"]} for r in top]))


def _landscape(run: Run, figs: _Figures) -> str:
    got = run.analyses("landscape-")
    if not got:
        return '<p class="muted">No landscape probes (run <code>uegr landscape RUN</code>).</p>'
    parts, numbers = [], []
    for name, rec in got.items():
        kind = rec.get("kind", name.removeprefix("landscape-"))
        losses = rec.get("losses")
        if kind in ("slice1d", "interp") and losses:
            f = go.Figure(go.Scatter(x=rec.get("alphas"), y=losses, mode="lines+markers", name=kind))
            f.update_layout(title=f"{name}: loss along {'a filter-normalised random direction' if kind == 'slice1d' else 'the line to the other model'}",
                            xaxis_title="α", yaxis_title="loss")
            parts.append(figs.html(f))
            numbers.append({"probe": name, "loss": rec.get("loss"), "value": rec.get("max_increase"),
                            "what": "largest loss rise along the slice" if kind == "slice1d" else "",
                            "examples": rec.get("n_examples")})
        elif kind == "slice2d" and losses:
            f = go.Figure(go.Contour(z=losses, x=rec.get("alphas"), y=rec.get("betas"), colorscale="Viridis",
                                     colorbar={"title": "loss"}))
            f.update_layout(title=f"{name}: loss on a 2-D slice", xaxis_title="α", yaxis_title="β", height=420)
            parts.append(figs.html(f))
        elif kind == "hessian":
            eig = rec.get("eigenvalues") or []
            numbers.append({"probe": name, "loss": rec.get("loss"), "value": number_or_none(eig[0]) if eig else None,
                            "what": "top Hessian eigenvalue", "examples": rec.get("n_examples")})
            numbers.append({"probe": name, "loss": rec.get("loss"), "value": number_or_none(rec.get("trace")),
                            "what": "Hessian trace (Hutchinson)", "examples": rec.get("n_examples")})
        elif kind == "sharpness":
            for key, what in (("sam", "SAM sharpness"), ("eps", "ε-sharpness (%)")):
                if isinstance(rec.get(key), dict):
                    numbers.append({"probe": name, "loss": rec.get("loss"),
                                    "value": number_or_none(rec[key].get("sharpness")), "what": what,
                                    "examples": rec.get("n_examples")})
    out = ('<div class="grid">' + "".join(parts) + "</div>") if parts else ""
    if numbers:
        out += table(numbers, ["probe", "what", "value", "loss", "examples"])
    return out or '<p class="muted">Landscape results without plottable data.</p>'


def _word_diff_html(original: str, perturbed: str) -> str:
    from .attacks.runner import word_diff

    a, b = word_diff(original.split(), perturbed.split())
    left = " ".join(f"<del>{_e(w)}</del>" if c else _e(w) for w, c in a)
    right = " ".join(f"<ins>{_e(w)}</ins>" if c else _e(w) for w, c in b)
    return f'<div class="diff"><div>− {left}</div><div>+ {right}</div></div>'


def _attacks(run: Run) -> str:
    got = {k: v for k, v in run.analyses("attack-").items() if isinstance(v, dict) and "accuracy_under_attack" in v}
    if not got:
        return '<p class="muted">No attacks (run one in the Attack lab or <code>uegr attack RUN</code>).</p>'
    rows, examples = [], []
    for name, s in got.items():
        n = s.get("num_examples")
        rows.append({"attack": attack_key(name), "N": n,
                     "accuracy under attack [95 % CI]": interval(number_or_none(s.get("accuracy_under_attack")), n),
                     "clean accuracy on them": s.get("clean_accuracy"),
                     "attack success rate": s.get("attack_success_rate"),
                     "perturbed words %": s.get("avg_perturbed_word_pct"), "avg queries": s.get("avg_queries")})
        names = s.get("label_names") or []
        for ex in (s.get("examples") or [])[:3]:
            def lab(i, names=names):
                return names[i] if isinstance(i, int) and 0 <= i < len(names) else str(i)

            examples.append(f"<p><b>{_e(attack_key(name))}</b>, #{_e(ex.get('index'))}: "
                            f"{_e(lab(ex.get('original_prediction')))} → {_e(lab(ex.get('perturbed_prediction')))}"
                            f"</p>{_word_diff_html(ex.get('original_text', ''), ex.get('perturbed_text', ''))}")
    out = table(rows, cls="attacks")
    if examples:
        out += "<h4>Example successful attacks (word diff)</h4>" + "".join(examples)
    return out


def _run_section(run: Run, figs: _Figures) -> str:
    s = run.summary()
    try:
        cfg = run.config()
    except (FileNotFoundError, ValueError) as exc:
        raise ReportError(f"run {run.name!r}: config.json is unreadable ({exc}); the report needs it") from None
    last_n = _eval_n(run)
    facts = [{"run": run.name, "method": s["method"], "model": s["model"], "data": s["data"], "state": s["state"],
              "steps": s["step"], "best validation accuracy [95 % CI]": interval(number_or_none(s["best_score"]), last_n),
              "train seconds": s["duration_s"]}]
    changed = _changed_fields(cfg)
    return (f'<section id="run-{_e(run.name)}"><h2>Run {_e(run.name)}</h2>' + table(facts, cls="facts") +
            "<h3>Config</h3>" + (table(changed, ["field", "value", "default"]) if changed else
                                 '<p class="muted">All defaults.</p>') +
            f"<details><summary>Whole config (JSON)</summary><pre>{_e(cfg.to_json())}</pre></details>"
            "<h3>Curves</h3>" + _curves(run, figs) +
            "<h3>Saliency</h3>" + _saliency(run, figs) +
            "<h3>Loss landscape</h3>" + _landscape(run, figs) +
            "<h3>Attacks</h3>" + _attacks(run) + "</section>")


# ---------------------------------------------------------------------------------------------- comparison
COMPARE_COLUMNS = ["name", "method", "k", "p_range", "adv_eps", "keep_ratio", "lambda_adv", "lambda_js",
                   "clean_accuracy", "robust_accuracy", "worst_attack", "hessian_top_eigenvalue", "sharpness_eps",
                   "train_seconds", "steps"]


def _eval_n(run: Run) -> int | None:
    """How many examples the run's last evaluation scored (the n of its accuracy's interval)."""
    return next((int(r["n"]) for r in reversed(run.metrics("eval")) if r.get("n")), None)


def _comparison(runs: list[Run], figs: _Figures) -> str:
    rows = comparison_table(runs)
    for row, run in zip(rows, runs):
        row["clean 95 % CI"] = interval(row.get("clean_accuracy"), _eval_n(run)).partition(" ")[2] or None
    cols = COMPARE_COLUMNS[:COMPARE_COLUMNS.index("clean_accuracy") + 1] + ["clean 95 % CI"] + \
        COMPARE_COLUMNS[COMPARE_COLUMNS.index("clean_accuracy") + 1:]
    out = table(rows, cols, cls="comparison")
    attack_cols = sorted({c for r in rows for c in r if c.startswith("under_attack:")})
    if attack_cols:
        ci_rows = []
        for r in rows:
            row = {"run": r["name"]}
            for c in attack_cols:
                key = c.split(":", 1)[1]
                row[key] = interval(r.get(c), r.get(f"attacked_n:{key}") and int(r[f"attacked_n:{key}"]))
            ci_rows.append(row)
        out += ("<h3>Accuracy under attack, with 95 % Wilson intervals</h3>" + table(ci_rows))
        f = go.Figure()
        for r in rows:
            xs, ys, lo, hi = [], [], [], []
            for c in attack_cols:
                key, p = c.split(":", 1)[1], r.get(c)
                n = r.get(f"attacked_n:{key}")
                if p is None or not n:
                    continue
                a, b = wilson_interval(round(p * n), int(n))
                xs.append(key)
                ys.append(p)
                lo.append(p - a)
                hi.append(b - p)
            f.add_trace(go.Bar(name=r["name"], x=xs, y=ys, error_y={"type": "data", "array": hi, "arrayminus": lo}))
        f.update_layout(barmode="group", title="accuracy under attack (95 % Wilson intervals)", yaxis={"range": [0, 1]})
        out += figs.html(f)
    if len(runs) >= 2:
        ref = runs[0]
        paired = [{"run": r.name, "reference": ref.name, **d} for r in runs[1:]
                  for d in paired_attack_differences(r, ref)]
        if paired:
            out += ("<h3>Paired on the same sentences</h3>" +
                    table(paired, ["run", "reference", "attack", "shared", "a", "b", "difference", "low", "high",
                                   "note"]) +
                    '<p class="muted">a, b: accuracy under attack of the run and of the reference on the sentences '
                    "both were attacked on; difference = a − b with its 95 % paired bootstrap interval [low, high]. "
                    "An interval containing 0 does not tell the runs apart.</p>")
    return out


# ---------------------------------------------------------------------------------------------- whole report
def build_report(runs: list[Run], title: str | None = None) -> str:
    """The report as one HTML string (see the module doc)."""
    if not runs:
        raise ReportError("give at least one run")
    figs = _Figures()
    title = title or ("UEGR Studio report: " + ", ".join(r.name for r in runs))
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    nav = "".join(f'<a href="#run-{_e(r.name)}">{_e(r.name)}</a>' for r in runs)
    body = [f"<h1>{_e(title)}</h1><p class=\"muted\">Generated {when} by <code>uegr report</code>. Interactive "
            "figures (zoom, hover); this file needs no server or network.</p><nav>"
            '<a href="#comparison">comparison</a>' + nav + '<a href="#paper">paper vs project</a>'
            '<a href="#glossary">glossary</a></nav>']
    body.append('<section id="comparison"><h2>Comparison</h2>' + _comparison(runs, figs) + "</section>")
    body += [_run_section(r, figs) for r in runs]
    body.append('<h2 id="paper">The paper vs this project</h2>' + paper_note())
    body.append('<h2 id="glossary">Glossary</h2><dl>' + "".join(
        f"<dt><b>{_e(t['title'])}</b></dt><dd>{_e(t['short'])} {_e(t['body'])}</dd>" for t in TERMS.values()) + "</dl>")
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"uegr-figures\" content=\"{figs.count}\"><title>{_e(title)}</title>"
            f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>")


def write_report(runs: list[Run], path: str | Path, title: str | None = None) -> Path:
    """Build the report and write it atomically (a half-written file never replaces a good one)."""
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise ReportError(f"-o {path}: the report is HTML; give a file name ending in .html")
    if path.is_dir():
        raise ReportError(f"-o {path}: that is a folder; give a file name such as {path / 'report.html'}")
    text = build_report(runs, title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# ---------------------------------------------------------------------------------------------- CLI
def cmd_report(args) -> int:
    store = RunStore(args.runs_dir)
    runs = [store.get(name) for name in args.runs]
    out = write_report(runs, args.output, args.title)
    size = out.stat().st_size / 1e6
    if args.json:
        print(json.dumps({"report": str(out), "runs": [r.name for r in runs], "megabytes": round(size, 2)}))
    else:
        print(f"wrote {out} ({size:.1f} MB, {len(runs)} run(s)); open it in any browser, no server needed")
    return 0


def add_report_parser(sub) -> None:
    p = sub.add_parser("report", help="one self-contained HTML report of runs (config, curves, saliency, "
                                      "landscape, attacks, comparison)")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run names or folders (the first is the reference "
                                                          "for paired differences)")
    p.add_argument("-o", "--output", default="report.html", help="HTML file to write (default report.html)")
    p.add_argument("--title", default=None, help="report title")
    p.add_argument("--runs-dir", default=None, help="runs folder (default: $UEGR_HOME or ./runs)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=cmd_report)

