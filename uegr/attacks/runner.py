"""Running attacks: a batched model wrapper, single-sentence attacks with word diffs, and dataset
attacks that write per-example records and resume after an interruption.

Metrics follow TextAttack's own definitions (over the N attacked examples):
  clean accuracy          = 1 - skipped / N        (skipped = the model was already wrong)
  accuracy under attack   = failed / N
  attack success rate     = successful / (successful + failed)
  avg perturbed word %    = mean over successful attacks of 100 * changed words / words
  avg queries             = mean model queries over successful + failed attacks
Every non-skipped record counts its changed words ("words_changed"), a failed attack's best attempt too.
"""

from __future__ import annotations

import difflib
import json
import os
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import torch

from .recipes import AttackError, get_recipe

RECORDS = "records.jsonl"
META = "meta.json"


class ModelWrapper:
    """TextAttack-compatible wrapper: list of texts (or (text, pair) tuples) -> class probabilities.

    Batched (batch_size), eval mode, no gradients, on whatever device the model is on."""

    def __init__(self, model, tokenizer, batch_size: int = 32, max_length: int = 128):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        from ..models import clamp_length

        self.max_length = clamp_length(max_length, model, tokenizer)  # long inputs truncated to the model's limit

    def __call__(self, text_input_list, **kwargs):
        from ..models import predict_proba

        batch = list(text_input_list)
        if batch and isinstance(batch[0], (tuple, list)):
            first, second = [b[0] for b in batch], [b[1] for b in batch]
        else:
            first, second = batch, None
        return predict_proba(self.model, self.tokenizer, first, second, self.max_length, self.batch_size)


# ---------------------------------------------------------------- per-process cache of built attacks
_CACHE_LOCK = threading.RLock()
_ATTACKS: OrderedDict = OrderedDict()
_MAX_CACHED = 4


def get_attack(model, tokenizer, recipe: str, query_budget: int | float | None = None,
               max_perturb_fraction: float | None = None, batch_size: int = 32):
    """A built textattack.Attack for this model, cached per process (building imports textattack,
    ~4.5 s the first time, and loads transformations/encoders)."""
    rec = get_recipe(recipe)
    key = (recipe, id(model), id(tokenizer), max_perturb_fraction, batch_size)
    with _CACHE_LOCK:
        hit = _ATTACKS.get(key)
        if hit is not None and hit[0] is model and hit[1] is tokenizer:
            _ATTACKS.move_to_end(key)
            attack = hit[2]
        else:
            wrapper = ModelWrapper(model, tokenizer, batch_size=batch_size)
            attack = rec.build(wrapper, model, tokenizer, query_budget, max_perturb_fraction)
            _ATTACKS[key] = (model, tokenizer, attack)
            while len(_ATTACKS) > _MAX_CACHED:
                _ATTACKS.popitem(last=False)
        attack.goal_function.query_budget = int(query_budget) if query_budget else float("inf")
        # predictions are cached by text; the weights may have changed since (fine-tuning in place)
        attack.goal_function.clear_cache()
        return attack


def clear_attack_cache() -> None:
    with _CACHE_LOCK:
        _ATTACKS.clear()


# ---------------------------------------------------------------- one example
def seed_all(seed: int, torch_too: bool = True) -> None:
    """Seed every random source an attack draws from: Python's random, numpy (TextAttack's character
    edits and word swaps sample with np.random) and torch. `torch_too=False` from a thread beside training:
    the global torch RNG draws the trainer's dropout masks, and the eval-mode victim does not need it."""
    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    if torch_too:
        torch.manual_seed(seed)


def _result_type(result) -> str:
    name = type(result).__name__
    if name.startswith("Successful"):
        return "successful"
    if name.startswith("Skipped"):
        return "skipped"
    return "failed"  # FailedAttackResult (incl. query budget exhausted)


def word_diff(original_words: list[str], perturbed_words: list[str]):
    """([(word, changed)] for the original, [(word, changed)] for the perturbed text)."""
    if len(original_words) == len(perturbed_words):
        # Word swaps and character edits keep the word count: position by position, exactly the words
        # TextAttack counts as changed (AttackedText.all_words_diff), so a badge's count equals its diff.
        flags = [a != b for a, b in zip(original_words, perturbed_words, strict=True)]
        return ([(w, f) for w, f in zip(original_words, flags, strict=True)],
                [(w, f) for w, f in zip(perturbed_words, flags, strict=True)])
    sm = difflib.SequenceMatcher(a=original_words, b=perturbed_words, autojunk=False)
    a = [(w, True) for w in original_words]
    b = [(w, True) for w in perturbed_words]
    for block in sm.get_matching_blocks():
        for k in range(block.size):
            a[block.a + k] = (original_words[block.a + k], False)
            b[block.b + k] = (perturbed_words[block.b + k], False)
    return a, b


