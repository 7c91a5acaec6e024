"""uegr.hf.UEGRTrainer: one step through transformers.Trainer equals one step of the project's Trainer
(same batch, seed and model), and what it saves loads with plain transformers."""

import pytest
import torch

from uegr.config import build_config


class _Seed:
    """A TrainerCallback that fixes the RNG just before the step (the project's side does the same)."""

    def __getattr__(self, name):
        return lambda *a, **k: None

    def on_step_begin(self, args, state, control, **kw):
        torch.manual_seed(7)


def _project_step(cfg):
    from uegr.trainer import Trainer

    tr = Trainer(cfg)
    tr.model.train()  # as Trainer._loop does
    before = {n: p.detach().clone() for n, p in tr.raw_model.named_parameters()}
    _, batch = next(tr.batches())
    torch.manual_seed(7)
    parts, _, _ = tr.train_step(batch)
    return tr, batch, before, {k: float(v) for k, v in parts.items()}


@pytest.mark.parametrize("method", ["uegr", "roast"])
def test_one_step_matches_the_project_trainer(method, data_dir, tmp_path):
    from transformers import TrainingArguments

    from uegr.hf import UEGRTrainer
    from uegr.models import load_model

    cfg = build_config("tiny", overrides=[f"method.name={method}", "model.pooling=mean", "optim.warmup_ratio=0",
                                          "data.source=sst2", "optim.batch_size=8", "runtime.device=cpu"])
    ref, batch, before, ref_parts = _project_step(cfg)

    model, tok = load_model(cfg.model, ref.dataset.num_labels, ref.dataset.label_names, ref.attn, seed=cfg.optim.seed)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())  # the same starting point
    args = TrainingArguments(output_dir=str(tmp_path / "hf"), per_device_train_batch_size=8, max_steps=1,
                             learning_rate=cfg.optim.lr, weight_decay=cfg.optim.weight_decay, warmup_ratio=0.0,
                             max_grad_norm=cfg.optim.grad_clip, seed=cfg.optim.seed, report_to=[], use_cpu=True,
                             save_strategy="no", logging_steps=1, disable_tqdm=True)
    rows = [{"i": i} for i in range(8)]
    hf = UEGRTrainer(model=model, args=args, train_dataset=rows, data_collator=lambda _: dict(batch),
                     processing_class=tok, method=cfg.method, callbacks=[_Seed()])
    hf.train()

    got = {k: float(v) for k, v in hf.last_parts.items()}
    assert got.keys() == ref_parts.keys() and {"clean", "adv"} <= got.keys()
    assert ref_parts.get("js", ref_parts.get("kl")) > 0  # dropout / perturbation really acted on both sides
    for k in ref_parts:
        assert got[k] == pytest.approx(ref_parts[k], abs=1e-5), k
    moved = 0
    for n, p in hf.model.named_parameters():
        q = dict(ref.raw_model.named_parameters())[n]
        assert torch.allclose(p.detach(), q.detach(), atol=1e-5), n
        moved += int(not torch.equal(p.detach(), before[n]))
    assert moved > 10  # the step really changed the weights, in both
    logged = hf.state.log_history[0]
    assert logged[f"{method}/clean"] == pytest.approx(ref_parts["clean"], abs=1e-5)

    # What the Trainer saves is portable: plain transformers reads the mean-pooled head back.
    out = tmp_path / "saved"
    hf.save_model(str(out))
    from transformers import AutoModelForSequenceClassification

    again = AutoModelForSequenceClassification.from_pretrained(out).eval()
    enc = tok(["a gorgeous, witty film", "dull"], padding=True, return_tensors="pt")
    hf.model.eval()
    with torch.no_grad():
        assert torch.allclose(again(**enc).logits.softmax(-1), hf.model(**enc).logits.softmax(-1), atol=1e-5)
    assert (out / "modeling_uegr.py").is_file()


def _rows(tok):
    texts = ["good film", "bad film", "a great and moving story", "awful acting here", "fine", "a boring plot",
             "lovely", "dull and far too long"]
    return [dict(tok(t), labels=i % 2) for i, t in enumerate(texts)]


def _hf(tmp_path, method, batch, accum, optim="adamw_torch_fused"):
    from transformers import DataCollatorWithPadding, TrainingArguments

    from uegr.config import MethodConfig, ModelConfig
    from uegr.hf import UEGRTrainer
    from uegr.models import load_model

    model, tok = load_model(ModelConfig(name="tiny-bert"), 2, ["neg", "pos"])
    for m in model.modules():  # no dropout: accumulation can then be compared exactly
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = TrainingArguments(output_dir=str(tmp_path / f"hf-{batch}-{accum}"), per_device_train_batch_size=batch,
                             gradient_accumulation_steps=accum, max_steps=1, learning_rate=1.0 if optim == "sgd" else 1e-2, optim=optim,
                             max_grad_norm=0.0 if optim == "sgd" else 1.0, warmup_ratio=0.0, report_to=[], use_cpu=True,
                             save_strategy="no", disable_tqdm=True, seed=3)
    tr = UEGRTrainer(model=model, args=args, train_dataset=_rows(tok), data_collator=DataCollatorWithPadding(tok),
                     method=MethodConfig(name=method, keep_ratio=0.3))
    tr.train()
    return tr, before


def test_gradient_accumulation_and_the_fixed_mask_work_inside_the_hf_loop(tmp_path):
    """2 accumulated micro-batches of 4 = one batch of 8 (vanilla), and CHILD-TUNING_D's Fisher mask,
    computed by UEGRTrainer before training, freezes exactly the elements it drops."""
    one, start = _hf(tmp_path, "vanilla", 8, 1, optim="sgd")  # plain SGD, no clipping: a wrong scale shows
    two, _ = _hf(tmp_path, "vanilla", 4, 2, optim="sgd")
    for (n, p), (_, q) in zip(one.model.named_parameters(), two.model.named_parameters()):
        d1, d2 = p.detach() - start[n], q.detach() - start[n]
        assert torch.allclose(d1, d2, rtol=1e-3, atol=1e-9), n
    assert float((one.model.classifier.weight - start["classifier.weight"]).abs().max()) > 1e-5
    child, before = _hf(tmp_path, "childtuning", 4, 2)
    upd = child.updater
    assert 0.29 < upd.kept_fraction() < 0.31
    moved = 0
    for (n, p), mask in zip(upd.named, upd.masks):
        change = (p.detach() - before[n]).abs()
        assert float(change[~mask].max()) == 0.0, n  # dropped elements never move
        moved += int(change[mask].gt(0).sum())
    assert moved > 0
