"""Offline attack suite: counts/metrics, fast failure of unavailable recipes, resume, CLI."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pytest

from uegr.attacks import (
    RECIPES,
    AttackError,
    AttackUnavailable,
    attack_dataset,
    attack_sentence,
    get_recipe,
    list_recipes,
    read_records,
    wordnet_status,
)
from uegr.attacks.cli import add_attack_parser, cmd_attack

SST2_DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2" / "dev.tsv"
FALLBACK = [("a gorgeous , witty , seductive movie .", 1), ("the film is strictly routine .", 0),
            ("it 's a charming and often affecting journey .", 1), ("unflinchingly bleak and desperate", 0),
            ("a masterpiece four years in the making .", 1), ("the acting is stiff and the plot is dull .", 0)]
UNAVAILABLE = ("textfooler", "bae", "bert-attack", "a2t", "textbugger", "checklist")
needs_wordnet = pytest.mark.skipif(not wordnet_status()[0], reason=f"WordNet absent: {wordnet_status()[1]}")


@pytest.fixture(scope="module")
def sentences():
    if SST2_DEV.is_file():
        rows = [r.split("\t") for r in SST2_DEV.read_text(encoding="utf-8").splitlines()[1:9]]
        return [r[0].strip() for r in rows], [int(r[1]) for r in rows]
    return [t for t, _ in FALLBACK], [y for _, y in FALLBACK]


@pytest.fixture(scope="module")
def victim():
    from uegr.models import build_tiny_bert, load_tokenizer

    return build_tiny_bert(2, hidden=32, layers=2, seed=0).eval(), load_tokenizer("minilm")


def test_registry_lists_offline_and_unavailable_recipes():
    rows = {r["name"]: r for r in list_recipes()}
    for name in ("deepwordbug", "pwws", "pruthi", "textfooler-lite", "checklist-lite", *UNAVAILABLE):
        assert name in rows and rows[name]["description"]
    for name in UNAVAILABLE:
        assert rows[name]["available"] is False and rows[name]["reason"]
    assert rows["deepwordbug"]["available"], rows["deepwordbug"]["reason"]
    with pytest.raises(AttackError, match="unknown attack recipe"):
        get_recipe("nope")


@pytest.mark.parametrize("name", UNAVAILABLE)
def test_unavailable_recipe_fails_fast_with_reason(victim, sentences, name):
    model, tok = victim
    t0 = time.perf_counter()
    with pytest.raises(AttackUnavailable) as info:
        RECIPES[name].build(None, model, tok, 100, 0.3)
    with pytest.raises(AttackUnavailable):
        attack_dataset(model, tok, *sentences, recipe=name, n=2)
    assert time.perf_counter() - t0 < 2.0
    assert RECIPES[name].available()[1] in str(info.value)


def test_attack_counts_and_metrics_add_up(victim, sentences, tmp_path):
    model, tok = victim
    texts, labels = sentences
    seen = []
    s = attack_dataset(model, tok, texts, labels, recipe="deepwordbug", n=5, seed=1, query_budget=300,
                       max_perturb_fraction=0.3, out_dir=tmp_path / "a", label_names=["neg", "pos"],
                       progress=lambda d, t, e: seen.append((d, t)))
    n = 5
    assert s["successful"] + s["failed"] + s["skipped"] == n == s["num_examples"]
    assert s["clean_accuracy"] == pytest.approx(1 - s["skipped"] / n)
    assert s["accuracy_under_attack"] == pytest.approx(s["failed"] / n)
    if s["successful"] + s["failed"]:
        assert s["attack_success_rate"] == pytest.approx(s["successful"] / (s["successful"] + s["failed"]))
        assert s["avg_queries"] <= 300
    recs = read_records(tmp_path / "a")
    assert len(recs) == n and len({r["index"] for r in recs}) == n
    for r in recs:
        assert r["result"] in ("successful", "failed", "skipped")
        assert (r["result"] == "skipped") == (r["original_prediction"] != r["label"])
        if r["result"] == "successful":
            assert r["perturbed_prediction"] != r["label"] and 0 < r["perturbed_word_pct"] <= 100
            assert r["words_changed"] <= max(1, -(-r["num_words"] * 3 // 10))  # ceil(0.3 * words)
    assert seen[0] == (0, n) and seen[-1] == (n, n)


def test_interrupted_attack_resumes_without_redoing(victim, sentences, tmp_path):
    model, tok = victim
    texts, labels = sentences
    out = tmp_path / "resume"
    kw = {"recipe": "deepwordbug", "seed": 3, "query_budget": 200, "max_perturb_fraction": 0.3, "out_dir": out}

    def stop_after_two(done, total, eta):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        attack_dataset(model, tok, texts, labels, n=4, progress=stop_after_two, **kw)
    first = (out / "records.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(first) == 2
    s = attack_dataset(model, tok, texts, labels, n=4, **kw)
    lines = (out / "records.jsonl").read_text(encoding="utf-8").splitlines()
    assert s["resumed"] == 2 and len(lines) == 4 and lines[:2] == first
    assert s["successful"] + s["failed"] + s["skipped"] == 4
    s6 = attack_dataset(model, tok, texts, labels, n=6, **kw)  # n=6 extends the same seeded subset
    assert s6["resumed"] == 4 and len(read_records(out)) == 6
    s_new = attack_dataset(model, tok, texts, labels, n=2, **{**kw, "seed": 4})  # other config: fresh
    assert s_new["resumed"] == 0 and len(read_records(out)) == 2


def test_attack_sentence_word_diff(victim):
    model, tok = victim
    rec = attack_sentence(model, tok, "a gorgeous witty seductive movie", None, "deepwordbug",
                          query_budget=300, max_perturb_fraction=0.5)
    assert rec["result"] in ("successful", "failed")  # label None = the model's own prediction
    assert [w for w, _ in rec["original_words"]] == ["a", "gorgeous", "witty", "seductive", "movie"]
    changed = sum(c for _, c in rec["original_words"])
    if rec["result"] == "successful":  # a failed attack shows its best attempt, which may differ too
        assert changed > 0 and rec["words_changed"] > 0
    assert [w for w, _ in rec["perturbed_words"]] == rec["perturbed_text"].split()
    assert rec["seconds"] > 0 and rec["num_queries"] >= 1
    with pytest.raises(AttackError):
        attack_sentence(model, tok, "  ", 0)


@pytest.mark.slow
@needs_wordnet
def test_pwws_and_antonym_filter(victim):
    from uegr.attacks.recipes import wordnet_antonyms

    assert "bad" in wordnet_antonyms("good")
    model, tok = victim
    rec = attack_sentence(model, tok, "a good funny movie", 1, "pwws", query_budget=100)
    assert rec["result"] in ("successful", "failed", "skipped")


def _cli(argv):
    parser = argparse.ArgumentParser(prog="uegr")
    add_attack_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_lists_recipes_and_reports_errors_in_one_line(capsys, tmp_path):
    assert _cli(["attack", "--list-recipes"]) == 0
    assert "textfooler-lite" in capsys.readouterr().out
    assert _cli(["attack", "no-such-run", "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("uegr attack: error:") and "\n" not in err and "Traceback" not in err
    assert _cli(["attack", "x", "--recipe", "bae"]) == 2
    assert "unavailable" in capsys.readouterr().err
    assert cmd_attack is not None


def test_cli_attacks_classifier_folder_with_file(victim, sentences, tmp_path, capsys):
    from uegr.models import save_checkpoint

    model, tok = victim
    folder = tmp_path / "clf"
    save_checkpoint(model, tok, folder)
    texts, labels = sentences
    data = tmp_path / "few.jsonl"
    data.write_text("".join(json.dumps({"sentence": t, "y": y}) + "\n" for t, y in zip(texts[:3], labels)))
    argv = ["attack", str(folder), "--file", str(data), "--text-column", "sentence", "--label-column", "y",
            "-n", "3", "--query-budget", "100", "--json"]
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    assert _cli(argv + ["--runs-dir", str(tmp_path / "runs")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["successful"] + summary["failed"] + summary["skipped"] == 3
    assert _cli(argv + ["--runs-dir", str(tmp_path / "runs")]) == 0  # resumes from its saved records
    assert json.loads(capsys.readouterr().out)["resumed"] == 3
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before  # the user's folder is untouched
    [out] = (tmp_path / "runs" / "_external").iterdir()
    assert (out / "analyses" / "attack-deepwordbug-file-few.json").is_file()
    assert len(read_records(out / "analyses" / "attack-deepwordbug-file-few")) == 3
    assert (out / "source.txt").read_text().strip() == str(folder.resolve())
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    assert _cli(["attack", str(folder), "--file", str(bad)]) == 2
    assert "column" in capsys.readouterr().err


def test_cli_attacks_a_run_and_saves_analysis(victim, tmp_path, capsys):
    from uegr.config import Config
    from uegr.models import save_checkpoint
    from uegr.runs import RunStore

    model, tok = victim
    store = RunStore(tmp_path / "runs")
    run = store.create(Config(), "r1")  # default data: the built-in Rotten Tomatoes snippets
    assert _cli(["attack", "r1", "--runs-dir", str(store.root), "-n", "2"]) == 2  # no checkpoint yet
    assert "no checkpoint" in capsys.readouterr().err
    save_checkpoint(model, tok, run.checkpoint_dir("best"))
    argv = ["attack", "r1", "--runs-dir", str(store.root), "-n", "2", "--recipe", "checklist-lite", "--json"]
    assert _cli(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    saved = run.analyses("attack-checklist-lite-validation")["attack-checklist-lite-validation"]
    assert saved["num_examples"] == 2 == summary["num_examples"] and saved["run"] == "r1"
    assert len(read_records(run.analyses_dir / "attack-checklist-lite-validation")) == 2
