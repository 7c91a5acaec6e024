"""Stage 2 on a tiny real BERT: saliency, masks, masked gradients, frozen moments."""

import dataclasses

import pytest
import torch

from uegr.config import MethodConfig
from uegr.saliency import MaskedAdamW, SelectiveUpdater, eligible_parameters, topk_mask_global


def _backward(model, batch):
    model.zero_grad(set_to_none=True)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    torch.nn.functional.cross_entropy(model(**inputs).logits, batch["labels"]).backward()


def test_eligible_are_encoder_blocks_only(tiny_model):
    names = [n for n, _ in eligible_parameters(tiny_model)]
    assert names and all(".encoder.layer." in n for n in names)
    assert not any("embeddings" in n or "classifier" in n or "pooler" in n for n in names)


@pytest.mark.parametrize("scope", ["global", "per_tensor"])
@pytest.mark.parametrize("keep", [0.3, 0.05, 0.9])
def test_topk_keeps_exactly_the_configured_fraction(tiny_model, batch, scope, keep):
    upd = SelectiveUpdater(tiny_model, MethodConfig(keep_ratio=keep, mask_scope=scope), seed=0)
    _backward(tiny_model, batch)
    upd.accumulate()
    upd.refresh()
    total = sum(m.numel() for m in upd.masks)
    kept = sum(int(m.sum()) for m in upd.masks)
    if scope == "global":
        assert kept == round(keep * total)
    else:
        for m in upd.masks:
            assert int(m.sum()) == max(1, round(keep * m.numel()))


def test_global_topk_picks_highest_scores():
    scores = [torch.tensor([[0.1, 0.9], [0.5, 0.2]]), torch.tensor([0.8, 0.05, 0.7])]
    masks = topk_mask_global(scores, 3 / 7)
    assert masks[0].tolist() == [[False, True], [False, False]]
    assert masks[1].tolist() == [True, False, True]


def test_masked_elements_get_zero_gradient(tiny_model, batch):
    upd = SelectiveUpdater(tiny_model, MethodConfig(keep_ratio=0.3), seed=0)
    _backward(tiny_model, batch)
    assert upd.step(0) is True  # first step refreshes the mask
    kept_grad = 0.0
    for (_, p), m in zip(upd.named, upd.masks):
        assert p.grad[~m].abs().sum().item() == 0.0
        kept_grad += p.grad[m].abs().sum().item()
    assert kept_grad > 0.0  # (a global mask may keep nothing of some tensors)


@pytest.mark.parametrize("saliency", ["fisher", "taylor", "grad"])
def test_saliency_kinds_and_ema(tiny_model, batch, saliency):
    upd = SelectiveUpdater(tiny_model, MethodConfig(saliency=saliency, saliency_decay=0.5), seed=0)
    _backward(tiny_model, batch)
    upd.accumulate()
    name, p = upd.named[0]
    g = p.grad.detach()
    expected = {"fisher": g.square(), "taylor": (p.detach() * g).abs(), "grad": g.abs()}[saliency]
    assert torch.allclose(upd.saliency[0], expected)
    upd.accumulate()  # same gradient again: EMA stays put
    assert torch.allclose(upd.saliency[0], expected)


def test_refresh_schedule_and_warmup(tiny_model):
    upd = SelectiveUpdater(tiny_model, MethodConfig(refresh_every=5, mask_warmup=3), seed=0)
    assert [s for s in range(20) if upd.due(s)] == [3, 8, 13, 18]
    once = SelectiveUpdater(tiny_model, MethodConfig(refresh_every=0, mask_warmup=4), seed=0)
    assert once.due(3) is False and once.due(4) is True
    once.refresh()
    assert once.due(5) is False


