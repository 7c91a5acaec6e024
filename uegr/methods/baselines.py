"""Baselines beside UEGR, in the same trainer: R-Drop, FreeLB, CHILD-TUNING_D, RoAST.

Each is a small `Method`; masks are applied by the trainer's SelectiveUpdater like UEGR's.
"""

from __future__ import annotations

import torch

from ..models import model_mode
from . import adversary as adv
from .base import Method, StepContext, attention_mask_of, classification_loss, clean_pass, split_batch
from .divergence import symmetric_kl
from .dropout import install_block_dropout
from .vanilla import Vanilla


class RDrop(Method):
    """Liang et al. 2021: two dropout sub-models (one fused forward over the doubled batch);
    L = mean CE + alpha * (KL(p1||p2) + KL(p2||p1)) / 2."""

    name = "rdrop"
    summary = "Two dropout passes pulled together by a symmetric KL."
    varies_attention_dropout = True

    def prepare(self, model) -> None:
        install_block_dropout(model)

    def step(self, batch: dict, ctx: StepContext) -> dict[str, float]:
        inputs, labels = split_batch(batch)
        doubled = {k: v.repeat(2, *([1] * (v.dim() - 1))) for k, v in inputs.items()}
        z = ctx.model(**doubled).logits.float()
        z1, z2 = z.chunk(2)
        ce = (classification_loss(z1, labels) + classification_loss(z2, labels)) / 2
        kl = symmetric_kl(z1, z2) / 2
        loss = ce + self.cfg.rdrop_alpha * kl
        ctx.backward(loss)
        return {"loss": loss.item(), "clean": ce.item(), "kl": kl.item()}


class FreeLB(Method):
    """Zhu et al. 2020: K-step l2 PGD on the embedding output from a random start; the parameter
    gradients of the K adversarial losses are averaged (each loss is divided by K)."""

    name = "freelb"
    summary = "Several adversarial steps on the embeddings, gradients accumulated."

    def step(self, batch: dict, ctx: StepContext) -> dict[str, float]:
        cfg = self.cfg
        inputs, labels = split_batch(batch)
        attention = attention_mask_of(inputs)
        config = ctx.raw_model.config
        hidden = getattr(config, "embedding_size", None) or config.hidden_size  # ELECTRA projects later
        shape = (*inputs["input_ids"].shape, hidden)
        gen = torch.Generator(device=inputs["input_ids"].device).manual_seed(self.seed * 100003 + ctx.step)
        delta = adv.random_start(shape, attention, cfg.freelb_init, "l2", gen, inputs["input_ids"].device)
        delta = adv.project(delta, cfg.freelb_max_norm, attention, "l2") if cfg.freelb_max_norm > 0 else delta
        total, norms = 0.0, []
        for _ in range(cfg.freelb_steps):
            delta.requires_grad_(True)
            with adv.add_to_embeddings(ctx.raw_model, delta):
                loss = classification_loss(ctx.model(**inputs).logits, labels) / cfg.freelb_steps
            ctx.backward(loss)
            total += loss.item()
            g = delta.grad.detach()
            delta = delta.detach() + cfg.freelb_lr * adv.normalise(g, attention, "l2")
            if cfg.freelb_max_norm > 0:
                delta = adv.project(delta, cfg.freelb_max_norm, attention, "l2")
            norms.append(float(delta.flatten(1).norm(dim=1).max()))
        self.last_delta = delta.detach()
        return {"loss": total, "adv": total, "delta_norm": max(norms)}


class ChildTuningD(Vanilla):
    """Xu et al. 2021, CHILD-TUNING_D: Fisher information over the training set before training picks
    the child network (top keep_ratio); only it is updated, with a mask fixed for the whole run."""

    name = "childtuning"
    summary = "Update only a child network chosen once by Fisher information."
    mask_mode = "fixed"  # the loss is vanilla CE; only the fixed mask differs

    def data_pass_batches(self) -> int | None:
        return self.cfg.childtuning_batches or None  # 0 = the whole training set

    def data_pass(self, model, updater, batches) -> bool:
        if updater is None or updater.masks is not None:  # resumed runs keep their saved mask
            return False
        self.fix_mask(updater, model, batches)
        return True

    @staticmethod
    def fix_mask(upd, model, batches) -> None:
        """Fisher information (summed squared gradients) over `batches` -> the fixed top-k mask of `upd`.
        Also used by uegr.hf.UEGRTrainer with its own data loader."""
        fisher = [torch.zeros_like(p, dtype=torch.float32) for _, p in upd.named]
        with model_mode(model, training=True):  # as in CHILD-TUNING, gradients are taken in training mode
            for batch in batches:
                inputs, labels = split_batch(batch)
                model.zero_grad(set_to_none=True)
                classification_loss(model(**inputs).logits, labels).backward()
                for f, (_, p) in zip(fisher, upd.named):
                    if p.grad is not None:
                        f.add_(p.grad.detach().float().square())
            model.zero_grad(set_to_none=True)
        topk = type(upd.cfg)(**{**upd.cfg.__dict__, "mask_rule": "topk"})
        upd.cfg = topk
        upd.saliency = fisher
        upd.set_mask_from_scores(fisher)


class RoAST(Method):
    """Kim et al. 2023: one-step adversarial embedding perturbation, symmetric KL between clean and
    adversarial predictions, and a Bernoulli gradient mask from Fisher ranks (alpha, beta)."""

    name = "roast"
    summary = "One adversarial step + KL, and a Bernoulli saliency mask on the update."
    mask_mode = "dynamic"
    updater_overrides = {"mask_rule": "bernoulli", "saliency": "fisher"}

    def step(self, batch: dict, ctx: StepContext) -> dict[str, float]:
        cfg = self.cfg
        inputs, labels = split_batch(batch)
        z0, l_clean, grad_e = clean_pass(ctx, inputs, labels, retain_graph=True)  # graph kept for the KL
        delta = cfg.resolved_adv_eps() * adv.normalise(grad_e, attention_mask_of(inputs), "linf_token")
        with adv.add_to_embeddings(ctx.raw_model, delta.detach()):
            za = ctx.model(**inputs).logits
        l_adv = classification_loss(za, labels)
        kl = symmetric_kl(z0, za)
        rest = l_adv + cfg.roast_kl * kl
        ctx.backward(rest)
        return {"loss": l_clean.item() + rest.item(), "clean": l_clean.item(), "adv": l_adv.item(), "kl": kl.item()}


BASELINES = {"rdrop": RDrop, "freelb": FreeLB, "childtuning": ChildTuningD, "roast": RoAST}
