"""Fine-tune the shipped all-MiniLM-L6-v2 on SST-2 with UEGR inside an ordinary Hugging Face script.

    UEGR_DATA_DIR=../shared/data python docs/examples/hf_trainer_sst2.py --train-examples 2000 --out /tmp/minilm-uegr
    # any Trainer feature works unchanged: --grad-accum 2, --bf16, report_to, torchrun / accelerate launch

Everything below is standard `transformers` except two lines: the model comes from `uegr.models.load_model`
(MiniLM with the mean-pooled head it was pretrained for) and the Trainer is `uegr.hf.UEGRTrainer` with a
`MethodConfig`. The saved folder loads anywhere with
`AutoModelForSequenceClassification.from_pretrained(out, trust_remote_code=True)`.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from datasets import Dataset
from transformers import DataCollatorWithPadding, TrainingArguments

from uegr.config import MethodConfig, ModelConfig
from uegr.hf import UEGRTrainer
from uegr.models import load_model


def read_tsv(path: Path, limit: int = 0) -> Dataset:
    rows = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()[1:] if line.strip()]
    rows = rows[:limit] if limit else rows
    return Dataset.from_dict({"text": [r[0].strip() for r in rows], "label": [int(r[1]) for r in rows]})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", default="uegr", help="uegr, rdrop, freelb, childtuning, roast or vanilla")
    ap.add_argument("--k", type=int, default=1)
    ap.add_argument("--train-examples", type=int, default=2000)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--grad-accum", type=int, default=1)
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--out", default="minilm-sst2-uegr")
    args = ap.parse_args()

    data_dir = Path(os.environ.get("UEGR_DATA_DIR", "../shared/data")) / "sst2"
    if not (data_dir / "train.tsv").is_file():
        raise SystemExit(f"SST-2 not found in {data_dir}: set UEGR_DATA_DIR to the folder holding sst2/")
    train, dev = read_tsv(data_dir / "train.tsv", args.train_examples), read_tsv(data_dir / "dev.tsv")

    model, tok = load_model(ModelConfig(name="minilm"), num_labels=2, label_names=["negative", "positive"])
    encode = lambda batch: tok(batch["text"], truncation=True, max_length=64)  # noqa: E731
    train = train.map(encode, batched=True, remove_columns=["text"])
    dev = dev.map(encode, batched=True, remove_columns=["text"])

    training_args = TrainingArguments(
        output_dir=args.out, per_device_train_batch_size=32, per_device_eval_batch_size=64,
        gradient_accumulation_steps=args.grad_accum, learning_rate=2e-4, num_train_epochs=args.epochs,
        warmup_ratio=0.06, weight_decay=0.01, eval_strategy="epoch", save_strategy="no", logging_steps=10,
        bf16=args.bf16, report_to=[], seed=42)
    trainer = UEGRTrainer(
        model=model, args=training_args, train_dataset=train, eval_dataset=dev, processing_class=tok,
        data_collator=DataCollatorWithPadding(tok),
        compute_metrics=lambda p: {"accuracy": float((np.argmax(p.predictions, -1) == p.label_ids).mean())},
        method=MethodConfig(name=args.method, k=args.k, js_include_clean=True, adv_eps=0.05, refresh_every=10))
    trainer.train()
    print(trainer.evaluate())
    trainer.save_model(args.out)  # safetensors + tokenizer + modeling_uegr.py: portable
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
