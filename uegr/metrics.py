"""Classification metrics without extra dependencies."""

from __future__ import annotations

import math


def confusion(preds: list[int], labels: list[int], n: int) -> list[list[int]]:
    m = [[0] * n for _ in range(n)]
    for p, y in zip(preds, labels):
        m[y][p] += 1
    return m


def classification_report(preds: list[int], labels: list[int], num_labels: int) -> dict:
    n = max(num_labels, 1)
    m = confusion(preds, labels, n)
    total = len(labels) or 1
    acc = sum(m[i][i] for i in range(n)) / total
    f1s = []
    for c in range(n):
        tp = m[c][c]
        fp = sum(m[r][c] for r in range(n)) - tp
        fn = sum(m[c]) - tp
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    out = {"accuracy": acc, "macro_f1": sum(f1s) / n}
    if n == 2:
        tp, tn, fp, fn = m[1][1], m[0][0], m[0][1], m[1][0]
        denom = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
        out["mcc"] = (tp * tn - fp * fn) / denom if denom else 0.0
        out["f1"] = f1s[1]
    return out
