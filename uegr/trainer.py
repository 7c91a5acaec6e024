"""One training loop for every method, built on Accelerate, driven through callbacks.

The CLI, the app (via the CLI in a subprocess) and the tests all use `Trainer`. A step is:
    parts = method.step(batch)            # forwards + backwards (UEGR: stage 1)
    updater.step(step)                    # saliency -> mask refresh -> masked gradients (stage 2)
    clip, optimizer.step, scheduler.step
Callbacks (uegr/callbacks.py) see a TrainerState and steer the loop through a TrainerControl.
"""

from __future__ import annotations

import dataclasses
import errno
import math
import os
import random
import socket
import sys
import time
import traceback
import zlib
from pathlib import Path

import torch

from . import jobs
from .callbacks import Callback, TrainerControl, TrainerState
from .config import Config, validate
from .data import Encoded, TextDataset, load_dataset, make_collate
from .env import hardware
from .methods import StepContext, build_method, method_class
from .methods.base import as_floats, as_tuple
from .metrics import classification_report
from .models import load_model, save_checkpoint
from .runs import Run, RunError, safetensors_problem
from .saliency import MaskedAdamW, SelectiveUpdater

__all__ = ["Callback", "RunRecorder", "Trainer", "TrainerControl", "TrainerState", "evaluate_model"]


