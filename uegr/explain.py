"""Token attributions with Captum's LayerIntegratedGradients on the embedding layer.

The layer is `uegr.models.embeddings_module(model)` (the module whose output is e = E(x)), so it works
for any Hugging Face encoder classifier, not only BERT names. The baseline keeps the special tokens
([CLS], [SEP], ...) and replaces every other token by [PAD]; the attention mask is the input's.
The attributed quantity is the softmax probability of the target class, so by completeness
sum(raw_scores) ~= probability(x) - probability(baseline), up to the reported convergence delta.
"""

from __future__ import annotations

import time

import torch

from .models import embeddings_module, model_mode


def _forward_fn(model, target_is_prob: bool = True):
    def forward(input_ids, attention_mask, token_type_ids=None):
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        logits = model(**kwargs).logits.float()
        return torch.softmax(logits, -1) if target_is_prob else logits

    return forward


def _merge_words(text: str, text_pair: str | None, enc, tokens: list[str], raw: list[float]):
    """Sum word-piece attributions into words (fast tokenizers: word_ids + offsets); special tokens dropped."""
    word_ids = enc.word_ids(0)
    seq_ids = enc.sequence_ids(0)
    offsets = enc["offset_mapping"][0].tolist()
    words: list[str] = []
    scores: list[float] = []
    word_spans: list[tuple[int, int, str]] = []
    last = None
    for k, wid in enumerate(word_ids):
        if wid is None:
            last = None
            continue
        key = (seq_ids[k], wid)
        source = text if seq_ids[k] == 0 else (text_pair or "")
        start, end = offsets[k]
        if key == last:
            s0 = word_spans[-1][0]
            word_spans[-1] = (s0, end, source)
            words[-1] = source[s0:end]
            scores[-1] += raw[k]
        else:
            word_spans.append((start, end, source))
            words.append(source[start:end] or tokens[k])
            scores.append(raw[k])
        last = key
    return words, scores


def attribute(model, tokenizer, text: str, target: int | None = None, steps: int = 50, words: bool = False,
              text_pair: str | None = None, internal_batch_size: int | None = None, max_length: int = 128,
              label_names: list[str] | None = None) -> dict:
    """Integrated-gradients attribution of the target-class probability to each token (or word).

    Returns dict(tokens, scores (signed, normalised so max |score| = 1), raw_scores (sum ~= f(x) - f(x')),
    target, target_label, probability (of the target at x), baseline_probability, delta (convergence
    delta), steps, seconds, words). target None = the predicted class."""
    from captum.attr import LayerIntegratedGradients

    t0 = time.perf_counter()
    device = next(model.parameters()).device
    fast = getattr(tokenizer, "is_fast", False)
    enc = tokenizer(text, text_pair, truncation=True, max_length=max_length, return_tensors="pt",
                    return_special_tokens_mask=True, return_offsets_mapping=fast and words)
    input_ids = enc["input_ids"].to(device)
    attention_mask = enc["attention_mask"].to(device)
    token_type_ids = enc["token_type_ids"].to(device) if "token_type_ids" in enc else None
    special = enc["special_tokens_mask"].to(device).bool()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    baseline_ids = torch.where(special, input_ids, torch.full_like(input_ids, pad_id))
    forward = _forward_fn(model)
    extra = (attention_mask, token_type_ids) if token_type_ids is not None else (attention_mask,)
    with model_mode(model, training=False):
        with torch.no_grad():
            probs = forward(input_ids, *extra)[0]
            base_probs = forward(baseline_ids, *extra)[0]
        if target is None:
            target = int(probs.argmax())
        if not 0 <= target < probs.numel():
            raise ValueError(f"target {target} is out of range for {probs.numel()} classes")
        lig = LayerIntegratedGradients(forward, embeddings_module(model))
        attributions, delta = lig.attribute(
            inputs=input_ids, baselines=baseline_ids, additional_forward_args=extra, target=target,
            n_steps=steps, internal_batch_size=internal_batch_size or steps, return_convergence_delta=True)
    raw = attributions.sum(-1)[0].detach().float().cpu().tolist()
    tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"][0].tolist())
    if words:
        if not fast:
            raise ValueError("words=True needs a fast tokenizer (word_ids); use words=False")
        tokens, raw = _merge_words(text, text_pair, enc, tokens, raw)
    peak = max((abs(x) for x in raw), default=0.0)
    scores = [x / peak if peak > 0 else 0.0 for x in raw]
    id2label = getattr(model.config, "id2label", None) or {}
    names = label_names or [str(id2label.get(i, i)) for i in range(probs.numel())]
    return {
        "tokens": tokens, "scores": scores, "raw_scores": raw, "target": target,
        "target_label": names[target] if target < len(names) else str(target),
        "probability": float(probs[target]), "baseline_probability": float(base_probs[target]),
        "delta": float(delta.abs().max()), "steps": steps, "seconds": round(time.perf_counter() - t0, 4),
        "words": words,
    }
