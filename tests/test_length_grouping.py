"""data.group_by_length: less padding, each example exactly once per epoch, deterministic."""

import torch

from uegr.config import build_config
from uegr.trainer import Trainer, length_grouped


def test_length_grouped_is_a_permutation_with_sorted_batches():
    lengths = [int(x) for x in torch.randint(3, 60, (1000,), generator=torch.Generator().manual_seed(0))]
    order = torch.randperm(1000, generator=torch.Generator().manual_seed(1)).tolist()
    grouped = length_grouped(order, lengths, batch=32, gen=torch.Generator().manual_seed(2), chunk_batches=10)
    assert sorted(grouped) == list(range(1000))
    batches = [grouped[i:i + 32] for i in range(0, 1000, 32)]
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    plain = sum(max(lengths[i] for i in order[j:j + 32]) * len(order[j:j + 32]) for j in range(0, 1000, 32))
    assert padded < 0.8 * plain
    assert len(batches[-1]) == 1000 % 32  # the one short batch comes last


def _epoch_batches(group: bool):
    cfg = build_config("tiny", overrides=[f"data.group_by_length={str(group).lower()}", "data.max_train_examples=64",
                                          "optim.batch_size=8"])
    tr = Trainer(cfg)
    it = tr.batches()
    return [next(it)[1] for _ in range(tr.steps_per_epoch)]


def test_trainer_epoch_covers_every_example_once_with_less_padding():
    grouped, plain = _epoch_batches(True), _epoch_batches(False)
    assert len(grouped) == len(plain) == 8

    def rows(batches):
        return sorted(tuple(r[m.bool()].tolist()) for b in batches for r, m in zip(b["input_ids"], b["attention_mask"]))

    assert rows(grouped) == rows(plain)  # the same examples, once each
    pad = sum(int((b["attention_mask"] == 0).sum()) for b in grouped)
    assert pad < sum(int((b["attention_mask"] == 0).sum()) for b in plain)
    again = _epoch_batches(True)
    assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(grouped, again))