class StopTraining(Exception):
    pass


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the run is marked failed with this message."""


def pick_device(choice: str) -> str:
    if choice != "auto":
        if choice == "cuda" and not torch.cuda.is_available():
            raise ValueError("runtime.device='cuda' but no CUDA GPU is visible; use 'auto' or 'cpu'")
        if choice == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ValueError("runtime.device='mps' but MPS is not available; use 'auto' or 'cpu'")
        return choice
    if torch.cuda.is_available():
        return "cuda"
    if hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def attn_implementation_for(cfg: Config) -> str:
    """model.attn_implementation, or (auto) what the method asks for (Method.attention_implementation)."""
    if cfg.model.attn_implementation != "auto":
        return cfg.model.attn_implementation
    return method_class(cfg.method.name).attention_implementation(cfg.method)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % (2**32))
    except ImportError:  # pragma: no cover
        pass


def _on_state(name: str) -> property:
    """A trainer attribute kept in its TrainerState (so callbacks read the same value)."""
    return property(lambda self: getattr(self.state, name), lambda self, v: setattr(self.state, name, v))


class Trainer:
    step = _on_state("step")
    epoch = _on_state("epoch")
    total_steps = _on_state("total_steps")
    steps_per_epoch = _on_state("steps_per_epoch")
    best_score = _on_state("best_score")
    last_eval = _on_state("last_eval")

    def __init__(self, cfg: Config, run: Run | None = None, callbacks: list[Callback] | None = None,
                 dataset: TextDataset | None = None, resume: bool = False, model=None):
        """`model`: an optional (model, tokenizer) to train instead of loading cfg.model (the Learn page
        trains a copy of its cached model); it should use attn_implementation_for(cfg)."""
        self.cfg = validate(cfg)
        self.run = run
        self.state = TrainerState(cfg=self.cfg, run=run)
        self.control = TrainerControl()
        self._serving = False
        # One process per run: the lock is held until fit() ends (re-entrant, so the CLI can hold it too).
        self._run_lock = run.lock() if run is not None else None
        try:
            self._setup(cfg, callbacks, dataset, resume, model)
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        """Give back the run's lock (fit() does this when it ends)."""
        lock, self._run_lock = getattr(self, "_run_lock", None), None
        if lock is not None:
            lock.release()

    def _setup(self, cfg: Config, callbacks, dataset, resume: bool, model=None) -> None:
        from accelerate import Accelerator

        self.callbacks = list(callbacks or [])
        if cfg.runtime.robust_eval_every:
            from .robust_eval import RobustEvalCallback

            # First, so its final robust result (and best checkpoint) is in before RunRecorder's final status.
            self.callbacks.insert(0, RobustEvalCallback(cfg))
        o, r = cfg.optim, cfg.runtime
        if r.threads:
            torch.set_num_threads(r.threads)
        device = pick_device(r.device)
        precision = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[r.precision]
        if precision == "fp16" and device != "cuda":
            raise ValueError("runtime.precision='fp16' needs a CUDA GPU; use 'bf16' or 'fp32' on CPU")
        from .trackers import TrackerLogger, accelerator_kwargs

        trackers = accelerator_kwargs(r.report_to, self.run.path / "trackers" if self.run else "trackers")
        self.accelerator = Accelerator(cpu=device == "cpu", mixed_precision=precision, **trackers)
        if trackers:
            self.callbacks.append(TrackerLogger(self.run.name if self.run else "uegr", cfg.to_dict()))
        seed_everything(o.seed)

        self.dataset = dataset or load_dataset(cfg.data)
        self.attn = attn_implementation_for(cfg)
        model, self.tokenizer = model or load_model(cfg.model, self.dataset.num_labels, self.dataset.label_names,
                                                    self.attn, seed=o.seed)
        from .models import check_max_length, position_limit

        check_max_length(cfg.data.max_length, position_limit(model, self.tokenizer), cfg.model.name)
        self.method = build_method(cfg.method, o.seed)
        self.method.prepare(model)

        self.train_data = Encoded(self.dataset.splits["train"], self.tokenizer, cfg.data.max_length)
        self.collate = make_collate(self.tokenizer.pad_token_id or 0)
        world = self.accelerator.num_processes
        self.steps_per_epoch = max(1, math.ceil(len(self.train_data) / (o.batch_size * world)))
        self.total_steps = o.max_steps or max(1, math.ceil(o.epochs * self.steps_per_epoch))

        groups = parameter_groups(model, o.lr, o.weight_decay, o.head_lr_scale)
        m = cfg.method
        self.updater: SelectiveUpdater | None = None
        if self.method.mask_mode:
            mcfg = dataclasses.replace(m, **self.method.updater_overrides)
            self.updater = SelectiveUpdater(model, mcfg, o.seed, fixed=self.method.mask_mode == "fixed")
        if self.updater is not None and m.freeze_moments:
            optimizer = MaskedAdamW(groups, lr=o.lr)
        else:
            # The fused kernel (CPU and CUDA) is several times faster than the foreach one on 22M parameters.
            fused = device in ("cpu", "cuda")
            optimizer = torch.optim.AdamW(groups, lr=o.lr, fused=fused or None)
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        self.raw_model = self.accelerator.unwrap_model(self.model)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_lambda)

        acc = self.accelerator
        self.state.__dict__.update(model=self.raw_model, updater=self.updater, dataset=self.dataset, accelerator=acc,
                                   world_size=acc.num_processes, is_main_process=acc.is_main_process,
                                   device=str(acc.device), attn_implementation=self.attn)
        self.batch_in_epoch = 0
        self.history: list[dict] = []
        self._t_start = time.time()
        self._examples_seen = 0
        if resume:
            self._load_state()
        n = self.method.data_pass_batches()  # e.g. CHILD-TUNING_D's Fisher pass over the training set
        if n != 0 and self.method.data_pass(self.raw_model, self.updater, self.ordered_batches(n)):
            self._emit("on_mask_refresh", self.step)

    # ------------------------------------------------------------------ schedule and batches
    def _lr_lambda(self, step: int) -> float:
        warm = int(self.cfg.optim.warmup_ratio * self.total_steps)
        if step < warm:
            return (step + 1) / (warm + 1)
        rest = max(1, self.total_steps - warm)
        frac = min(1.0, (step - warm) / rest)
        if self.cfg.optim.schedule == "linear":
            return max(0.0, 1 - frac)
        if self.cfg.optim.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * frac))
        return 1.0

    def epoch_order(self, epoch: int) -> list[int]:
        gen = torch.Generator().manual_seed(self.cfg.optim.seed * 1000 + epoch)
        order = torch.randperm(len(self.train_data), generator=gen).tolist()
        if self.cfg.data.group_by_length:
            lengths = [len(f["input_ids"]) for f in self.train_data.features]
            order = length_grouped(order, lengths, self.cfg.optim.batch_size * self.accelerator.num_processes, gen)
        return order

    def batches(self):
        """(epoch, index-in-epoch, batch) from the current position; each rank gets its slice of the global batch."""
        b, world, rank = self.cfg.optim.batch_size, self.accelerator.num_processes, self.accelerator.process_index
        while True:
            epoch = self.epoch
            order = self.epoch_order(epoch)
            for i in range(self.batch_in_epoch, self.steps_per_epoch):
                rows = order[i * b * world:(i + 1) * b * world][rank * b:(rank + 1) * b]
                if not rows:
                    rows = order[:b]
                batch = self.collate([self.train_data[j] for j in rows])
                yield i, {k: v.to(self.accelerator.device) for k, v in batch.items()}
            # The training loop advances the epoch after its last batch; advancing it again here skipped
            # every other epoch's order, which a resume from an epoch boundary could not reproduce.
            if self.epoch == epoch:
                self.epoch, self.batch_in_epoch = epoch + 1, 0

    def ordered_batches(self, n: int | None):
        """The first `n` training batches in data order (None: one epoch), on the device (for data passes)."""
        data, b = self.train_data, self.cfg.optim.batch_size
        for i in range(min(n or self.steps_per_epoch, -(-len(data) // b))):
            batch = self.collate([data[j] for j in range(i * b, min((i + 1) * b, len(data)))])
            yield {k: v.to(self.accelerator.device) for k, v in batch.items()}

    # ------------------------------------------------------------------ the loop
    def fit(self) -> dict:
        try:
            return self._fit()
        finally:
            self.release()

    def _fit(self) -> dict:
        outcome, error = "completed", None
        self._emit("on_train_start")
        try:
            self._loop()
        except StopTraining:
            outcome = "stopped"
        except KeyboardInterrupt:
            outcome, error = "stopped", "interrupted by the user (Ctrl-C)"
        except Exception as exc:  # noqa: BLE001 - any failure is recorded in the run, then re-raised
            self._fail(exc)
            raise
        if outcome == "stopped":
            try:
                self.save_checkpoint("last")
            except Exception as exc:  # noqa: BLE001 - e.g. a full disk: the previous checkpoint is intact
                self._fail(exc)
                raise
        self._emit("on_train_end", outcome, error)
        return {**self.last_eval, "state": outcome, "step": self.step, "best_score": self.best_score}  # eval has its own step

    def _fail(self, exc: Exception) -> None:
        self.state.error_trace = traceback.format_exc()
        self._emit("on_train_end", "failed", f"{type(exc).__name__}: {exc}")

    def _loop(self) -> None:
        cfg = self.cfg
        self.model.train()
        it = self.batches()
        while self.step < self.total_steps:
            t0 = time.time()
            i, batch = next(it)
            parts, grad_norm, refreshed = self.train_step(batch)
            self.step += 1
            self.batch_in_epoch = i + 1
            if self.batch_in_epoch >= self.steps_per_epoch:
                self.epoch, self.batch_in_epoch = self.epoch + 1, 0
            self._examples_seen += batch["labels"].shape[0] * self.accelerator.num_processes
            if refreshed:
                self._emit("on_mask_refresh", self.step)
            if self.step % cfg.runtime.log_every == 0 or self.step == self.total_steps:
                self._log_step(parts, grad_norm, time.time() - t0)
            end_of_epoch = self.batch_in_epoch == 0
            control = self.control
            control.should_evaluate |= bool((cfg.runtime.eval_every and self.step % cfg.runtime.eval_every == 0) or
                                            (not cfg.runtime.eval_every and end_of_epoch) or
                                            self.step == self.total_steps)
            self._emit("on_step_end")
            evaluated = self._agreed(control.should_evaluate)
            if evaluated:
                control.should_evaluate = False
                self.evaluate_and_track()
            control.should_checkpoint |= bool(
                (cfg.runtime.checkpoint_every and self.step % cfg.runtime.checkpoint_every == 0) or
                (not cfg.runtime.checkpoint_every and evaluated))
            if self._agreed(control.should_checkpoint):
                control.should_checkpoint = False
                self.save_checkpoint("last")
            if self._agreed(control.should_stop):
                raise StopTraining

    def _agreed(self, flag: bool) -> bool:
        """A flag set on the main process (where callbacks run), seen by every process (so all evaluate,
        checkpoint and stop together)."""
        if self.accelerator.num_processes == 1:
            return flag
        t = torch.tensor([int(flag)], device=self.accelerator.device)
        return bool(self.accelerator.reduce(t, reduction="sum").item())

    def train_step(self, batch: dict) -> tuple[dict, float, bool]:
        """One optimisation step on `batch`: (loss parts, grad norm, whether the mask was refreshed)."""
        ctx = StepContext(self.model, self.raw_model, self.accelerator.backward, self.step,
                          self.step / self.total_steps)
        with self.accelerator.autocast():
            parts = self.method.step(batch, ctx)  # forwards + backwards (UEGR: stage 1)
        self.accelerator.unscale_gradients()
        refreshed = self.updater.step(self.step) if self.updater is not None else False  # stage 2
        if isinstance(self.optimizer.optimizer, MaskedAdamW) and self.updater is not None:
            self.optimizer.optimizer.masks = self.updater.active_masks()
        grad_norm = self._clip()
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return parts, grad_norm, refreshed

    def _clip(self) -> torch.Tensor | float:
        """The gradient norm (clipped to grad_clip when set), left on the device until it is logged."""
        params = [p for p in self.model.parameters() if p.grad is not None]
        if self.cfg.optim.grad_clip > 0:
            return self.accelerator.clip_grad_norm_(params, self.cfg.optim.grad_clip)
        return torch.norm(torch.stack([p.grad.norm() for p in params])) if params else 0.0

    def _log_step(self, parts: dict, grad_norm: float, step_time: float) -> None:
        elapsed = time.time() - self._t_start
        rate = self._examples_seen / max(elapsed, 1e-9)
        steps_left = self.total_steps - self.step
        record = {"kind": "train", "step": self.step, "epoch": self.epoch + self.batch_in_epoch / self.steps_per_epoch,
                  **as_floats(parts), "lr": self.scheduler.get_last_lr()[0],
                  "grad_norm": float(grad_norm), "step_time": step_time, "examples_per_s": rate,
                  "eta_s": steps_left * elapsed / max(self._steps_this_session(), 1), "time": time.time()}
        if self.updater is not None and self.updater.masks is not None:
            record["kept_fraction"] = self.updater.kept_fraction()
            record.update(self.updater.kept_per_layer())
        self.history.append(record)
        self.state.metrics = record
        self._emit("on_log", record)
        if not math.isfinite(record["loss"]):
            raise TrainingDiverged(
                f"the training loss became {record['loss']} at step {self.step}; lower optim.lr "
                f"(now {self.cfg.optim.lr}) or set optim.grad_clip (now {self.cfg.optim.grad_clip})")

    def _steps_this_session(self) -> int:
        return self.step - getattr(self, "_resumed_step", 0)

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self, split: str = "validation", data=None) -> dict:
        """Accuracy, macro-F1, mean loss (+ MCC and F1 for binary tasks) on a split or a Split."""
        data = data if data is not None else self.dataset.splits.get(split)
        if data is None or len(data) == 0:
            return {}
        return evaluate_model(self.raw_model, self.tokenizer, data, self.cfg.data.max_length,
                              self.cfg.optim.eval_batch_size, self.dataset.num_labels)

    def evaluate_and_track(self) -> dict:
        split = "validation" if "validation" in self.dataset.splits else "test"
        metrics = self.evaluate(split)
        if not metrics:
            return {}
        metrics = {"kind": "eval", "split": split, "step": self.step, "epoch": self.epoch, **metrics,
                   "time": time.time()}
        self.last_eval = {k: v for k, v in metrics.items() if k not in ("kind", "time")}
        score = metrics["accuracy"]
        # select_on robust/harmonic: RobustEvalCallback picks checkpoints/best when its attack result is in.
        if self.cfg.runtime.select_on == "clean" and (self.best_score is None or score > self.best_score):
            self.best_score = score
            self.save_checkpoint("best", with_state=False)
        self._emit("on_evaluate", metrics)
        self.model.train()
        return metrics

    # ------------------------------------------------------------------ checkpoints and resume
    def save_checkpoint(self, which: str = "last", with_state: bool = True, model=None) -> Path | None:
        """Crash-safe: the run store writes a new folder, fsyncs it, then swaps the link (Run.write_checkpoint).
        `model`: save these weights instead of the live ones (a measured snapshot, e.g. robust eval)."""
        if self.run is None:
            return None
        self.accelerator.wait_for_everyone()
        folder = self.run.checkpoint_dir(which)
        if self.accelerator.is_main_process:
            def write(tmp: Path) -> None:
                save_checkpoint(model if model is not None else self.raw_model, self.tokenizer, tmp)
                if with_state:
                    torch.save(self.trainer_state(), tmp / "trainer_state.pt")

            try:
                folder = self.run.write_checkpoint(which, self.step, write)
            except OSError as exc:
                raise OSError(exc.errno, f"{exc.strerror or exc} while writing checkpoint {which!r} of run "
                              f"{self.run.name!r} at step {self.step}; the previous checkpoint is intact",
                              exc.filename) from exc
            except RuntimeError as exc:  # torch/safetensors report a full disk as RuntimeError
                code = _errno_of(exc, self.run.checkpoints_dir)
                raise OSError(code, f"{'no space left on the disk' if code == errno.ENOSPC else 'write failed'} "
                              f"while writing checkpoint {which!r} of run {self.run.name!r} at step {self.step} "
                              f"({str(exc).strip()[:90]}); the previous checkpoint is intact",
                              str(self.run.checkpoints_dir)) from exc
            self._emit("on_checkpoint", folder)
        return folder

    # Not Accelerate's save_state/load_state: objects registered with register_for_checkpointing (the
    # method's and the updater's state: rate-sampler RNG, saliency EMA, masks) are loaded with pickle
    # (weights_only=False), and it writes the weights again beside the portable checkpoint. One
    # trainer_state.pt loaded with weights_only=True, inside the crash-safe folder swap of
    # Run.write_checkpoint, with a one-line error per damaged file (tests/test_faults.py).
    def trainer_state(self) -> dict:
        return {"step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                "best_score": self.best_score, "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "method": self.method.state_dict(),
                "updater": self.updater.state_dict() if self.updater is not None else None,
                "rng_torch": torch.get_rng_state(), "rng_python": random.getstate(),
                "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}

    def _load_state(self) -> None:
        folder = self.run.resume_checkpoint() if self.run is not None else None
        if folder is None:
            raise ValueError("nothing to resume: the run has no checkpoints/last (it stopped before the first "
                             "checkpoint); start it again instead")
        from safetensors.torch import load_file

        restart = f"`uegr train --name {self.run.name} --resume --restart` trains it again from step 0"
        for f in ("model.safetensors", "trainer_state.pt"):
            if not (folder / f).is_file():
                raise RunError(f"checkpoint file {folder / f} is missing; restore it, or {restart}")
        problem = safetensors_problem(folder / "model.safetensors")
        try:
            if problem:
                raise ValueError(problem)
            weights = load_file(str(folder / "model.safetensors"))
        except Exception as exc:  # noqa: BLE001 - SafetensorError is not a ValueError
            raise RunError(f"checkpoint {folder / 'model.safetensors'} cannot be loaded ({str(exc)[:160]}); "
                           f"restore it, or {restart}") from None
        missing, unexpected = self.raw_model.load_state_dict(weights, strict=False)
        if unexpected or [k for k in missing if not k.endswith("position_ids")]:
            raise RunError(f"checkpoint {folder} does not match the model (missing {missing[:3]}, unexpected "
                           f"{unexpected[:3]}): the run's model settings changed; {restart}")
        try:
            st = torch.load(folder / "trainer_state.pt", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - a damaged zip raises RuntimeError/EOFError/UnpicklingError
            raise RunError(f"checkpoint file {folder / 'trainer_state.pt'} cannot be loaded ({str(exc)[:120]}); "
                           f"restore it, or {restart}") from None
        try:
            self.optimizer.load_state_dict(st["optimizer"])
            self.scheduler.load_state_dict(st["scheduler"])
            self.method.load_state_dict(st["method"])
            if self.updater is not None and st["updater"] is not None:
                self.updater.load_state_dict(st["updater"])
        except (KeyError, ValueError, RuntimeError, TypeError) as exc:
            raise RunError(f"the training state in {folder / 'trainer_state.pt'} does not fit this run's settings "
                           f"({type(exc).__name__}: {str(exc)[:120]}); {restart}") from None
        self.step, self.epoch, self.batch_in_epoch = st["step"], st["epoch"], st["batch_in_epoch"]
        self.best_score = st["best_score"]
        torch.set_rng_state(st["rng_torch"])
        random.setstate(as_tuple(st["rng_python"]))
        if st["rng_cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(st["rng_cuda"])
        self._resumed_step = self.step

    def _emit(self, hook: str, *args) -> None:
        """Call `hook(state, control, *args)` on every callback that has it (main process only, except the
        mask refresh, whose checksums are gathered from every process), serving requests after each."""
        if not self.accelerator.is_main_process and hook != "on_mask_refresh":
            return
        for cb in self.callbacks:
            fn = getattr(cb, hook, None)
            if fn is not None:
                fn(self.state, self.control, *args)
                self._serve_requests()

    def _serve_requests(self) -> None:
        """Records a callback produced for the others, and a better checkpoint a callback measured. Not
        re-entrant: hooks called from here leave their requests to the loop below, so records stay in order."""
        if self._serving:
            return
        control, self._serving = self.control, True
        try:
            while control.robust_records:
                self._emit("on_robust_eval", control.robust_records.pop(0))
            if control.new_best is not None:
                score, step, model, metric = control.new_best
                control.new_best = None
                self.best_score = score
                self.save_checkpoint("best", with_state=False, model=model)
                if self.run is not None:
                    self.run.set_status(best_score=score, best_metric=metric, best_step=step)
        finally:
            self._serving = False


def _errno_of(exc: Exception, folder: Path) -> int:
    """ENOSPC when the message says so, or when less room is left than one more checkpoint takes (torch
    reports a full disk only as "unexpected pos ..."); EIO otherwise."""
    import shutil

    text = str(exc).lower()
    if "no space" in text or "os error 28" in text:
        return errno.ENOSPC
    try:
        biggest = max((sum(f.stat().st_size for f in d.iterdir()) for d in folder.glob(".*@*") if d.is_dir()),
                      default=0)
        if shutil.disk_usage(folder).free < biggest * 1.05 + (1 << 20):
            return errno.ENOSPC
    except OSError:
        pass
    return errno.EIO


def length_grouped(order: list[int], lengths: list[int], batch: int, gen: torch.Generator,
                   chunk_batches: int = 50) -> list[int]:
    """Reorder a shuffled epoch so each batch holds similar lengths (as HF's LengthGroupedSampler):
    chunks of `chunk_batches` batches are sorted by length, cut into batches, and the batches shuffled.

    Not transformers' get_length_grouped_indices: it keeps each mega-batch's batches in longest-first order
    (a length trend every 50 steps) and draws its own permutation, so runs started before a switch could not
    resume on the same batch order (epoch_order must stay reproducible for resume)."""
    chunk = batch * chunk_batches
    batches = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start:start + chunk], key=lambda i: -lengths[i])
        batches.extend(part[j:j + batch] for j in range(0, len(part), batch))
    full = [bt for bt in batches if len(bt) == batch]
    short = [bt for bt in batches if len(bt) < batch]  # only the last chunk can leave one: it stays last
    full = [full[i] for i in torch.randperm(len(full), generator=gen).tolist()]
    return [i for bt in full + short for i in bt]


def parameter_groups(model, lr: float, weight_decay: float, head_lr_scale: float = 1.0) -> list[dict]:
    """AdamW groups: no decay for biases and LayerNorms; the new head (and pooler) may get a larger lr."""
    groups: dict[tuple, list] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups.setdefault((_no_decay(name), _is_head(name)), []).append(p)
    return [{"params": ps, "weight_decay": 0.0 if nd else weight_decay, "lr": lr * (head_lr_scale if head else 1.0)}
            for (nd, head), ps in sorted(groups.items())]


def _is_head(name: str) -> bool:
    return name.startswith(("classifier", "pre_classifier", "score")) or ".pooler." in name


def _no_decay(name: str) -> bool:
    n = name.lower()
    return n.endswith("bias") or "layernorm" in n or "layer_norm" in n


def evaluate_model(model, tokenizer, data, max_length: int, batch_size: int, num_labels: int) -> dict:
    """Metrics and mean task loss (CE, or MSE for a one-output regression head) on a data.Split."""
    from .models import (  # inputs truncated to the model's limit
        clamp_length,
        classification_loss,
        predict_logits,
    )

    device = next(model.parameters()).device
    loader = torch.utils.data.DataLoader(Encoded(data, tokenizer, clamp_length(max_length, model, tokenizer)),
                                         batch_size=batch_size, collate_fn=make_collate(tokenizer.pad_token_id or 0))
    preds, total_loss = [], 0.0
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        logits = predict_logits(model, batch)
        total_loss += float(classification_loss(logits, batch["labels"], reduction="sum"))
        preds.extend(logits.argmax(-1).tolist())
    out = classification_report(preds, list(data.labels), num_labels)
    out["loss"] = total_loss / max(len(data), 1)
    out["n"] = len(data)
    return out


def mask_checksum(updater: SelectiveUpdater) -> int:
    """A cheap fingerprint of the current masks (for checking data-parallel ranks agree)."""
    if updater.masks is None:
        return 0
    crc = 0
    for m in updater.masks:
        crc = zlib.crc32(m.detach().cpu().numpy().tobytes(), crc)
    return crc


class RunRecorder(Callback):
    """Writes status, metrics, checkpoints and saliency snapshots into a Run folder, and turns a STOP
    request into `control.should_stop`."""

    def __init__(self, run: Run, heartbeat_every: float = 2.0):
        self.run = run
        self.heartbeat_every = heartbeat_every
        self._last_beat = 0.0

    def on_train_start(self, state: TrainerState, control: TrainerControl) -> None:
        # A STOP written while queued is kept (and honoured at once); the lock is held, so repairs are safe.
        for note in self.run.recover_checkpoints():
            print(f"run {self.run.name}: {note}", file=sys.stderr)
        moved = self.run.trim_metrics(state.step)
        if moved:
            print(f"run {self.run.name}: moved {moved} metrics line(s) logged after step {state.step} (or torn) "
                  f"to {self.run.path / 'metrics.discarded.jsonl'}", file=sys.stderr)
        st = self.run.raw_status()
        self.run.set_status(state="running", pid=os.getpid(), host=socket.gethostname(),
                            started=st.get("started") or time.time(), heartbeat=time.time(), step=state.step,
                            total_steps=state.total_steps, error=None, ended=None,
                            world_size=state.world_size, device=state.device,
                            attn_implementation=state.attn_implementation, dataset=state.dataset.summary(),
                            hardware=hardware())

    def on_log(self, state: TrainerState, control: TrainerControl, record: dict) -> None:
        self.run.append_metrics([record])
        now = time.time()
        if now - self._last_beat >= self.heartbeat_every or state.step == state.total_steps:
            self._last_beat = now
            self.run.set_status(heartbeat=now, step=state.step, eta_s=record.get("eta_s"),
                                examples_per_s=record.get("examples_per_s"))

    def on_step_end(self, state: TrainerState, control: TrainerControl) -> None:
        if self.run.stop_requested() or jobs.stop_requested():  # `uegr stop`, or the job's stop request
            control.should_stop = True

    def on_evaluate(self, state: TrainerState, control: TrainerControl, metrics: dict) -> None:
        self.run.append_metrics([metrics])
        select_on = state.cfg.runtime.select_on
        self.run.set_status(best_score=state.best_score, last_eval=metrics,
                            best_metric="accuracy" if select_on == "clean" else select_on)

    def on_robust_eval(self, state: TrainerState, control: TrainerControl, record: dict) -> None:
        self.run.append_metrics([record])

    def on_mask_refresh(self, state: TrainerState, control: TrainerControl, step: int) -> None:
        acc = state.accelerator
        if acc.num_processes > 1:
            sums = acc.gather(torch.tensor([mask_checksum(state.updater)], device=acc.device,
                                           dtype=torch.int64)).tolist()
            if acc.is_main_process:
                self.run.append_metrics([{"kind": "mask", "step": step, "checksums": sums}])
        if acc.is_main_process and state.cfg.runtime.snapshot_saliency:
            rows, maps = state.updater.snapshot()
            self.run.write_snapshot(step, rows, maps)

    def on_train_end(self, state: TrainerState, control: TrainerControl, outcome: str, error: str | None) -> None:
        try:
            self.run.set_status(state=outcome, error=error, ended=time.time(), step=state.step,
                                heartbeat=time.time(), best_score=state.best_score, final=state.last_eval)
            if outcome == "stopped":
                self.run.clear_stop()  # the request is served
            if outcome == "failed" and state.error_trace:
                with self.run.log_path.open("a", encoding="utf-8") as fh:
                    fh.write(state.error_trace)
        except OSError as exc:  # a full or read-only disk: readers will show the run as interrupted
            print(f"run {self.run.name}: could not record the final state {outcome!r} ({exc})", file=sys.stderr)


