"""UEGR and the baselines reach embeddings, dropouts and encoder blocks generically: tiny BERT, RoBERTa,
DistilBERT and ELECTRA classifiers built from configs (random weights, MiniLM's vocabulary)."""

import pytest
import torch
from tinyfamilies import tiny_classifier

from uegr.config import MethodConfig
from uegr.methods import build_method
from uegr.methods.base import StepContext
from uegr.methods.dropout import dropout_modules, install_block_dropout
from uegr.saliency import SelectiveUpdater, eligible_parameters


def _family(name):
    torch.manual_seed(0)
    return tiny_classifier(name, roberta_positions=80, attn_implementation="eager")


@pytest.mark.parametrize("family", ["bert", "roberta", "distilbert", "electra"])
@pytest.mark.parametrize("method", ["uegr", "freelb", "roast", "rdrop"])
def test_methods_run_on_every_family(family, method, batch):
    model = _family(family)
    if family == "distilbert":
        batch = {k: v for k, v in batch.items() if k != "token_type_ids"}
    cfg = MethodConfig(name=method, k=2)
    m = build_method(cfg, seed=0)
    m.prepare(model)
    model.train()
    ctx = StepContext(model, model, lambda loss, **kw: loss.backward(**kw), 0, 0.0)
    parts = m.step(batch, ctx)
    assert torch.isfinite(torch.tensor(parts["loss"]))
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0
    upd = SelectiveUpdater(model, cfg, seed=0)
    upd.step(0)
    assert upd.named and 0.29 < upd.kept_fraction() < 0.31 or cfg.mask_rule != "topk"


@pytest.mark.parametrize("family", ["bert", "roberta", "distilbert", "electra"])
def test_dropout_kinds_and_eligible_blocks(family):
    model = _family(family)
    install_block_dropout(model)
    kinds = {m.kind for _, m in dropout_modules(model)}
    assert {"hidden", "attention", "classifier"} <= kinds, kinds
    names = [n for n, _ in eligible_parameters(model)]
    assert names and not any("embeddings" in n or "classifier" in n for n in names)
    assert len({n.split(".layer.")[1].split(".")[0] for n in names}) == 2  # both blocks
