"""`UEGRTrainer`: the project's methods inside an ordinary Hugging Face training script.

    from uegr.config import MethodConfig
    from uegr.hf import UEGRTrainer
    trainer = UEGRTrainer(model=model, args=TrainingArguments(...), train_dataset=..., processing_class=tok,
                          method=MethodConfig(name="uegr", k=3))
    trainer.train()

A `transformers.Trainer` subclass that changes one thing: `training_step` runs the method's forwards and
backwards (`uegr.methods`, the same code as `uegr train`) and, on the last micro-batch of each
optimizer step, the selective update of `uegr.saliency` (saliency EMA, mask refresh, masked gradients)
before the Trainer clips and steps. Everything else (TrainingArguments, report_to, gradient
accumulation, bf16/fp16, DDP under torchrun / accelerate launch, evaluation, saving) is the Trainer's.
"""

from __future__ import annotations

import dataclasses

import torch
from transformers import Trainer

from .config import Config, MethodConfig, validate
from .methods import build_method
from .methods.base import StepContext
from .saliency import MaskedAdamW, SelectiveUpdater


class UEGRTrainer(Trainer):
    def __init__(self, *args, method: MethodConfig | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.method_config = method or MethodConfig()
        validate(Config(method=self.method_config))  # a bad knob names its field, as in `uegr train`
        seed = self.args.seed
        self.method = build_method(self.method_config, seed)
        self.method.prepare(self.model)  # e.g. per-block-rate dropout, installed in place
        self.updater: SelectiveUpdater | None = None
        if self.method.mask_mode:
            mcfg = dataclasses.replace(self.method_config, **self.method.updater_overrides)
            self.updater = SelectiveUpdater(self.model, mcfg, seed, fixed=self.method.mask_mode == "fixed")
        self._parts: dict[str, torch.Tensor] = {}
        self._parts_n = 0
        self.last_parts: dict = {}

    # ------------------------------------------------------------------ optimizer
    def create_optimizer(self):
        """The Trainer's optimizer, except with method.freeze_moments: MaskedAdamW on the same groups."""
        if not (self.updater is not None and self.method_config.freeze_moments) or self.optimizer is not None:
            return super().create_optimizer()
        decay = set(self.get_decay_parameter_names(self.model))
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        groups = [{"params": [p for n, p in named if n in decay], "weight_decay": self.args.weight_decay},
                  {"params": [p for n, p in named if n not in decay], "weight_decay": 0.0}]
        self.optimizer = MaskedAdamW(groups, lr=self.args.learning_rate,
                                     betas=(self.args.adam_beta1, self.args.adam_beta2), eps=self.args.adam_epsilon)
        return self.optimizer

    # ------------------------------------------------------------------ training
    def train(self, *args, **kwargs):
        n = self.method.data_pass_batches()
        if n != 0:  # the method's pass over training batches before the first step (CHILD-TUNING_D's Fisher)
            loader = self.get_train_dataloader()
            batches = (self._prepare_inputs(b) for _, b in zip(range(n or len(loader)), loader))
            self.method.data_pass(self.model, self.updater, batches)
        return super().train(*args, **kwargs)

    def training_step(self, model, inputs, num_items_in_batch=None):
        model.train()
        if hasattr(self.optimizer, "train") and callable(self.optimizer.train):
            self.optimizer.train()
        inputs = self._prepare_inputs(inputs)
        scale = 1.0 / self.current_gradient_accumulation_steps  # as Trainer.training_step divides its loss

        def backward(loss, **kw):
            self.accelerator.backward(loss * scale, **kw)

        step = self.state.global_step
        ctx = StepContext(model, self.accelerator.unwrap_model(model), backward, step,
                          step / max(self.state.max_steps, 1))
        with self.compute_loss_context_manager():
            parts = self.method.step(inputs, ctx)  # forwards + backwards (UEGR: stage 1)
        if self.accelerator.sync_gradients and self.updater is not None:
            # Last micro-batch of the optimizer step: the gradient is complete (and reduced under DDP),
            # so stage 2 masks it before the Trainer clips it and steps, as in uegr.trainer.Trainer.
            self.updater.step(step)
            if isinstance(getattr(self.optimizer, "optimizer", self.optimizer), MaskedAdamW):
                getattr(self.optimizer, "optimizer", self.optimizer).masks = self.updater.active_masks()
        self._collect(parts)
        loss = parts["loss"]
        loss = loss.detach() if torch.is_tensor(loss) else torch.tensor(float(loss))
        return loss.to(self.args.device) * scale

    # ------------------------------------------------------------------ logging
    def _collect(self, parts: dict) -> None:
        self.last_parts = parts
        for k, v in parts.items():
            v = v.detach().float() if torch.is_tensor(v) else torch.tensor(float(v))
            self._parts[k] = self._parts[k] + v if k in self._parts else v
        self._parts_n += 1

    def log(self, logs: dict, start_time=None) -> None:
        """Training logs also carry the method's loss parts (mean since the last log) and the kept fraction."""
        if "loss" in logs and self._parts_n:
            name = self.method_config.name
            logs.update({f"{name}/{k}": round(float(v) / self._parts_n, 6)
                         for k, v in self._parts.items() if k != "loss"})
            if self.updater is not None and self.updater.masks is not None:
                logs[f"{name}/kept_fraction"] = self.updater.kept_fraction()
            self._parts, self._parts_n = {}, 0
        super().log(logs, start_time)
