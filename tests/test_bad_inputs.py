"""Bad-input corpus through the CLI: every case exits with code 2 and a one-line message naming the problem.

One row per case in CASES: (id, argv, needle). argv is a string split on spaces after filling in
{runs} (the runs folder), {d} (a folder holding the FILES below) and {run} (a trained tiny run); the
last non-empty stderr line must contain "error" and the needle (case-insensitive), and nothing may end in a
traceback. The CLI runs in-process (`uegr.cli.main`), which keeps the ~70 cases to seconds; a final test checks
that none of them changed a byte of the trained run (nothing a user wrote is lost).

To add a case: add a row (and a file to FILES if it needs one).
"""

from __future__ import annotations

import hashlib
import json

import pytest

RUN = "good-run"

ROWS = "\n".join(f"sentence number {i} is here,{i % 2}" for i in range(40))
FILES: dict[str, str | bytes] = {
    "ok.csv": "text,label\n" + ROWS + "\n",
    # an unclosed quote on line 6 swallows the rows after it
    "unclosed.csv": "text,label\n" + "\n".join(('"' if i == 4 else "") + f"sentence {i} here,{i % 2}"
                                                for i in range(40)) + "\n",
    "unclosed.tsv": "text\tlabel\n" + "\n".join(('"' if i == 6 else "") + f"sentence {i} here\t{i % 2}"
                                                for i in range(40)) + "\n",
    "unclosed_eof.csv": 'text,label\n"good movie,1\nbad,0\nok,1\nfine,0\n',
    "extra_field.csv": "text,label\ngood,1\ngreat, fun movie,1\nbad,0\n",
    "dup_header.csv": "text,text,label\na,b,1\n",
    "bad.jsonl": "\n".join(json.dumps({"text": f"s{i}", "label": i % 2}) for i in range(10))
                 + '\n\n{"text": "broken", "label": 1\n',
    "list_line.jsonl": '{"text": "a", "label": 0}\n[1, 2]\n',
    "bad.json": '{"data": [{"text": "a", "label": 0},]}',
    "sparse_ids.csv": "text,label\n" + "\n".join(f"s{i},{i * 7}" for i in range(1001)) + "\n",
    "e3.csv": "text,label\n" + ROWS + "\nthousand,1e3\n",
    "case.csv": "text,label\n" + "\n".join(f"s{i},{('pos', 'Pos', 'POS ', 'neg')[i % 4]}" for i in range(40)) + "\n",
    "one_class.csv": "text,label\n" + "\n".join(f"s{i},1" for i in range(40)) + "\n",
    "three_rows.csv": "text,label\na,1\nb,0\nc,1\n",
    "no_label_col.csv": "sentence,label\n" + ROWS + "\n",
    "empty_text.csv": "text,label\n" + ROWS + "\n ,1\n",
    "empty_label.csv": "text,label\n" + ROWS + "\nunlabelled,\n",
    "empty.csv": "",
    "cp1252.csv": "text,label\ncaf\u00e9 \u2026,1\n".encode("cp1252"),
    "garbage.csv.bz2": b"BZh9 this is not bzip2 data",
    "unknown_label.csv": "text,label\ngood,positive\nbad,unknown\n",
    "bad.yaml": "method:\n  k: [1, 2\n",
    "unknown_section.yaml": "methd:\n  k: 2\n",
    "wrong_type.yaml": "method:\n  k: [1, 2]\n",
    "str_as_list.yaml": "data:\n  source: [a, b]\n",
    "nan.yaml": "optim:\n  lr: .nan\n",
    "not_mapping.yaml": "- a\n- b\n",
    "not_utf8.yaml": b"method:\n  name: \xff\xfe\n",
}

