"""UEGRTrainer (a transformers.Trainer) step time vs the project's Trainer step, interleaved in one process.

    python bench/hf_trainer_step.py                       # MiniLM, batch 32 x 48 tokens, vanilla and UEGR K=1
    python bench/hf_trainer_step.py --model tiny-bert --steps 4   # smoke run

The HF side runs its real training loop (trainer.train()); a callback times each optimizer step from
on_step_begin to on_step_end (method forwards/backwards, selective update, clipping, AdamW, scheduler)
and, right after it, times one step of the project's Trainer on the same batch (train_step: the same
work). Both models start equal; the data loader's cost is excluded on both sides. Prints the median
step times and ratio = project ms / UEGRTrainer ms (>= 0.95: UEGRTrainer costs at most ~5 % more).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from transformers import TrainerCallback, TrainingArguments  # noqa: E402

from uegr.config import build_config  # noqa: E402
from uegr.hf import UEGRTrainer  # noqa: E402
from uegr.models import load_model  # noqa: E402
from uegr.trainer import Trainer  # noqa: E402


class Interleave(TrainerCallback):
    """Times each HF optimizer step (on_step_begin -> on_step_end) and one project step beside it, the
    project's step going first on even steps and second on odd ones (ABBA), so neither side always runs
    on a cache or scheduler slot warmed by the other."""

    def __init__(self, ours: Trainer, batch: dict):
        self.ours, self.batch = ours, batch
        self.hf_ms, self.ours_ms, self.inner_ms = [], [], []
        self.n = 0

    def _ours(self) -> None:
        t0 = time.perf_counter()
        parts, grad_norm, _ = self.ours.train_step(self.batch)
        float(parts["loss"])  # the project's loop reads the loss each step too
        self.ours.step += 1
        self.ours_ms.append((time.perf_counter() - t0) * 1000)

    def on_step_begin(self, args, state, control, **kw):
        if self.n % 2 == 0:
            self._ours()
        self.t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):
        self.hf_ms.append((time.perf_counter() - self.t0) * 1000)
        if self.n % 2 == 1:
            self._ours()
        self.n += 1


class Timed(UEGRTrainer):
    """Also records the time of training_step alone (method forwards/backwards + selective update)."""

    def training_step(self, *a, **k):
        t0 = time.perf_counter()
        out = super().training_step(*a, **k)
        self.inner.append((time.perf_counter() - t0) * 1000)
        return out


def measure(method: str, args) -> dict:
    overrides = [f"method.name={method}", f"model.name={args.model}", f"data.max_length={args.max_length}",
                 f"optim.batch_size={args.batch_size}", "optim.warmup_ratio=0", "runtime.device=cpu",
                 f"optim.max_steps={args.steps + 1}", f"runtime.threads={args.threads}"]
    cfg = build_config("quick-demo", overrides=overrides + args.set)
    ours = Trainer(cfg)
    ours.model.train()  # as Trainer._loop does (from_pretrained returns the model in eval mode: no dropout)
    _, batch = next(ours.batches())
    model, tok = load_model(cfg.model, ours.dataset.num_labels, ours.dataset.label_names, ours.attn,
                            seed=cfg.optim.seed)
    hf_args = TrainingArguments(output_dir="/tmp/uegr-bench-hf", per_device_train_batch_size=len(batch["labels"]),
                                max_steps=args.steps + 1, learning_rate=cfg.optim.lr, weight_decay=cfg.optim.weight_decay,
                                max_grad_norm=cfg.optim.grad_clip, report_to=[], use_cpu=True, save_strategy="no",
                                logging_steps=1, disable_tqdm=True, seed=cfg.optim.seed)
    cb = Interleave(ours, batch)
    rows = [{"i": i} for i in range(len(batch["labels"]))]
    hf = Timed(model=model, args=hf_args, train_dataset=rows, data_collator=lambda _: dict(batch),
                     processing_class=tok, method=cfg.method, callbacks=[cb])
    hf.inner = []
    hf.train()
    hf_ms, ours_ms = cb.hf_ms[1:], cb.ours_ms[1:]  # the first step of each warms up
    h, o = statistics.median(hf_ms), statistics.median(ours_ms)
    return {"method": method, "k": cfg.method.k if method == "uegr" else None, "steps": len(hf_ms),
            "uegr_trainer_ms": round(h, 1), "project_trainer_ms": round(o, 1), "ratio": round(o / h, 3),
            "uegr_trainer_training_step_ms": round(statistics.median(hf.inner[1:]), 1),
            "batch": list(batch["input_ids"].shape)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--methods", default="vanilla,uegr")
    ap.add_argument("--steps", type=int, default=6, help="timed steps per trainer (after one warm-up step)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=48)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--set", action="append", default=[], help="extra config override, e.g. method.k=3")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for method in args.methods.split(","):
        print(json.dumps(measure(method, args)), flush=True)


if __name__ == "__main__":
    main()
