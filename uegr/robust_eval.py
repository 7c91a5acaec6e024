"""Robust accuracy while training: attack a snapshot of the weights beside the training loop.

Every `runtime.robust_eval_every` steps the callback copies the weights to the CPU (tens of ms) and hands
them to one background thread, which loads them into its own CPU model and runs the project's attack
(`uegr.attacks.attack_dataset`) on a fixed, seeded subset of the VALIDATION split (never test). Training
goes on meanwhile; the result is written to metrics.jsonl as a "robust" record carrying the step whose
weights were measured:

    {"kind": "robust", "step": 50, "robust_acc": ..., "attack_success": ..., "avg_queries": ...,
     "robust_eval_seconds": ..., "clean_acc": <on the same subset>, "n": 64, "recipe": "deepwordbug"}

With `runtime.select_on` = robust | harmonic this callback (not the trainer) chooses checkpoints/best. The
thread keeps a measured snapshot loaded until the main thread has decided whether it is the best, so the
checkpoint written is exactly the weights that were attacked. Queued snapshots wait as CPU state dicts.
"""

from __future__ import annotations

import copy
import queue
import threading
import time

import numpy as np
import torch

from .callbacks import Callback

VALIDATION = "validation"


class _Cancelled(Exception):
    pass


# A model that predicts one class cannot be flipped, so its accuracy under attack equals its clean accuracy
# (the majority share): on SST-2 such a model (clean 0.517, robust 0.521) out-scored every model that learned
# (clean 0.75, robust 0.25). Robust and harmonic scores therefore count only above the majority share plus
# this margin; below it a checkpoint or trial scores 0.
CHANCE_MARGIN = 0.05


def learned(clean: float | None, chance: float | None) -> bool:
    return clean is not None and (chance is None or clean > chance + CHANCE_MARGIN)


def harmonic(clean: float | None, robust: float | None, chance: float | None = None) -> float | None:
    """Harmonic mean of clean and robust accuracy; 0 for a model no better than predicting the majority class
    of the validation split (`chance`, recorded in each robust record)."""
    if clean is None or robust is None:
        return None
    if not learned(clean, chance) or clean + robust <= 0:
        return 0.0
    return 2 * clean * robust / (clean + robust)


def selection_score(select_on: str, clean: float | None, robust: float | None,
                    chance: float | None = None) -> float | None:
    if select_on == "robust":
        return None if robust is None else (robust if learned(clean, chance) else 0.0)
    return {"clean": clean, "harmonic": harmonic(clean, robust, chance)}[select_on]


def robust_rows(evals: list[dict], robusts: list[dict]) -> list[dict]:
    """One row per robust record: step, clean (full-validation accuracy at that step when the trainer
    evaluated there, else the attacked subset's clean accuracy), robust and their harmonic mean."""
    clean_at = {e["step"]: e.get("accuracy") for e in evals if e.get("split", VALIDATION) == VALIDATION}
    rows = []
    for r in robusts:
        clean = clean_at.get(r["step"], r.get("clean_acc"))
        rows.append({"step": r["step"], "clean_acc": clean, "robust_acc": r.get("robust_acc"),
                     "harmonic": harmonic(clean, r.get("robust_acc"), r.get("chance")), "chance": r.get("chance")})
    return rows


MAX_PERTURB = 0.3  # at most 30 % of a sentence's words changed, as `uegr attack`'s default