def _record(result, label: int, seconds: float, label_names: list[str] | None, diff: bool) -> dict:
    orig = result.original_result
    pert = result.perturbed_result
    rtype = _result_type(result)
    o_text, p_text = orig.attacked_text, pert.attacked_text
    n_words = len(o_text.words)
    # A failed attack still shows its best attempt; its changed words count too (only "skipped" changed none).
    o_words, p_words = list(o_text.words), list(p_text.words)
    if rtype == "skipped":
        changed = 0
    elif len(o_words) == len(p_words):
        changed = len(o_text.all_words_diff(p_text))
    else:
        changed = sum(c for _, c in word_diff(o_words, p_words)[0])
    o_probs = orig.raw_output.tolist() if hasattr(orig.raw_output, "tolist") else list(orig.raw_output)
    p_probs = pert.raw_output.tolist() if hasattr(pert.raw_output, "tolist") else list(pert.raw_output)
    o_pred, p_pred = int(orig.output), int(pert.output)

    def name(i):
        return label_names[i] if label_names and 0 <= i < len(label_names) else str(i)

    rec = {
        "original_text": o_text.text, "perturbed_text": p_text.text, "label": int(label),
        "label_name": name(int(label)),
        "original_prediction": o_pred, "original_prediction_name": name(o_pred),
        "original_confidence": float(o_probs[o_pred]),
        "perturbed_prediction": p_pred, "perturbed_prediction_name": name(p_pred),
        "perturbed_confidence": float(p_probs[p_pred]),
        "original_probs": [round(float(p), 6) for p in o_probs],
        "perturbed_probs": [round(float(p), 6) for p in p_probs],
        "result": rtype, "num_queries": int(result.num_queries),
        "num_words": n_words, "words_changed": changed,
        "perturbed_word_pct": round(100.0 * changed / n_words, 4) if n_words else 0.0,
        "seconds": round(seconds, 4),
    }
    if diff:
        rec["original_words"], rec["perturbed_words"] = word_diff(o_words, p_words)
    return rec


