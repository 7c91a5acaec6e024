"""Plain fine-tuning: cross-entropy on the clean batch."""

from __future__ import annotations

from .base import Method, StepContext, classification_loss, split_batch


class Vanilla(Method):
    name = "vanilla"
    summary = "Plain fine-tuning with cross-entropy: the baseline every method is measured against."

    def step(self, batch: dict, ctx: StepContext) -> dict[str, float]:
        inputs, labels = split_batch(batch)
        loss = classification_loss(ctx.model(**inputs).logits, labels)
        ctx.backward(loss)
        return {"loss": loss.detach(), "clean": loss.detach()}
