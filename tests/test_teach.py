"""uegr.teach.walk_step (one real UEGR step for the Learn page), uegr.weights and the exact mask IoU.

All on a random 2-layer BERT (hidden 32) with MiniLM's tokenizer: well under a second per step.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from uegr.config import MethodConfig
from uegr.methods.dropout import BlockDropout
from uegr.models import build_tiny_bert, encoder_layer_prefixes, load_tokenizer
from uegr.saliency import SelectiveUpdater
from uegr.teach import RUNGS, Player, ladder, walk_step
from uegr.weights import relative_change

TEXTS = ["a gorgeous, witty, seductive movie.", "the plot is nothing but boilerplate clichés from start to finish.",
         "an utterly charming and hilarious film that reminded me why i love the movies.",
         "dull and lifeless.", "it is a funny, touching, smartly directed film.",
         "the acting is bad and the story is worse, a waste of two hours.", "a masterpiece.",
         "too long, too loud and too silly to care about."]
LABELS = [1, 0, 1, 0, 1, 0, 1, 0]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: one thread is fastest, and it keeps a shared 2-core machine responsive."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny():
    return build_tiny_bert(2), load_tokenizer("minilm")


def run(tiny, cfg=None, seed=0, **kw):
    model, tok = tiny
    return walk_step(model, tok, TEXTS, LABELS, cfg or MethodConfig(), seed, **kw)


@pytest.fixture(scope="module")
def default_step(tiny):
    return run(tiny, seed=3, lr=1e-3, keep_tensors=True)


def _public(r: dict) -> str:
    """Everything but timings, as JSON (so NaN == NaN for biases that start at zero)."""
    return json.dumps({k: v for k, v in r.items() if k not in ("_tensors", "step_seconds", "total_seconds")},
                      sort_keys=True)


def test_deterministic_under_seed(tiny, default_step):
    again = run(tiny, seed=3, lr=1e-3)
    assert _public(again) == _public(default_step)
    other = run(tiny, seed=4, lr=1e-3)
    assert other["rates"] != default_step["rates"]


def test_total_is_weighted_sum_of_parts(tiny):
    cfg = MethodConfig(lambda_adv=0.5, lambda_js=2.0, k=4)
    loss = run(tiny, cfg)["losses"]
    assert loss["total"] == pytest.approx(loss["clean"] + 0.5 * loss["adv"] + 2.0 * loss["js"], rel=1e-6)
    assert 0.0 <= loss["js"] <= math.log(4) + 1e-6


def test_shapes_and_ranges(default_step):
    r, cfg = default_step, MethodConfig()
    k, b = cfg.k, len(TEXTS)
    assert len(r["rates"]) == k and all(cfg.p_min <= p <= cfg.p_max for p in r["rates"])
    assert len(r["sub_probs"]) == k and all(len(s) == b for s in r["sub_probs"])
    for probs in (r["clean_probs"], r["probs_before_eval"], r["adv_probs_eval"], *r["sub_probs"]):
        assert all(abs(sum(p) - 1) < 1e-5 for p in probs)
    pert = r["perturbation"]
    assert [len(t) for t in r["tokens"]] == [len(x) for x in pert["delta_l2"]] == [len(x) for x in pert["grad_l2"]]
    assert r["tokens"][0][0] == "[CLS]" and r["tokens"][0][-1] == "[SEP]"
    # linf_token: every real token's perturbation has l_inf norm exactly eps
    for row in pert["delta_linf"]:
        assert all(v == pytest.approx(cfg.resolved_adv_eps(), rel=1e-5) for v in row)
    sal = r["saliency"]
    assert sum(sal["hist_kept"]) + sum(sal["hist_frozen"]) == sal["numel"] - sal["zeros"]
    assert sum(sal["hist_kept"]) <= round(cfg.keep_ratio * sal["numel"])


@pytest.mark.parametrize("scope", ["global", "per_tensor"])
def test_kept_fraction_equals_keep_ratio(tiny, scope):
    r = run(tiny, MethodConfig(keep_ratio=0.25, mask_scope=scope))
    sal = r["saliency"]
    assert abs(sal["kept_fraction"] - 0.25) <= 1 / sal["numel"] + 1e-12
    if scope == "per_tensor":
        for row in sal["rows"]:
            assert abs(row["kept_fraction"] - 0.25) <= 1 / row["numel"] + 1e-12


def test_frozen_weights_move_only_by_weight_decay(default_step):
    lr, wd = default_step["lr"], default_step["weight_decay"]
    t = default_step["_tensors"]
    assert t["masks"]
    moved_kept = 0
    for name, mask in t["masks"].items():
        before, after = t["before"][name], t["after"][name]
        decay = 0.0 if name in t["no_decay"] else wd
        expected = before * (1 - lr * decay)
        torch.testing.assert_close(after[~mask], expected[~mask], rtol=0, atol=1e-7)
        moved_kept += int(((after - expected).abs() > 1e-7)[mask].sum())
    assert moved_kept > 0
    assert default_step["update"]["frozen_max_excess"] < 1e-6


def test_freeze_moments_freezes_exactly(tiny):
    r = run(tiny, MethodConfig(freeze_moments=True), lr=1e-3, keep_tensors=True)
    t = r["_tensors"]
    for name, mask in t["masks"].items():
        assert torch.equal(t["after"][name][~mask], t["before"][name][~mask])


def test_model_is_not_modified(tiny):
    model, _ = tiny
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.eval()
    run(tiny, lr=1e-2)
    assert not model.training
    assert not any(isinstance(m, BlockDropout) for m in model.modules())
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_without_selective_update_or_adversary(tiny):
    r = run(tiny, MethodConfig(selective_update=False, adv_enabled=False))
    assert r["saliency"] is None and r["perturbation"] is None and r["adv_probs_eval"] is None
    assert not r["update"]["masked"]
    assert r["losses"]["total"] == pytest.approx(r["losses"]["clean"] + r["losses"]["adv"] + r["losses"]["js"],
                                                 rel=1e-6)


def test_relative_change():
    before = {"bert.encoder.layer.0.attention.self.query.weight": torch.ones(2, 2),
              "bert.encoder.layer.0.attention.self.query.bias": torch.zeros(2)}
    after = {k: v + 0.5 for k, v in before.items()}
    rows = {r["kind"]: r for r in relative_change(before, after, ["bert.encoder.layer.0."])}
    assert rows["query"]["rel_change"] == pytest.approx(0.5) and rows["query"]["layer"] == 0
    assert math.isnan(rows["query_bias"]["rel_change"]) and rows["query_bias"]["delta_norm"] == pytest.approx(0.5 ** 0.5)


def test_exact_iou_between_refreshes():
    model = build_tiny_bert(2)
    up = SelectiveUpdater(model, MethodConfig(keep_ratio=0.3, mask_scope="per_tensor"))
    gen = torch.Generator().manual_seed(0)
    first = [torch.rand(p.shape, generator=gen) for _, p in up.named]
    second = [torch.rand(p.shape, generator=gen) for _, p in up.named]
    up.set_mask_from_scores(first)
    rows, _ = up.snapshot()
    assert "iou_prev" not in rows[0]
    old = [m.clone() for m in up.masks]
    up.set_mask_from_scores(second)
    rows, _ = up.snapshot()
    for row, a, b in zip(rows, old, up.masks):
        inter, union = int((a & b).sum()), int((a | b).sum())
        assert (row["inter_prev"], row["union_prev"]) == (inter, union)
        assert row["iou_prev"] == pytest.approx(inter / union)
    assert encoder_layer_prefixes(model)


# ------------------------------------------------------------------ play and the ablation ladder
def test_player_runs_the_same_step_as_walk_step(tiny):
    """Play's first step on one batch is walk_step's step: same trainer step, same seed, same numbers."""
    model, tok = tiny
    cfg = MethodConfig(refresh_every=2)
    torch.manual_seed(1234)
    state = torch.get_rng_state()
    one = run(tiny, cfg, seed=5, lr=1e-3)
    player = Player(model, tok, [(TEXTS, LABELS)], cfg, 5, lr=1e-3)
    rec = player.step()
    assert torch.equal(torch.get_rng_state(), state)  # the caller's random stream is left alone
    assert rec["loss"] == pytest.approx(one["losses"]["total"], rel=1e-6)
    assert rec["js"] == pytest.approx(one["losses"]["js"], rel=1e-6)
    assert rec["rates"] == pytest.approx(one["rates"])
    assert rec["kept_fraction"] == pytest.approx(one["saliency"]["kept_fraction"])


def test_player_carries_state_and_is_deterministic(tiny):
    model, tok = tiny
    batches = [(TEXTS[:4], LABELS[:4]), (TEXTS[4:], LABELS[4:])]
    cfg = MethodConfig(refresh_every=2, keep_ratio=0.4)
    a = Player(model, tok, batches, cfg, 1, lr=1e-3)
    b = Player(model, tok, batches, cfg, 1, lr=1e-3)
    for _ in range(5):
        a.step()
        b.step()
    assert a.steps_done == 5 and [r["step"] for r in a.history] == [1, 2, 3, 4, 5]
    assert [r["batch"] for r in a.history] == [0, 1, 0, 1, 0]
    assert [r["loss"] for r in a.history] == [r["loss"] for r in b.history]
    # refresh at trainer steps 0, 2, 4 (records 1, 3, 5); the IoU with the previous mask exists from the 2nd
    assert [r["refreshed"] for r in a.history] == [True, False, True, False, True]
    assert a.history[0]["mask_iou"] is None and 0 < a.history[2]["mask_iou"] <= 1
    for r in a.history:
        assert all(cfg.p_min <= p <= cfg.p_max for p in r["rates"]) and len(r["rates"]) == cfg.k
        assert abs(r["kept_fraction"] - 0.4) < 1e-3
    # the optimizer's state carries over: the second visit to batch 0 sees trained weights
    assert a.history[2]["clean"] != a.history[0]["clean"]
    model_state = {k: v.clone() for k, v in model.state_dict().items()}
    assert all(torch.equal(model_state[k], v) for k, v in model.state_dict().items())


def test_ladder_rungs_add_one_part_each(tiny):
    model, tok = tiny
    cfg = MethodConfig(k=3, keep_ratio=0.3, lambda_js=2.0)
    seen = []
    rows = ladder(model, tok, TEXTS, LABELS, cfg, 2, lr=1e-3, progress=lambda i, name: seen.append(name))
    assert [r["rung"] for r in rows] == list(RUNGS) == seen
    vanilla, adv_, subs, full = rows
    # the same clean pass on every rung (same batch, weights, seed)
    assert all(r["clean"] == pytest.approx(vanilla["clean"], rel=1e-6) for r in rows)
    assert vanilla["loss"] == pytest.approx(vanilla["clean"]) and vanilla["adv"] is None
    assert adv_["js"] == 0.0 and adv_["adv_term"] > 0
    assert subs["js_term"] == pytest.approx(2.0 * subs["js"]) and subs["js"] > 0
    # stage 2 leaves the loss alone and changes only which weights move
    assert full["loss"] == pytest.approx(subs["loss"], rel=1e-6)
    assert full["moved_fraction"] < subs["moved_fraction"]
    assert full["kept_fraction"] == pytest.approx(0.3, abs=1e-3) and subs["kept_fraction"] is None
    assert vanilla["grad_cos_vanilla"] == pytest.approx(1.0) and vanilla["update_cos_vanilla"] == pytest.approx(1.0)
    assert all(-1 <= r["grad_cos_vanilla"] <= 1 for r in rows)
    assert adv_["grad_cos_vanilla"] < 1 - 1e-6 and full["loss_added"] == pytest.approx(0.0, abs=1e-6)
