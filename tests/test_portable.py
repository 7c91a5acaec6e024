"""Portable checkpoints: every folder the project writes (best, last, exported) gives the same class
probabilities through `uegr predict`, AutoModelForSequenceClassification, pipeline and TextAttack's
HuggingFaceModelWrapper, for each pooling and each supported model family; a folder that needs code
refuses to load without trust_remote_code. The plain loaders run in a process that never imports uegr."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tinyfamilies import tiny_classifier

from uegr.cli import main as uegr_main
from uegr.models import ModelLoadError, load_checkpoint, load_tokenizer, save_checkpoint

TEXTS = ["a gorgeous, witty, seductive movie.", "the plot is nothing but boilerplate clichés",
         "it's not a bad film, just a forgettable one", "dull"]
HERE = Path(__file__).resolve().parent


def _families(tmp_path) -> list[Path]:
    """cls checkpoints of the other supported families (RoBERTa, DistilBERT, ELECTRA), random weights."""
    common = {"initializer_range": 0.3, "id2label": {0: "neg", 1: "pos"}, "label2id": {"neg": 0, "pos": 1}}
    torch.manual_seed(0)
    models = {name: tiny_classifier(name, **common) for name in ("roberta", "distilbert", "electra")}
    tok = load_tokenizer("minilm")
    out = []
    for name, model in models.items():
        save_checkpoint(model, tok, tmp_path / name)
        out.append(tmp_path / name)
    return out


def _check_card(path: Path, name: str, pooling: str) -> None:
    """The model card is filled from the run: nothing left blank or templated."""
    card = path.read_text()
    for needle in (f"# {name}", "method **uegr**", "| `k` | 2 |", "| `keep_ratio` | 0.3 |", "| `lr` | 0.001 |",
                   "split sizes: train 64", "n = 32", "evaluated during training at step", "wall time",
                   "hardware: cpu", "The paper's", "This project's reconstruction"):
        assert needle in card, needle
    if pooling == "cls":
        assert "| deepwordbug on validation |" in card and "| 3 | 0 |" in card  # recipe, n, seed
        assert "| `uegr eval` on builtin:validation |" in card
    else:
        assert "No attack was run" in card
    assert ("trust_remote_code=True" in card) == (pooling == "mean")
    for bad in ("None", "TODO", "{", "nan", "unknown"):
        assert bad not in card, bad


def _uegr_predict(folder: Path, capsys) -> list[list[float]]:
    assert uegr_main(["predict", str(folder), *TEXTS, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    labels = list(rows[0]["probabilities"])
    return [[r["probabilities"][lab] for lab in labels] for r in rows]


def test_every_folder_gives_the_same_probabilities_everywhere(tmp_path, capsys, monkeypatch):
    runs = tmp_path / "runs"
    folders = []
    for pooling in ("mean", "cls"):
        name = f"tiny-{pooling}"
        assert uegr_main(["train", "--preset", "tiny", "--set", f"model.pooling={pooling}", "--set", "runtime.device=cpu",
                          "--name", name, "--runs-dir", str(runs), "--quiet"]) == 0
        fmt = ["--format", "onnx", "--json"] if pooling == "mean" else []
        if pooling == "cls":  # a real attack and a real eval on best: the card must report both, with n
            assert uegr_main(["attack", name, "--recipe", "deepwordbug", "-n", "3", "--split", "validation",
                              "--runs-dir", str(runs), "--json"]) == 0
            assert uegr_main(["eval", name, "--split", "validation", "--runs-dir", str(runs)]) == 0
        capsys.readouterr()
        assert uegr_main(["export", name, str(tmp_path / f"export-{pooling}"), "--runs-dir", str(runs), *fmt]) == 0
        if fmt:  # ONNX: parity with PyTorch on CPU and a measured latency, also written into the card
            onnx = json.loads(capsys.readouterr().out)["onnx"]
            assert onnx["max_abs_prob_diff"] <= 1e-4 and onnx["onnxruntime_ms"] > 0 and onnx["torch_ms"] > 0
            assert "model.onnx" in (tmp_path / "export-mean" / "README.md").read_text()
        _check_card(tmp_path / f"export-{pooling}" / "README.md", name, pooling)
        folders += [runs / name / "checkpoints" / "best", runs / name / "checkpoints" / "last",
                    tmp_path / f"export-{pooling}"]
    folders += _families(tmp_path)
    capsys.readouterr()
    expected = {str(f): _uegr_predict(f, capsys) for f in folders}
    needs_code = {str(f): (f / "modeling_uegr.py").is_file() for f in folders}
    assert sum(needs_code.values()) == 3 and all(v for k, v in needs_code.items() if "mean" in k)

    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "hf_modules"), "PYTHONPATH": ""}
    spec = json.dumps({"texts": TEXTS, "folders": [[str(f), needs_code[str(f)]] for f in folders]})
    proc = subprocess.run([sys.executable, str(HERE / "plain_loaders.py"), spec], capture_output=True, text=True,
                          env=env, timeout=300, stdin=subprocess.DEVNULL, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT ", 1)[1])
    for folder, want in expected.items():
        got = result[folder]
        want = torch.tensor(want)
        if needs_code[folder] or "export" not in folder and "runs" not in folder:
            assert want.std(0).max() > 1e-4, folder  # sentences differ: the comparison can see a wrong head
        for loader in ("automodel", "pipeline", "textattack"):
            diff = (torch.tensor(got[loader]) - want).abs().max().item()
            assert diff <= 1e-5, (folder, loader, diff)
        if needs_code[folder]:
            assert got["class"] == "UEGRBertForSequenceClassification"
            assert "trust_remote_code=True" in got["without_remote_code"]  # refused, not a random pooler


def test_pre_portable_checkpoint_is_read_right_and_upgraded_by_export(tmp_path, capsys):
    from uegr.config import ModelConfig
    from uegr.models import load_model

    model, tok = load_model(ModelConfig(name="tiny-bert", pooling="mean"), 2, ["neg", "pos"])
    save_checkpoint(model, tok, tmp_path / "new")
    legacy = tmp_path / "legacy"  # what the project wrote before: a plain BERT config + uegr_pooling
    legacy.mkdir()
    for f in (tmp_path / "new").iterdir():
        if f.name != "modeling_uegr.py":
            (legacy / f.name).write_bytes(f.read_bytes())
    raw = json.loads((legacy / "config.json").read_text())
    raw.update(model_type="bert", architectures=["BertForSequenceClassification"], uegr_pooling="mean")
    for k in ("auto_map", "pooling"):
        raw.pop(k)
    (legacy / "config.json").write_text(json.dumps(raw))

    with pytest.warns(UserWarning, match="uegr export"):
        old, _ = load_checkpoint(legacy)
    enc = tok(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        ref = model.eval()(**enc).logits
        assert torch.allclose(old(**enc).logits, ref, atol=1e-6)
    assert uegr_main(["export", str(legacy), str(tmp_path / "up")]) == 0
    assert "upgraded" in capsys.readouterr().out
    up = json.loads((tmp_path / "up" / "config.json").read_text())
    assert up["model_type"] == "uegr_bert" and "auto_map" in up and (tmp_path / "up" / "modeling_uegr.py").is_file()
    from transformers import AutoModelForSequenceClassification

    again = AutoModelForSequenceClassification.from_pretrained(tmp_path / "up").eval()
    with torch.no_grad():
        assert torch.allclose(again(**enc).logits, ref, atol=1e-6)
    card = (tmp_path / "up" / "README.md").read_text()
    assert "trust_remote_code=True" in card and "upgraded" in card
    assert uegr_main(["export", str(legacy), str(tmp_path / "up")]) == 2  # never overwrites


def test_mean_pooling_on_a_family_without_a_pooler_is_refused():
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    from uegr.models import install_pooling

    model = DistilBertForSequenceClassification(DistilBertConfig(vocab_size=100, dim=16, n_layers=1, n_heads=2,
                                                                 hidden_dim=32))
    with pytest.raises(ModelLoadError, match="model.pooling"):
        install_pooling(model, "mean")