TRAIN = "train --preset tiny --quiet --runs-dir {runs}"
CASES = [
    # ---- config: unknown fields, wrong types, NaN/inf, ranges, bad files
    ("unknown-field", f"{TRAIN} --set method.nope=1", "method.nope"),
    ("unknown-section", f"{TRAIN} --set foo.k=1", "foo.k"),
    ("no-section", f"{TRAIN} --set lr=1", "section.field"),
    ("no-equals", f"{TRAIN} --set optim.lr", "section.field=value"),
    ("wrong-type-int", f"{TRAIN} --set method.k=three", "method.k"),
    ("wrong-type-fraction", f"{TRAIN} --set optim.batch_size=2.5", "optim.batch_size"),
    ("wrong-type-bool", f"{TRAIN} --set method.adv_enabled=maybe", "method.adv_enabled"),
    ("nan-lr", f"{TRAIN} --set optim.lr=nan", "optim.lr"),
    ("inf-lambda", f"{TRAIN} --set method.lambda_js=inf", "method.lambda_js"),
    ("minus-inf-eps", f"{TRAIN} --set method.adv_eps=-inf", "method.adv_eps"),
    ("nan-fraction", f"{TRAIN} --set data.validation_fraction=nan", "data.validation_fraction"),
    ("nan-warmup", f"{TRAIN} --set optim.warmup_ratio=NaN", "optim.warmup_ratio"),
    ("inf-int", f"{TRAIN} --set optim.max_steps=1e999", "optim.max_steps"),
    ("range-keep", f"{TRAIN} --set method.keep_ratio=1.5", "method.keep_ratio"),
    ("range-lr", f"{TRAIN} --set optim.lr=-1", "optim.lr"),
    ("range-k", f"{TRAIN} --set method.k=0", "method.k"),
    ("choice-device", f"{TRAIN} --set runtime.device=tpu", "runtime.device"),
    ("choice-target", f"{TRAIN} --set method.dropout_targets=hidden,brain", "method.dropout_targets"),
    ("pmin-above-pmax", f"{TRAIN} --set method.p_min=0.5", "method.p_min"),
    ("max-length-above-model", f"{TRAIN} --set data.max_length=1024", "512"),
    ("max-length-4096", f"{TRAIN} --set data.max_length=4096", "data.max_length"),
    ("bad-yaml", f"{TRAIN} --config {{d}}/bad.yaml", "opened on line 2"),
    ("yaml-unknown-section", f"{TRAIN} --config {{d}}/unknown_section.yaml", "methd"),
    ("yaml-wrong-type", f"{TRAIN} --config {{d}}/wrong_type.yaml", "method.k"),
    ("yaml-list-for-text", f"{TRAIN} --config {{d}}/str_as_list.yaml", "data.source"),
    ("yaml-nan", f"{TRAIN} --config {{d}}/nan.yaml", "optim.lr"),
    ("yaml-not-mapping", f"{TRAIN} --config {{d}}/not_mapping.yaml", "mapping"),
    ("yaml-not-utf8", f"{TRAIN} --config {{d}}/not_utf8.yaml", "UTF-8"),
    ("missing-config", f"{TRAIN} --config {{d}}/nope.yaml", "does not exist"),
    ("unknown-preset", "train --preset huge", "--preset"),
    ("unknown-model", f"{TRAIN} --set model.name=no-such-model", "no-such-model"),
    ("resume-no-name", f"{TRAIN} --resume", "--name"),
    ("name-is-path", f"{TRAIN} --name ../outside", "not allowed"),
    ("name-taken", f"{TRAIN} --name {{run}}", "already exists"),
    # ---- data files: quoting, JSON lines, labels, splits, unused settings
    ("csv-unclosed-quote", f"{TRAIN} --set data.source={{d}}/unclosed.csv", "line 6"),
    ("tsv-unclosed-quote", f"{TRAIN} --set data.source={{d}}/unclosed.tsv", "line 8"),
    ("csv-unclosed-at-eof", f"{TRAIN} --set data.source={{d}}/unclosed_eof.csv", "lines 2-5"),
    ("csv-extra-field", f"{TRAIN} --set data.source={{d}}/extra_field.csv", "line 3"),
    ("csv-duplicate-header", f"{TRAIN} --set data.source={{d}}/dup_header.csv", "repeats"),
    ("jsonl-bad-line", f"{TRAIN} --set data.source={{d}}/bad.jsonl", "line 12"),
    ("jsonl-not-object", f"{TRAIN} --set data.source={{d}}/list_line.jsonl", "line 2"),
    ("json-invalid", f"{TRAIN} --set data.source={{d}}/bad.json", "not valid JSON"),
    ("labels-too-many", f"{TRAIN} --set data.source={{d}}/sparse_ids.csv", "at most 1000"),
    ("label-1e3", f"{TRAIN} --set data.source={{d}}/e3.csv", "1e3"),
    ("labels-case-spaces", f"{TRAIN} --set data.source={{d}}/case.csv", "differ only by case"),
    ("single-class", f"{TRAIN} --set data.source={{d}}/one_class.csv", "single class"),
    ("single-class-after-cut", f"{TRAIN} --set data.source={{d}}/ok.csv --set data.max_train_examples=1",
     "data.max_train_examples"),
    ("empty-validation", f"{TRAIN} --set data.source={{d}}/three_rows.csv", "validation split is empty"),
    ("missing-label-column", f"{TRAIN} --set data.source={{d}}/no_label_col.csv", "data.text_column"),
    ("empty-text", f"{TRAIN} --set data.source={{d}}/empty_text.csv", "line 42"),
    ("empty-label", f"{TRAIN} --set data.source={{d}}/empty_label.csv", "line 42"),
    ("empty-file", f"{TRAIN} --set data.source={{d}}/empty.csv", "is empty"),
    ("not-utf8", f"{TRAIN} --set data.source={{d}}/cp1252.csv", "not UTF-8"),
    ("bad-bz2", f"{TRAIN} --set data.source={{d}}/garbage.csv.bz2", "bzip2"),
    ("missing-file", f"{TRAIN} --set data.source={{d}}/nope.csv", "not found"),
    ("unknown-source", f"{TRAIN} --set data.source=sst3", "sst3"),
    ("label-not-in-names", f"{TRAIN} --set data.source={{d}}/unknown_label.csv --set data.label_names=positive,negative",
     "unknown"),
    ("unused-validation-file", f"{TRAIN} --set data.validation_file={{d}}/ok.csv", "data.validation_file"),
    ("unused-text-column", f"{TRAIN} --set data.text_column=review", "data.text_column"),
    ("unused-label-names", f"{TRAIN} --set data.label_names=a,b", "data.label_names"),
    ("unused-data-dir", f"{TRAIN} --set data.data_dir={{d}}", "data.data_dir"),
    ("unused-validation-fraction", f"{TRAIN} --set data.source=sst2 --set data.validation_fraction=0.2",
     "data.validation_fraction"),
    ("two-train-files", f"{TRAIN} --set data.source={{d}}/ok.csv --set data.train_file={{d}}/case.csv",
     "data.train_file"),
    # ---- predict / eval
    ("predict-empty", "predict {run} --runs-dir {runs} {blank}", "non-empty sentence"),
    ("predict-unknown-run", "predict no-such-run --runs-dir {runs} hello", "no-such-run"),
    ("eval-bad-file", "eval {run} --runs-dir {runs} --file {d}/unclosed.csv", "line 6"),
    ("eval-unknown-label", "eval {run} --runs-dir {runs} --file {d}/unknown_label.csv", "line 3"),
    ("eval-unknown-split", "eval {run} --runs-dir {runs} --split nope", "nope"),
    ("eval-batch-size-0", "eval {run} --runs-dir {runs} --batch-size 0", "--batch-size"),
    ("eval-missing-column", "eval {run} --runs-dir {runs} --file {d}/no_label_col.csv", "data.text_column"),
    # ---- attacks: bounds checked before any work
    ("attack-n-negative", "attack {run} --runs-dir {runs} -n -1", "--num-examples"),
    ("attack-n-huge", "attack {run} --runs-dir {runs} -n 1000000", "--num-examples"),
    ("attack-perturb-0", "attack {run} --runs-dir {runs} --max-perturb 0", "--max-perturb"),
    ("attack-perturb-nan", "attack {run} --runs-dir {runs} --max-perturb nan", "--max-perturb"),
    ("attack-budget-negative", "attack {run} --runs-dir {runs} --query-budget -5", "--query-budget"),
    ("attack-seed-negative", "attack {run} --runs-dir {runs} --seed -1", "--seed"),
    ("attack-device", "attack {run} --runs-dir {runs} --device tpu", "--device"),
    ("attack-recipe", "attack {run} --runs-dir {runs} --recipe nope", "nope"),
    ("attack-unknown-run", "attack no-such-run --runs-dir {runs} -n 2", "no-such-run"),
    # ---- landscape: bounds checked before any work
    ("ls-points-huge", "landscape {run} --runs-dir {runs} --points 1000000", "--points"),
    ("ls-points-2d", "landscape {run} --runs-dir {runs} --kind slice2d --points 150", "slice2d"),
    ("ls-k-huge", "landscape {run} --runs-dir {runs} --kind hessian --k 100000", "--k"),
    ("ls-iters-0", "landscape {run} --runs-dir {runs} --kind hessian --iters 0", "--iters"),
    ("ls-samples-huge", "landscape {run} --runs-dir {runs} --kind hessian --samples 100000", "--samples"),
    ("ls-rho-negative", "landscape {run} --runs-dir {runs} --kind sharpness --rho -0.1", "--rho"),
    ("ls-rho-nan", "landscape {run} --runs-dir {runs} --kind sharpness --rho nan", "--rho"),
    ("ls-eps-0", "landscape {run} --runs-dir {runs} --kind sharpness --eps 0", "--eps"),
    ("ls-span-0", "landscape {run} --runs-dir {runs} --span 0", "--span"),
    ("ls-examples-negative", "landscape {run} --runs-dir {runs} --examples -1", "--examples"),
    ("ls-seed-negative", "landscape {run} --runs-dir {runs} --seed -1", "--seed"),
    ("ls-max-length", "landscape {run} --runs-dir {runs} --max-length 4096", "position limit"),
    ("ls-interp-no-other", "landscape {run} --runs-dir {runs} --kind interp", "--other"),
    ("ls-unknown-run", "landscape no-such-run --runs-dir {runs}", "no-such-run"),
    ("ls-device", "landscape {run} --runs-dir {runs} --device tpu", "--device"),
    # ---- other commands
    ("stop-unknown-run", "stop no-such-run --runs-dir {runs}", "no-such-run"),
]


