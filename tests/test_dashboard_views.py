"""Dashboard clarity (issue 16) below the pages: chart panels and colours, field metadata and the form's error
collection, attack word counts, the Compare scatter's label placement and intervals, run tags and notes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app import charts, colours, tables  # noqa: E402
from app import compare_view as cv  # noqa: E402
from uegr import config as C  # noqa: E402
from uegr.runs import RunError, RunStore, read_annotations, write_annotations  # noqa: E402


def _run_with_metrics(store: RunStore, name: str, method: str, steps: int = 60, refresh: int = 10):
    """A run folder whose metrics.jsonl has the shape the trainer writes (losses, JS, rates, kept fractions)."""
    cfg = C.build_config("tiny", overrides=[f"method.name={method}"])
    run = store.create(cfg, name)
    recs = []
    for s in range(1, steps + 1):
        clean = 0.7 - 0.3 * s / steps + 0.05 * ((s * 7919) % 13) / 13  # noisy, decreasing
        r = {"kind": "train", "step": s, "loss": clean, "clean": clean, "lr": 1e-3 * (1 - s / steps), "grad_norm": 1.0}
        if method == "uegr":
            js = 1e-3 * (1 + (s % 5))
            r.update(loss=clean + 0.8 + js, adv=0.8, js=js, rate_0=0.05 + 0.2 * ((s * 31) % 7) / 7,
                     kept_fraction=0.3, kept_l0=0.2 + 0.1 * (s // refresh % 2), kept_l1=0.4 - 0.1 * (s // refresh % 2))
        recs.append(r)
        if s % 20 == 0:
            recs.append({"kind": "eval", "split": "validation", "step": s, "accuracy": 0.5 + s / (4 * steps)})
    run.append_metrics(recs)
    return run


@pytest.fixture
def store(tmp_path):
    return RunStore(tmp_path / "runs")


def test_js_has_its_own_log_panel_and_titles_name_only_drawn_parts(store):
    u = charts.RunSeries(_run_with_metrics(store, "u", "uegr"))
    u.update()
    figs = dict(charts.live_figures([u], "EMA (bias-corrected)", 0.9, 20))
    loss, div = figs["Loss"], figs["Divergence between passes"]
    assert loss.layout.title.text == "Loss: total / clean / adversarial"  # no phantom "/ KL"
    assert [t.name for t in loss.data if t.showlegend is not False] == ["total", "clean", "adversarial"]
    assert div.layout.title.text == "Divergence between passes: JS" and div.layout.yaxis.type == "log"
    js = [t for t in div.data if t.showlegend is not False][0]
    assert max(js.y) < 0.01 and "js" not in [t.name for t in loss.data]
    # legend above the plot, axis title below it: they cannot overlap
    assert loss.layout.legend.y >= 1 and loss.layout.legend.yanchor == "bottom"


def test_vanilla_total_is_said_to_equal_clean(store):
    v = charts.RunSeries(_run_with_metrics(store, "v", "vanilla"))
    v.update()
    loss = dict(charts.live_figures([v], "None", 0.9, 20))["Loss"]
    assert [t.name for t in loss.data] == ["total (= clean)"]
    assert "Divergence between passes" not in dict(charts.live_figures([v], "None", 0.9, 20))


def test_step_valued_series_are_never_smoothed(store):
    u = charts.RunSeries(_run_with_metrics(store, "u", "uegr"))
    u.update()
    figs = dict(charts.live_figures([u], "EMA (bias-corrected)", 0.9, 20))
    for title in ("Kept fraction per layer (selective update)", "Sampled dropout rates", "Learning rate"):
        traces = figs[title].data
        assert all(t.opacity is None for t in traces), title  # no faint raw + smoothed pair
        raw = dict(zip(*u.cols[("train", "kept_l0")], strict=True)) if title.startswith("Kept") else None
        if raw:
            t = next(t for t in traces if t.name == "layer 0")
            assert list(t.y) == [raw[x] for x in t.x] and t.line.shape == "hv"  # the jumps, as recorded
    smoothed = [t for t in figs["Loss"].data if t.opacity == 0.25]
    assert smoothed  # the noisy loss still gets its EMA


def test_one_colour_per_run_stable_and_layer_colours_shared(store):
    a, b = _run_with_metrics(store, "run-a", "uegr"), _run_with_metrics(store, "run-b", "vanilla")
    sa, sb = charts.RunSeries(a), charts.RunSeries(b)
    sa.update(), sb.update()
    loss = dict(charts.live_figures([sa, sb], "None", 0.9, 20))["Loss"]
    by_run: dict = {}
    for t in loss.data:
        by_run.setdefault(t.meta, set()).add(t.line.color)
    assert by_run == {"run-a": {colours.run_colour("run-a")}, "run-b": {colours.run_colour("run-b")}}
    assert colours.run_colour("run-a") == "#" + colours.run_colour("run-a")[1:]  # a fixed palette entry
    assert colours.run_colour("run-a") in colours.RUN_PALETTE
    kept = dict(charts.live_figures([sa], "None", 0.9, 20))["Kept fraction per layer (selective update)"]
    assert {t.name: t.line.color for t in kept.data}["layer 1"] == colours.layer_colour(1)
    from app import saliency_view as sv

    fig = sv.line_chart({"layer 1": ([1, 2], [0.3, 0.4]), "all": ([1, 2], [0.3, 0.3])}, "t", "y")
    assert fig.data[0].line.color == colours.layer_colour(1) and fig.data[1].line.color == colours.ALL_LAYERS


def test_field_metadata_labels_methods_and_every_error_at_once():
    docs = C.field_docs()
    assert docs["method"]["name"]["label"] == "Method"
    assert docs["method"]["k"]["methods"] == ("uegr",) and docs["method"]["k"]["source"] == "paper"
    assert not C.used_by("method.k", "vanilla") and C.used_by("optim.lr", "vanilla")
    assert C.used_by("method.keep_ratio", "childtuning") and C.used_by("method.freelb_steps", "freelb")
    assert set(C.METHOD_INFO) == set(C.METHODS)
    missing = [f"{s}.{f}" for s, fs in docs.items() for f in fs if f"{s}.{f}" not in C.FIELD_META]
    assert not missing, f"fields without a label/help: {missing}"
    cfg = C.Config()
    cfg.optim.lr, cfg.data.max_length, cfg.method.p_min = 0.0, 2, 0.5
    errors = C.all_errors(cfg)
    assert set(errors) == {"optim.lr", "data.max_length", "method.p_min"}
    assert C.all_errors(C.Config()) == {}


def test_time_estimate_scales_with_work():
    from app import config_form as F

    quick = C.build_config("quick-demo")
    est = F.estimate_seconds(quick, 10246)
    assert F.total_steps(quick, 10246) == 50 and 60 < est < 400  # measured: 1 min 54 s
    k3 = quick.copy()
    k3.method.k = 3
    assert F.estimate_seconds(k3, 10246) == pytest.approx(est * 4 / 2)
    hist = [{"model": "minilm", "seconds_per_step": 1.0, "work": 32 * 48 * 2}]
    assert F.estimate_seconds(quick, 10246, hist) == pytest.approx(50.0)


def test_annotations_round_trip_and_bad_tag(store):
    run = store.create(C.build_config("tiny"), "noted")
    assert read_annotations(run) == {"tags": [], "notes": ""}
    write_annotations(run, ["baseline", " sst2 ", "baseline", ""], "first try")
    assert read_annotations(run) == {"tags": ["baseline", "sst2"], "notes": "first try"}
    with pytest.raises(RunError, match="tag"):
        write_annotations(run, ["two words"], "")
    assert read_annotations(run)["notes"] == "first try"  # a refused write changes nothing
    (run.path / "annotations.json").write_text("{broken", encoding="utf-8")
    assert read_annotations(run) == {"tags": [], "notes": ""}


def test_runs_table_filter_and_sort(store):
    a, b = _run_with_metrics(store, "alpha", "uegr"), _run_with_metrics(store, "beta", "vanilla")
    write_annotations(b, ["keep"], "the baseline")
    rows = tables.runs_table([a, b])
    assert {"lr", "K", "keep ratio", "robust accuracy"} <= set(rows[0])
    by = {r["name"]: r for r in rows}
    assert by["alpha"]["K"] == 2 and by["beta"]["K"] is None  # a knob vanilla does not use is empty
    assert [r["name"] for r in tables.filter_rows(rows, tags=["keep"])] == ["beta"]
    assert [r["name"] for r in tables.filter_rows(rows, text="baseline")] == ["beta"]
    assert [r["name"] for r in tables.filter_rows(rows, methods=["uegr"])] == ["alpha"]
    assert [r["name"] for r in tables.sort_rows(rows, "name", descending=True)] == ["beta", "alpha"]
    assert [r["name"] for r in tables.sort_rows(rows, "K")] == ["alpha", "beta"]  # empty cells last


def test_scatter_labels_never_overlap_and_show_n():
    # eight runs crowded into a small corner: the worst case for labels
    rows = [{"name": f"run-{i}", "method": "uegr" if i % 2 else "vanilla", "clean_accuracy": 0.80 + 0.002 * i,
             "robust_accuracy": 0.20 + 0.003 * (i % 3), "worst_attack": "deepwordbug/test",
             "attacked_n:deepwordbug/test": 20} for i in range(8)]
    fig, _ = cv.pareto_scatter(rows, None, {r["name"]: 400 for r in rows})
    ann = fig.layout.annotations
    assert len(ann) == 8 and all("n = 400 val · 20 test" in a.text for a in ann)
    pw = cv.SCATTER_W - cv.MARGIN["l"] - cv.MARGIN["r"]
    ph = cv.SCATTER_H - cv.MARGIN["t"] - cv.MARGIN["b"]
    xr, yr = fig.layout.xaxis.range, fig.layout.yaxis.range
    boxes = []
    for a in ann:
        px = (a.x - xr[0]) / (xr[1] - xr[0]) * pw + a.ax
        py = (yr[1] - a.y) / (yr[1] - yr[0]) * ph + a.ay
        w, h = cv._box_size(a.text)
        boxes.append((px - w / 2, py - h / 2, px + w / 2, py + h / 2))
    for i, p in enumerate(boxes):
        assert p[0] >= 0 and p[2] <= pw and p[1] >= 0 and p[3] <= ph
        for q in boxes[i + 1:]:
            assert not cv._overlap(p, q, 0), (p, q)
    # axes fitted to the data (not 0-1), Wilson intervals on both axes
    assert xr[0] > 0.5 and yr[1] < 0.8
    pt = fig.data[0]
    lo, hi = cv._interval(0.2, 20)
    assert pt.error_y.arrayminus[0] == pytest.approx(pt.y[0] - lo) and pt.error_x.array[0] > 0
    assert "test split" in fig.layout.yaxis.title.text and "validation" in fig.layout.xaxis.title.text
    assert {t.marker.color for t in fig.data if t.meta} == {colours.run_colour(r["name"]) for r in rows}


def test_failed_attack_counts_its_changed_words():
    """A failed attack's best attempt changes words: the count must equal the diff shown (it used to be 0)."""
    pytest.importorskip("textattack")
    from uegr.attacks import attack_sentence
    from uegr.models import build_tiny_bert, load_tokenizer

    model, tok = build_tiny_bert(2, hidden=32, layers=2, seed=0).eval(), load_tokenizer("minilm")
    seen_failed = False
    for text in ("a gorgeous witty seductive movie", "the acting is stiff and the plot is dull",
                 "a charming and often affecting journey"):
        rec = attack_sentence(model, tok, text, None, "deepwordbug", query_budget=12, max_perturb_fraction=None)
        marked = sum(c for _, c in rec["original_words"])
        assert rec["words_changed"] == marked == sum(c for _, c in rec["perturbed_words"])
        seen_failed |= rec["result"] == "failed" and marked > 0
    assert seen_failed, "no failed attack with changes: raise the sentences' length or lower the budget"


def test_records_table_and_flip_gallery():
    from app import attack_view as av

    a = [{"index": 0, "original_text": "a fine film", "perturbed_text": "a fin3 film", "result": "successful",
          "words_changed": 1, "num_queries": 9, "original_prediction": 1, "perturbed_prediction": 0},
         {"index": 1, "original_text": "dull and slow", "perturbed_text": "dul and slow", "result": "failed",
          "words_changed": 1, "num_queries": 30, "original_prediction": 0, "perturbed_prediction": 0}]
    b = [{**a[0], "result": "failed", "perturbed_text": "a fine fi1m"},
         {**a[1], "result": "successful", "perturbed_text": "dull adn slow"}]
    rows = av.records_table(a)
    assert [r["result"] for r in rows] == ["flipped", "held"] and rows[0]["changes"] == "fine → fin3"
    assert rows[1]["words changed"] == 1 and rows[1]["queries"] == 30
    gal = av.flip_gallery(a, b)
    assert [g["index"] for g in gal["a_holds"]] == [1] and [g["index"] for g in gal["b_holds"]] == [0]
    assert gal["a_holds"][0]["fooled_other"] == "dull adn slow"


def test_metadata_is_json_serialisable_for_the_cli():
    json.dumps(C.field_docs(), default=list)