def _run_one(attack, text: str, label: int):
    try:
        return attack.attack(text, int(label))
    except (AttackError, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001  (textattack internals: report, do not crash the run)
        raise AttackError(f"the attack failed on this example ({type(exc).__name__}: {str(exc)[:200]})") from exc


def attack_sentence(model, tokenizer, text: str, label: int | None = None, recipe: str = "deepwordbug",
                    query_budget: int | float | None = 2000, max_perturb_fraction: float | None = 0.3,
                    label_names: list[str] | None = None, seed: int = 0) -> dict:
    """Attack one sentence. label None = the model's own prediction (attack what it believes).

    Returns the record of `attack_dataset` plus word-level diffs: "original_words" / "perturbed_words"
    are lists of [word, changed] pairs; "seconds" and "num_queries" cover the attack only."""
    if not text or not text.strip():
        raise AttackError("the sentence is empty")
    attack = get_attack(model, tokenizer, recipe, query_budget, max_perturb_fraction)
    if label is None:
        label = int(ModelWrapper(model, tokenizer)([text])[0].argmax())
    seed_all(seed)
    t0 = time.perf_counter()
    result = _run_one(attack, text, label)
    rec = _record(result, label, time.perf_counter() - t0, label_names, diff=True)
    rec["recipe"] = recipe
    return rec


# ---------------------------------------------------------------- a dataset
def select_indices(num_texts: int, n: int | None, seed: int) -> list[int]:
    """A fixed, seed-chosen subset: the first n of a seeded permutation (n=4 extends n=2)."""
    order = list(range(num_texts))
    random.Random(seed).shuffle(order)
    return order if not n or n >= num_texts else order[:n]


def read_records(out_dir: str | Path) -> list[dict]:
    """Records written so far (a half-written last line from a kill is ignored)."""
    path = Path(out_dir) / RECORDS
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def summarize(records: list[dict], total: int | None = None) -> dict:
    n = total if total is not None else len(records)
    succ = [r for r in records if r["result"] == "successful"]
    fail = [r for r in records if r["result"] == "failed"]
    skip = [r for r in records if r["result"] == "skipped"]
    attacked = succ + fail
    done = len(records)
    return {
        "num_examples": done, "successful": len(succ), "failed": len(fail), "skipped": len(skip),
        "clean_accuracy": 1 - len(skip) / done if done else None,
        "accuracy_under_attack": len(fail) / done if done else None,
        "attack_success_rate": len(succ) / len(attacked) if attacked else None,
        "avg_perturbed_word_pct": sum(r["perturbed_word_pct"] for r in succ) / len(succ) if succ else None,
        "avg_num_words": sum(r["num_words"] for r in records) / done if done else None,
        "avg_queries": sum(r["num_queries"] for r in attacked) / len(attacked) if attacked else None,
        "avg_seconds": sum(r["seconds"] for r in records) / done if done else None,
        "complete": done >= n,
    }


def attack_dataset(model, tokenizer, texts: list[str], labels: list[int], recipe: str = "deepwordbug",
                   n: int | None = 100, seed: int = 0, query_budget: int | float | None = 2000,
                   max_perturb_fraction: float | None = 0.3, out_dir: str | Path | None = None,
                   progress: Callable[[int, int, float | None], None] | None = None,
                   label_names: list[str] | None = None, resume: bool = True, seed_torch: bool = True) -> dict:
    """Attack n seed-chosen examples of (texts, labels); returns the summary (see module doc).

    Each finished example is appended to out_dir/records.jsonl at once, with its dataset "index".
    Calling again with the same out_dir skips examples already recorded (resume), provided recipe,
    seed, query budget and perturbation cap are the same (otherwise the folder is started afresh).
    progress(done, total, eta_seconds) is called before the first and after every example; it may
    raise (e.g. KeyboardInterrupt) to stop: finished records stay on disk."""
    if len(texts) != len(labels):
        raise AttackError(f"{len(texts)} texts but {len(labels)} labels")
    if not texts:
        raise AttackError("no examples to attack")
    rec = get_recipe(recipe)
    ok, reason = rec.available()
    if not ok:
        from .recipes import AttackUnavailable

        raise AttackUnavailable(f"recipe {recipe!r} is unavailable: {reason}")
    indices = select_indices(len(texts), n, seed)
    total = len(indices)
    meta = {"recipe": recipe, "seed": seed, "query_budget": query_budget,
            "max_perturb_fraction": max_perturb_fraction, "num_texts": len(texts)}
    out = Path(out_dir) if out_dir else None
    done_records: dict[int, dict] = {}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        meta_path = out / META
        old_meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else None
        if resume and old_meta == meta:
            done_records = {r["index"]: r for r in read_records(out) if "index" in r}
        elif (out / RECORDS).is_file():  # other settings or --fresh: keep the earlier records, never delete them
            stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime((out / RECORDS).stat().st_mtime))
            (out / RECORDS).rename(out / f"records-{stamp}-{os.urandom(3).hex()}.jsonl")
        meta_path.write_text(json.dumps(meta, indent=1), encoding="utf-8")
    resumed = sum(1 for i in indices if i in done_records)
    todo = [i for i in indices if i not in done_records]

    t_start = time.perf_counter()
    new_seconds = 0.0
    if progress:
        progress(resumed, total, None)
    attack = get_attack(model, tokenizer, recipe, query_budget, max_perturb_fraction) if todo else None
    fh = (out / RECORDS).open("a", encoding="utf-8") if out is not None else None
    try:
        for k, idx in enumerate(todo, start=1):
            seed_all(seed * 1_000_003 + idx, seed_torch)  # per-example randomness independent of resume order
            t0 = time.perf_counter()
            result = _run_one(attack, texts[idx], int(labels[idx]))
            r = _record(result, int(labels[idx]), time.perf_counter() - t0, label_names, diff=False)
            r = {"index": idx, **r}
            new_seconds += r["seconds"]
            done_records[idx] = r
            if fh is not None:
                fh.write(json.dumps(r) + "\n")
                fh.flush()
            if progress:
                left = len(todo) - k
                progress(resumed + k, total, new_seconds / k * left)
    finally:
        if fh is not None:
            fh.close()
    records = [done_records[i] for i in indices if i in done_records]
    summary = summarize(records, total)
    summary.update({
        "recipe": recipe, "seed": seed, "n_requested": n, "query_budget": query_budget,
        "max_perturb_fraction": max_perturb_fraction, "label_names": label_names,
        "resumed": resumed, "seconds": round(time.perf_counter() - t_start, 3),
        "records": str(out / RECORDS) if out is not None else None,
        "created": time.time(),
        "examples": [{k: r[k] for k in ("index", "original_text", "perturbed_text", "label",
                                        "original_prediction", "perturbed_prediction")}
                     for r in records if r["result"] == "successful"][:5],
    })
    return summary