def test_freeze_moments_keeps_masked_elements_exactly(tiny_model, batch):
    upd = SelectiveUpdater(tiny_model, MethodConfig(keep_ratio=0.3), seed=0)
    opt = MaskedAdamW(tiny_model.parameters(), lr=1e-2, weight_decay=0.1)
    before = {n: p.detach().clone() for n, p in tiny_model.named_parameters()}
    for step in range(3):
        _backward(tiny_model, batch)
        upd.step(step)
        opt.masks = upd.active_masks()
        opt.step()
    moved = 0
    for (n, p), m in zip(upd.named, upd.masks):
        assert torch.equal(p.detach()[~m], before[n][~m]), n
        moved += int((p.detach()[m] != before[n][m]).sum())
        st = opt.state[p]
        assert st["exp_avg"][~m].abs().sum().item() == 0.0
    assert moved > 0.9 * sum(int(m.sum()) for m in upd.masks)


def test_without_freeze_masked_elements_still_drift_by_weight_decay(tiny_model, batch):
    """The default (plain AdamW on zeroed gradients) differs from freeze_moments: weight decay moves them."""
    upd = SelectiveUpdater(tiny_model, MethodConfig(keep_ratio=0.3), seed=0)
    opt = torch.optim.AdamW(tiny_model.parameters(), lr=1e-2, weight_decay=0.1)
    name, p = upd.named[0]
    before = p.detach().clone()
    _backward(tiny_model, batch)
    upd.step(0)
    m = upd.masks[0]
    assert p.grad[~m].abs().sum().item() == 0.0
    opt.step()
    assert not torch.equal(p.detach()[~m], before[~m])


def test_masked_adamw_matches_torch_adamw_without_masks(tiny_model, batch):
    import copy

    tiny_model.eval()  # no dropout: both copies see identical gradients
    other = copy.deepcopy(tiny_model)
    a = MaskedAdamW(tiny_model.parameters(), lr=1e-3, weight_decay=0.01)
    b = torch.optim.AdamW(other.parameters(), lr=1e-3, weight_decay=0.01)
    for _ in range(2):
        _backward(tiny_model, batch)
        _backward(other, batch)
        a.step()
        b.step()
    for (n, p), (_, q) in zip(tiny_model.named_parameters(), other.named_parameters()):
        assert torch.allclose(p, q, atol=1e-6), n


def test_bernoulli_mask_matches_probabilities_on_average(tiny_model, batch):
    cfg = dataclasses.replace(MethodConfig(), mask_rule="bernoulli", bernoulli_alpha=0.7, bernoulli_beta=5.0)
    upd = SelectiveUpdater(tiny_model, cfg, seed=0)
    _backward(tiny_model, batch)
    upd.accumulate()
    upd.refresh()
    probs = torch.cat([p.flatten() for p in upd.probs])
    freq = torch.zeros_like(probs)
    n = 200
    for step in range(n):
        for (_, p) in upd.named:
            p.grad = torch.ones_like(p)
        upd.apply(step)
        freq += torch.cat([m.flatten().float() for m in upd.masks])
    freq /= n
    assert (freq - probs).abs().mean().item() < 0.02
    # rescaled by 1/p so the expected gradient is unbiased
    _, p0 = upd.named[0]
    assert torch.allclose(p0.grad[upd.masks[0]], 1 / upd.probs[0][upd.masks[0]])


def test_snapshot_rows_and_maps(tiny_model, batch):
    upd = SelectiveUpdater(tiny_model, MethodConfig(keep_ratio=0.3), seed=0)
    _backward(tiny_model, batch)
    upd.step(0)
    rows, maps = upd.snapshot(max_side=8)
    assert sum(r["kept"] for r in rows) == sum(int(m.sum()) for m in upd.masks)
    assert abs(sum(r["saliency_mass"] for r in rows) - 1.0) < 1e-5
    kinds = {r["kind"] for r in rows}
    assert {"query", "key", "value", "attn_out", "ffn_in", "ffn_out"} <= kinds
    assert all(v.shape[0] <= 8 and v.shape[1] <= 8 for v in maps.values())