class RobustEvalCallback(Callback):
    """Added by the Trainer when runtime.robust_eval_every > 0. Each result goes to every callback's
    `on_robust_eval` (the run recorder writes it, the sweep reports it to its trial); with select_on robust or
    harmonic, a better result asks the trainer to make the measured weights checkpoints/best."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.r = cfg.runtime
        self.records: list[dict] = []
        self._jobs: queue.Queue = queue.Queue()
        self._done: queue.Queue = queue.Queue()
        self._pending: list[tuple[int, dict]] = []  # snapshots waiting for the thread to be free
        self._busy = False
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._clean_at: dict[int, float] = {}
        self.model = self.tokenizer = None
        self.texts: list[str] = []
        self.labels: list[int] = []
        self.chance: float | None = None
        self.wait_seconds = 0.0  # time the training loop spent waiting for this callback

    # ---------------------------------------------------------------- trainer hooks (main thread)
    def on_train_start(self, state, control) -> None:
        from .attacks import get_recipe, select_indices

        split = state.dataset.splits.get(VALIDATION)
        if split is None or len(split) == 0:
            raise ValueError("runtime.robust_eval_every > 0 needs a validation split; set data.validation_fraction "
                             "or give data.validation_file")
        if split.pairs is not None:
            raise ValueError("runtime.robust_eval_every: attacks on sentence-pair data are not supported; set it to 0")
        ok, why = get_recipe(self.r.robust_eval_recipe).available()
        if not ok:
            raise ValueError(f"runtime.robust_eval_recipe={self.r.robust_eval_recipe!r} cannot run here: {why}")
        idx = select_indices(len(split), self.r.robust_eval_examples, self.cfg.data.split_seed)
        self.texts = [split.texts[i] for i in idx]
        self.labels = [int(split.labels[i]) for i in idx]
        self.num_labels, self.label_names = state.dataset.num_labels, state.dataset.label_names
        counts = np.bincount(np.asarray(split.labels, dtype=np.int64))
        self.chance = float(counts.max() / counts.sum())  # majority-class share of the whole validation split
        if self.model is None:
            # Built HERE, not in the thread: load_model seeds the global torch RNG inside fork_rng, which from
            # another thread would rewind the RNG the training loop is drawing dropout masks from. Its own
            # tokenizer too: a fast tokenizer is not safe to share between threads.
            from .models import load_model

            self.model, self.tokenizer = load_model(self.cfg.model, self.num_labels, self.label_names,
                                                    "sdpa", seed=self.cfg.optim.seed)
            self.model.eval()
            # Build the attack now, during setup (imports TextAttack, ~1-4 s of CPU), not in the thread while
            # training runs: attack_dataset reuses it (runner.get_attack caches it per model).
            from .attacks.runner import get_attack

            get_attack(self.model, self.tokenizer, self.r.robust_eval_recipe, self.r.robust_eval_budget or None,
                       MAX_PERTURB)
        self._cancel.clear()
        self._thread = threading.Thread(target=self._work, name="uegr-robust-eval", daemon=True)
        self._thread.start()

    def on_step_end(self, state, control) -> None:
        t0 = time.perf_counter()
        self._drain(state, control, block=False)
        if state.step % self.r.robust_eval_every == 0:
            sd = {k: v.detach().to("cpu", copy=True) for k, v in state.model.state_dict().items()}
            self._pending.append((state.step, sd))
            self._submit()
        self.wait_seconds += time.perf_counter() - t0

    def on_evaluate(self, state, control, metrics: dict) -> None:
        if metrics.get("split") == VALIDATION:
            self._clean_at[metrics["step"]] = metrics["accuracy"]

    def on_train_end(self, state, control, outcome: str, error: str | None) -> None:
        t0 = time.perf_counter()
        if outcome == "completed":
            while self._busy or self._pending:  # measure every snapshot taken, then stop the thread
                self._drain(state, control, block=True)
        else:  # stopped, pruned or failed: do not make the user wait for attacks nobody will read
            self._cancel.set()
            self._pending.clear()
            if self._busy:
                self._drain(state, control, block=True)
        self._jobs.put(None)
        if self._thread is not None:
            self._thread.join(timeout=60)
        self.wait_seconds += time.perf_counter() - t0

    # ---------------------------------------------------------------- main-thread plumbing
    def _submit(self) -> None:
        if not self._busy and self._pending:
            self._busy = True
            self._jobs.put(self._pending.pop(0))

    def _drain(self, state, control, block: bool) -> None:
        while self._busy:
            try:
                step, summary, error = self._done.get(block=block)
            except queue.Empty:
                return
            if error is not None and not isinstance(error, _Cancelled):
                self._busy = False
                raise RuntimeError(f"robust evaluation at step {step} failed: {error}") from error
            if error is None:
                self._handle(state, control, step, summary)
            self._busy = False  # only now may the thread load the next snapshot over the measured one
            self._submit()
            block = False

    def _handle(self, state, control, step: int, s: dict) -> None:
        rec = {"kind": "robust", "step": step, "split": VALIDATION, "robust_acc": s["accuracy_under_attack"],
               "attack_success": s["attack_success_rate"], "avg_queries": s["avg_queries"],
               "robust_eval_seconds": s["seconds"], "clean_acc": s["clean_accuracy"], "n": s["num_examples"],
               "recipe": self.r.robust_eval_recipe, "query_budget": self.r.robust_eval_budget,
               "chance": self.chance, "time": time.time()}
        self.records.append(rec)
        control.robust_records.append(rec)
        select_on = self.r.select_on
        if select_on != "clean":
            clean = self._clean_at.get(step, rec["clean_acc"])
            score = selection_score(select_on, clean, rec["robust_acc"], self.chance)
            best = control.new_best[0] if control.new_best is not None else state.best_score
            if score is not None and (best is None or score > best):
                # A copy: the trainer saves it after this hook returns, when the thread may already be
                # loading the next snapshot into self.model.
                control.new_best = (score, step, copy.deepcopy(self.model), select_on)

    # ---------------------------------------------------------------- the background thread
    def _work(self) -> None:
        from .attacks import attack_dataset

        # One intra-op thread for the attacks: the setting is per thread (OpenMP), so training keeps its
        # threads, and the attack's model calls do not oversubscribe the cores training is using (quick demo on
        # 2 idle cores: +15 % training wall with 2 threads here, +7 % with 1; docs/benchmarks.md). The count is
        # also torch's default for threads started later, hence restored on exit.
        restore = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            self._serve(attack_dataset)
        finally:
            torch.set_num_threads(restore)

    def _serve(self, attack_dataset) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            step, sd = job
            try:
                missing, unexpected = self.model.load_state_dict(sd, strict=False)
                del sd
                if unexpected or [k for k in missing if not k.endswith("position_ids")]:
                    raise ValueError(f"the CPU copy does not match the trained model (missing {missing[:3]}, "
                                     f"unexpected {unexpected[:3]})")

                def progress(done, total, eta):
                    if self._cancel.is_set():
                        raise _Cancelled()

                budget = self.r.robust_eval_budget or None
                np.random.seed(self.cfg.data.split_seed)  # character edits draw from numpy too: same draws each time
                summary = attack_dataset(self.model, self.tokenizer, self.texts, self.labels,
                                         self.r.robust_eval_recipe, n=None, seed=self.cfg.data.split_seed,
                                         query_budget=budget, max_perturb_fraction=MAX_PERTURB, progress=progress,
                                         label_names=self.label_names,
                                         seed_torch=False)  # the training loop owns the global torch RNG
                self._done.put((step, summary, None))
            except BaseException as exc:  # noqa: BLE001 - reported on the main thread
                self._done.put((step, None, exc))

