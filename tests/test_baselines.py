"""Baselines in the shared trainer: each method's terms behave as its paper says."""

import torch

from uegr.config import MethodConfig, build_config
from uegr.methods import build_method
from uegr.methods.base import StepContext
from uegr.runs import RunStore
from uegr.trainer import Callback, RunRecorder, Trainer


def _ctx(model, step=0):
    return StepContext(model, model, lambda loss, **kw: loss.backward(**kw), step, 0.0)


def test_rdrop_kl_nonnegative_and_zero_without_dropout(tiny_model, batch):
    m = build_method(MethodConfig(name="rdrop", rdrop_alpha=1.0), seed=0)
    m.prepare(tiny_model)
    tiny_model.train()
    parts = m.step(batch, _ctx(tiny_model))
    assert parts["kl"] > 0  # two different dropout masks
    assert abs(parts["loss"] - (parts["clean"] + parts["kl"])) < 1e-5
    tiny_model.eval()  # dropout off: the two passes coincide
    tiny_model.zero_grad()
    assert m.step(batch, _ctx(tiny_model))["kl"] < 1e-7


def test_freelb_perturbation_within_max_norm_and_zero_on_padding(tiny_model, batch):
    cfg = MethodConfig(name="freelb", freelb_steps=3, freelb_lr=5.0, freelb_init=2.0, freelb_max_norm=0.7)
    m = build_method(cfg, seed=0)
    parts = m.step(batch, _ctx(tiny_model))
    norms = m.last_delta.flatten(1).norm(dim=1)
    assert norms.max().item() <= 0.7 + 1e-5 and parts["delta_norm"] <= 0.7 + 1e-5
    assert torch.allclose(norms, torch.full_like(norms, 0.7), atol=1e-4)  # big steps hit the boundary
    assert m.last_delta[~batch["attention_mask"].bool()].abs().sum().item() == 0.0


class MaskSpy(Callback):
    def __init__(self):
        self.masks = []

    def on_log(self, state, control, record):
        self.masks.append([m.clone() for m in state.updater.masks])
        self.kept = record["kept_fraction"]


def test_childtuning_mask_fixed_for_the_whole_run_and_keeps_fraction(runs_dir):
    cfg = build_config("tiny", None, ["method.name=childtuning", "method.keep_ratio=0.2", "optim.max_steps=5",
                                      "method.refresh_every=1", "runtime.eval_every=0"])
    run = RunStore(runs_dir).create(cfg, "ct")
    spy = MaskSpy()
    trainer = Trainer(cfg, run=run, callbacks=[RunRecorder(run), spy])
    before = [m.clone() for m in trainer.updater.masks]  # computed from the Fisher pass, before step 1
    trainer.fit()
    assert len(spy.masks) == 5
    for masks in spy.masks:
        assert all(torch.equal(a, b) for a, b in zip(masks, before))
    total = sum(m.numel() for m in before)
    assert sum(int(m.sum()) for m in before) == round(0.2 * total)
    assert abs(spy.kept - 0.2) < 1e-3
    assert run.snapshot_steps() == [0]  # one snapshot: the fixed mask


def test_roast_bernoulli_mask_matches_probabilities_on_average(runs_dir):
    cfg = build_config("tiny", None, ["method.name=roast", "optim.max_steps=40", "method.refresh_every=1000",
                                      "method.bernoulli_alpha=0.6", "method.bernoulli_beta=4",
                                      "runtime.eval_every=0", "runtime.snapshot_saliency=false"])
    spy = MaskSpy()
    trainer = Trainer(cfg, callbacks=[spy])
    assert trainer.updater.cfg.mask_rule == "bernoulli"
    trainer.fit()
    probs = torch.cat([p.flatten() for p in trainer.updater.probs])  # fixed after the step-0 refresh
    freq = torch.stack([torch.cat([m.flatten().float() for m in masks]) for masks in spy.masks]).mean(0)
    assert (freq - probs).abs().mean().item() < 0.05
    assert abs(freq.mean().item() - probs.mean().item()) < 0.01


def test_roast_loss_parts(tiny_model, batch):
    m = build_method(MethodConfig(name="roast", roast_kl=0.5), seed=0)
    parts = m.step(batch, _ctx(tiny_model))
    assert parts["kl"] >= 0
    assert abs(parts["loss"] - (parts["clean"] + parts["adv"] + 0.5 * parts["kl"])) < 1e-5


def test_ablations_are_config_switches(tiny_model, batch):
    no_adv = build_method(MethodConfig(adv_enabled=False), seed=0)
    no_adv.prepare(tiny_model)
    no_adv.step(batch, _ctx(tiny_model))
    assert no_adv.last["delta"] is None
    fixed = build_method(MethodConfig(p_min=0.1, p_max=0.1, k=3), seed=0)
    fixed.step(batch, _ctx(tiny_model))
    assert torch.allclose(fixed.last["rates"], torch.full((3,), 0.1))
    no_js = build_method(MethodConfig(lambda_js=0.0), seed=0)
    parts = no_js.step(batch, _ctx(tiny_model))
    assert abs(parts["loss"] - parts["clean"] - parts["adv"]) < 1e-6
    assert build_method(MethodConfig(selective_update=False)).mask_mode is None
