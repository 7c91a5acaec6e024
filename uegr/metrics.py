"""Classification metrics, computed by scikit-learn."""

from __future__ import annotations

import warnings


def classification_report(preds: list[int], labels: list[int], num_labels: int) -> dict:
    """accuracy and macro-F1 over all `num_labels` classes (a class never seen or predicted counts as F1 0);
    for two classes also MCC and the F1 of class 1."""
    from sklearn.metrics import (  # ~0.3 s to import: only when used
        accuracy_score,
        f1_score,
        matthews_corrcoef,
    )

    if not labels:
        return {"accuracy": 0.0, "macro_f1": 0.0, **({"mcc": 0.0, "f1": 0.0} if num_labels == 2 else {})}
    classes = list(range(max(num_labels, 1)))
    out = {"accuracy": float(accuracy_score(labels, preds)),
           "macro_f1": float(f1_score(labels, preds, labels=classes, average="macro", zero_division=0))}
    if num_labels == 2:
        with warnings.catch_warnings():  # one class only in both lists: MCC is 0, without a warning
            warnings.simplefilter("ignore", UserWarning)
            out["mcc"] = float(matthews_corrcoef(labels, preds))
        out["f1"] = float(f1_score(labels, preds, labels=[1], average="macro", zero_division=0))
    return out