def _files(folder) -> list:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _digest(folder) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in _files(folder)}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from uegr.cli import main

    root = tmp_path_factory.mktemp("bad_inputs")
    runs, d = root / "runs", root / "files"
    d.mkdir()
    for name, content in FILES.items():
        (d / name).write_bytes(content.encode() if isinstance(content, str) else content)
    assert main(["train", "--preset", "tiny", "--name", RUN, "--quiet", "--runs-dir", str(runs),
                 "--set", "optim.max_steps=2", "--set", "runtime.eval_every=2"]) == 0
    return {"runs": runs, "d": d, "before": _digest(runs / RUN)}


def _argv(template: str, corpus) -> list[str]:
    out = []
    for tok in template.split(" "):
        if tok:
            out.append(tok.format(runs=corpus["runs"], d=corpus["d"], run=RUN, blank=" "))
    return out


@pytest.mark.parametrize("case,argv,needle", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_a_one_line_error(corpus, capsys, case, argv, needle):
    from uegr.cli import main

    folders = sorted(p.name for p in corpus["runs"].iterdir())
    try:
        rc = main(_argv(argv, corpus))
    except SystemExit as exc:  # argparse refuses unknown choices itself, with exit code 2
        rc = exc.code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, f"{case}: exit code {rc}, stderr {err[-500:]!r}"
    assert lines, f"{case}: no message"
    assert "error" in lines[-1].lower() and needle.lower() in lines[-1].lower(), lines[-1]
    # refused before anything is written: a bad data file or an unknown model makes no run folder
    assert sorted(p.name for p in corpus["runs"].iterdir()) == folders, case


def test_the_corpus_changed_nothing_a_user_wrote(corpus):
    assert _digest(corpus["runs"] / RUN) == corpus["before"]


def test_sparse_label_ids_are_reindexed_with_a_notice(tmp_path, caplog):
    from uegr.config import DataConfig
    from uegr.data import load_dataset

    f = tmp_path / "ids.csv"
    f.write_text("text,label\n" + "\n".join(f"s{i},{(0, 100000)[i % 2]}" for i in range(40)) + "\n")
    ds = load_dataset(DataConfig(source=str(f)))
    assert ds.num_labels == 2 and ds.label_names == ["0", "100000"]  # not 100,001 classes
    assert sorted(set(ds.splits["train"].labels)) == [0, 1]
    assert any("re-indexed" in n for n in ds.notices) and "re-indexed" in caplog.text
    assert "notices" in ds.summary()


def test_legit_multiline_quoted_field_is_read(tmp_path):
    from uegr.config import DataConfig
    from uegr.data import read_records

    rows = [f"row {i},{i % 2}" for i in range(20)]
    rows[3] = '"He said ""hi""\nand left, slowly",1'
    f = tmp_path / "m.csv"
    f.write_text("text,label\n" + "\n".join(rows) + "\n")
    recs = read_records(f)
    assert len(recs) == 20 and recs[3]["text"] == 'He said "hi"\nand left, slowly'
    assert recs.lines[3:5] == [5, 7]  # the two-line field fills lines 5-6; the next row starts on line 7
    assert DataConfig(source=str(f))


def test_long_inputs_are_truncated_to_the_model_limit(tiny_model, tokenizer):
    from uegr.attacks.runner import ModelWrapper
    from uegr.models import predict_proba

    long_text = "word " * 3000  # far beyond 512 positions
    probs = predict_proba(tiny_model, tokenizer, [long_text], max_length=4096)
    assert probs.shape == (1, 2)
    wrapper = ModelWrapper(tiny_model, tokenizer, max_length=100_000)
    assert wrapper.max_length == 512 and wrapper([long_text]).shape == (1, 2)


def test_uploads_are_content_addressed(tmp_path):
    from app import config_form as F

    up = tmp_path / "runs" / "_uploads"
    first = F.save_upload("reviews.csv", b"text,label\na,1\nb,0\n", up)
    again = F.save_upload("reviews.csv", b"text,label\na,1\nb,0\n", up)
    other = F.save_upload("reviews.csv", b"text,label\nc,0\nd,1\n", up)
    assert first == again and other != first and first.name == other.name == "reviews.csv"
    assert first.read_bytes() == b"text,label\na,1\nb,0\n"  # a re-upload under the same name changed nothing
    assert hashlib.sha256(first.read_bytes()).hexdigest().startswith(first.parent.name)


def test_analysis_history_never_overwrites(tmp_path):
    from uegr.runs import Run

    run = Run(tmp_path)
    name = "eval-history-check"
    run.write_analysis(name, {"accuracy": 0.5})
    run.write_analysis(name, {"accuracy": 0.75})
    hist = run.analysis_history(name)
    assert [h["accuracy"] for h in hist] == [0.75, 0.5]  # newest first, the earlier kept
    assert run.analyses(name)[name]["accuracy"] == 0.75
    (run.analyses_dir / "eval-legacy.json").write_text(json.dumps({"accuracy": 0.1}))  # from before histories
    assert [h["accuracy"] for h in run.analysis_history("eval-legacy")] == [0.1]
    run.write_analysis("eval-legacy", {"accuracy": 0.2})
    assert [h["accuracy"] for h in run.analysis_history("eval-legacy")] == [0.2, 0.1]


def test_every_float_field_refuses_nan_and_infinity():
    import dataclasses

    from uegr.config import SECTIONS, Config, ConfigError, set_field, validate

    floats = [f"{s}.{f.name}" for s, cls in SECTIONS.items() for f in dataclasses.fields(cls) if str(f.type) == "float"]
    assert len(floats) >= 20
    for dotted in floats:
        for bad in ("nan", "inf", "-inf"):
            cfg = Config()
            set_field(cfg, dotted, bad)
            with pytest.raises(ConfigError) as err:
                validate(cfg)
            assert err.value.field == dotted and "finite" in str(err.value)
