"""The UEGR stage-1 pieces on a tiny real BERT: adversary, fused dropout, the step's losses."""

import pytest
import torch

from uegr.config import MethodConfig
from uegr.methods import adversary as adv
from uegr.methods.base import StepContext
from uegr.methods.dropout import RateSampler, block_rates, install_block_dropout
from uegr.methods.uegr import UEGR


def _ctx(model, step=0):
    return StepContext(model, model, lambda loss, **kw: loss.backward(**kw), step, 0.0)


@pytest.mark.parametrize("norm,eps", [("linf_token", 0.1), ("l2", 1.0), ("linf_token", 0.03)])
def test_free_perturbation_has_configured_norm_and_is_zero_on_padding(tiny_model, batch, norm, eps):
    cfg = MethodConfig(adv_norm=norm, adv_eps=eps, k=2)
    method = UEGR(cfg, seed=0)
    method.prepare(tiny_model)
    tiny_model.train()
    method.step(batch, _ctx(tiny_model))
    delta = method.last["delta"]
    mask = batch["attention_mask"].bool()
    assert (~mask).any(), "the batch should contain padding"
    assert delta[~mask].abs().max().item() == 0.0
    if norm == "linf_token":
        per_token = delta.abs().amax(-1)[mask]
        assert torch.allclose(per_token, torch.full_like(per_token, eps), atol=1e-6)
    else:
        per_example = delta.flatten(1).norm(dim=1)
        assert torch.allclose(per_example, torch.full_like(per_example, eps), atol=1e-5)


def test_pgd_stays_in_ball_and_zero_on_padding(tiny_model, batch):
    cfg = MethodConfig(adv_norm="l2", adv_eps=0.5, adv_steps=3, adv_lr=0.3, adv_init=0.2, k=2)
    method = UEGR(cfg, seed=1)
    method.prepare(tiny_model)
    method.step(batch, _ctx(tiny_model))
    delta = method.last["delta"]
    assert delta.flatten(1).norm(dim=1).max().item() <= 0.5 + 1e-5
    assert delta[~batch["attention_mask"].bool()].abs().max().item() == 0.0


def test_normalise_and_project_primitives():
    g = torch.randn(2, 4, 6)
    att = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    n = adv.normalise(g, att, "linf_token")
    assert torch.allclose(n.abs().amax(-1)[att.bool()], torch.ones(5))
    p = adv.project(g * 10, 0.2, att, "l2")
    assert torch.allclose(p.flatten(1).norm(dim=1), torch.full((2,), 0.2), atol=1e-6)


def test_fused_dropout_rate_per_block_is_measured():
    model = torch.nn.Sequential(torch.nn.Dropout(0.1))
    state = install_block_dropout(model)
    model.train()
    rates = torch.tensor([0.05, 0.2, 0.5])
    x = torch.ones(3 * 200, 500)
    with block_rates(model, rates):
        y = model(x)
    assert state.rates is None  # restored after the block
    for k, r in enumerate(rates):
        block = y[k * 200:(k + 1) * 200]
        dropped = (block == 0).float().mean().item()
        assert abs(dropped - r.item()) < 0.01, (k, dropped, r)
        kept = block[block != 0]
        assert torch.allclose(kept, torch.full_like(kept, 1 / (1 - r.item())))


def test_fused_pass_equals_k_separate_passes_given_same_masks(tiny_model, batch):
    install_block_dropout(tiny_model)
    tiny_model.train()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    rates = torch.tensor([0.1, 0.25, 0.4])
    k, b = 3, inputs["input_ids"].shape[0]
    state = tiny_model._uegr_dropout_state
    repeated = {n: t.repeat(k, 1) for n, t in inputs.items()}
    state.record = []
    with block_rates(tiny_model, rates):
        fused = tiny_model(**repeated).logits
    recorded, state.record = state.record, None
    assert len(recorded) > 5  # hidden, attention and classifier dropouts all drew noise
    for i in range(k):
        state.replay = [u[i * b:(i + 1) * b] for u in recorded]
        with block_rates(tiny_model, rates[i:i + 1]):
            separate = tiny_model(**inputs).logits
        assert state.replay == []
        state.replay = None
        assert torch.allclose(fused[i * b:(i + 1) * b], separate, atol=1e-5)


def test_dropout_kinds_cover_hidden_attention_classifier(tiny_model):
    install_block_dropout(tiny_model)
    from uegr.methods.dropout import dropout_modules

    kinds = {m.kind for _, m in dropout_modules(tiny_model)}
    assert kinds == {"hidden", "attention", "classifier"}


@pytest.mark.parametrize("rule", ["uniform", "grid", "schedule", "feedback"])
def test_rate_rules_stay_in_range(rule):
    s = RateSampler(3, 0.05, 0.3, rule, seed=0, js_target=0.05, feedback_step=0.05)
    for step in range(20):
        r = s.sample(progress=step / 20)
        assert len(r) == 3 and r.min() >= 0.0 and r.max() <= 0.9
        if rule != "feedback":
            assert r.min() >= 0.05 - 1e-7 and r.max() <= 0.3 + 1e-7
        s.feedback(0.0)  # sub-models agree: the feedback range moves up
    if rule == "grid":
        assert torch.allclose(s.sample(), torch.tensor([0.05, 0.175, 0.3]))
    if rule == "feedback":
        assert s.center > 0.175
    if rule == "schedule":
        early = RateSampler(3, 0.05, 0.3, rule, seed=0).sample(progress=0.0)
        assert torch.allclose(early, torch.full((3,), 0.05))


def test_uegr_total_is_weighted_sum_and_grads_flow(tiny_model, batch):
    cfg = MethodConfig(k=3, lambda_adv=0.7, lambda_js=2.0)
    method = UEGR(cfg, seed=0)
    method.prepare(tiny_model)
    parts = method.step(batch, _ctx(tiny_model))
    assert abs(parts["loss"] - (parts["clean"] + 0.7 * parts["adv"] + 2.0 * parts["js"])) < 1e-5
    assert parts["js"] >= 0
    assert {"rate_0", "rate_1", "rate_2"} <= set(parts)
    emb = tiny_model.bert.embeddings.word_embeddings.weight.grad
    assert emb is not None and emb.abs().sum() > 0
    assert method.last["sub_logits"].shape == (3, 8, 2)


def test_uegr_is_deterministic_under_seed(tokenizer, batch):
    from uegr.models import build_tiny_bert

    losses = []
    for _ in range(2):
        torch.manual_seed(5)
        model = build_tiny_bert(2, seed=0)
        m = UEGR(MethodConfig(k=2), seed=3)
        m.prepare(model)
        losses.append(m.step(batch, _ctx(model)))
    assert losses[0] == losses[1]
