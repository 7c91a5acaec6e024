"""UEGR, stage 1 (forward): clean pass, adversarial embeddings, K adaptive-dropout sub-models in one
fused forward, adversarial CE + generalised JS. Stage 2 (saliency, mask, selective update) runs in the
trainer through `uegr.saliency`, because it acts on the summed gradient of any method.

Paper's words vs this project's defaults: see docs/method.md (and uegr-method.md in ../shared/docs).
"""

from __future__ import annotations

import torch

from . import adversary as adv
from .base import Method, StepContext, attention_mask_of, classification_loss, clean_pass, split_batch
from .divergence import js_divergence
from .dropout import RateSampler, block_rates, install_block_dropout


class UEGR(Method):
    name = "uegr"
    summary = "Adversarial embeddings + K adaptive-dropout sub-models (JS), then a saliency-masked update."
    mask_mode = "dynamic"
    varies_attention_dropout = True

    def __init__(self, cfg, seed: int = 0):
        super().__init__(cfg, seed)
        self.rates = RateSampler(cfg.k, cfg.p_min, cfg.p_max, cfg.rate_rule, seed, cfg.js_target, cfg.feedback_step)
        self.mask_mode = "dynamic" if cfg.selective_update else None
        self.last: dict = {}  # tensors of the last step, for the Learn page and tests

    def prepare(self, model) -> None:
        install_block_dropout(model)

    def step(self, batch: dict, ctx: StepContext) -> dict[str, float]:
        cfg = self.cfg
        inputs, labels = split_batch(batch)
        attention = attention_mask_of(inputs)

        # 1. Clean pass at the model's own dropout; its backward also yields dL/de for the free adversary.
        z0, l_clean, grad_e = clean_pass(ctx, inputs, labels, retain_graph=cfg.js_include_clean)

        # 2. Adversarial perturbation of the embedding output (zero on padding).
        delta = self.perturbation(ctx, inputs, labels, grad_e, attention) if cfg.adv_enabled else None

        # 3. K sub-models, each at its own dropout rate, as ONE forward over the K-times repeated batch.
        rates = self.rates.sample(ctx.progress)
        k, b = len(rates), labels.shape[0]
        zk = self.sub_model_logits(ctx, inputs, delta, rates).view(k, b, -1)

        # 4. Losses: mean adversarial CE over sub-models + generalised JS among their distributions.
        l_adv = sum(classification_loss(zk[i], labels) for i in range(k)) / k
        members = zk.softmax(-1)
        if cfg.js_include_clean:
            members = torch.cat([members, z0.float().softmax(-1).unsqueeze(0)])
        l_js = js_divergence(members) if zk.shape[-1] > 1 else zk.squeeze(-1).var(0, unbiased=False).mean()
        rest = cfg.lambda_adv * l_adv + cfg.lambda_js * l_js
        ctx.backward(rest)
        self.rates.feedback(l_js)

        self.last = {"clean_logits": z0.detach(), "sub_logits": zk.detach(), "rates": rates,
                     "delta": None if delta is None else delta.detach(),
                     "grad_e": None if grad_e is None else grad_e.detach()}
        # 0-d tensors, not floats: the trainer reads them after the optimizer step, so the GPU is
        # never stalled mid-step waiting for a number to be logged.
        parts = {"loss": (l_clean + rest).detach(), "clean": l_clean.detach(), "adv": l_adv.detach(),
                 "js": l_js.detach()}
        parts.update({f"rate_{i}": float(r) for i, r in enumerate(rates)})
        return parts

    def sub_model_logits(self, ctx: StepContext, inputs: dict, delta, rates) -> torch.Tensor:
        """Logits of the K sub-models, [K*B, C]: one forward over the K-times repeated batch."""
        k = len(rates)
        repeated = {name: t.repeat(k, *([1] * (t.dim() - 1))) for name, t in inputs.items()}
        with block_rates(ctx.raw_model, rates, self.cfg.dropout_targets), \
                adv.add_to_embeddings(ctx.raw_model, None if delta is None else delta.repeat(k, 1, 1)):
            return ctx.model(**repeated).logits.float()

    def perturbation(self, ctx: StepContext, inputs, labels, grad_e, attention) -> torch.Tensor:
        """Free one-step perturbation from the clean gradient; with adv_steps > 1, PGD from there."""
        cfg = self.cfg
        eps = cfg.resolved_adv_eps()
        if grad_e is None:
            raise RuntimeError("no gradient reached the embedding output; is the model's embedding frozen?")
        delta = torch.zeros_like(grad_e)
        if cfg.adv_init > 0:
            gen = torch.Generator(device=grad_e.device).manual_seed(self.seed * 100003 + ctx.step)
            delta = adv.random_start(grad_e.shape, attention, cfg.adv_init, cfg.adv_norm, gen, grad_e.device,
                                     grad_e.dtype)
        step_size = eps if cfg.adv_steps == 1 else cfg.adv_lr
        delta = adv.project(delta + step_size * adv.normalise(grad_e, attention, cfg.adv_norm), eps, attention,
                            cfg.adv_norm)
        for _ in range(cfg.adv_steps - 1):
            # Extra ascent steps use the raw model and autograd.grad: they touch no parameter gradient.
            delta.requires_grad_(True)
            with adv.add_to_embeddings(ctx.raw_model, delta):
                loss = classification_loss(ctx.raw_model(**inputs).logits, labels)
            (g,) = torch.autograd.grad(loss, delta)
            delta = adv.project(delta.detach() + cfg.adv_lr * adv.normalise(g, attention, cfg.adv_norm), eps,
                                attention, cfg.adv_norm)
        return delta.detach()

    def state_dict(self) -> dict:
        return {"rates": self.rates.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if "rates" in state:
            self.rates.load_state_dict(state["rates"])
