"""Run as a script WITHOUT uegr: class probabilities of checkpoint folders through plain transformers
(AutoModelForSequenceClassification, pipeline) and TextAttack's HuggingFaceModelWrapper, and what
happens when a folder that ships code is loaded without trust_remote_code. Prints one JSON object."""

import json
import sys

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline


def probs_of(folder: str, texts: list[str], remote: bool) -> dict:
    out = {}
    kw = {"trust_remote_code": True} if remote else {}
    model = AutoModelForSequenceClassification.from_pretrained(folder, **kw).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    with torch.no_grad():
        enc = tok(texts, padding=True, return_tensors="pt")
        out["automodel"] = model(**enc).logits.softmax(-1).tolist()
    clf = pipeline("text-classification", model=folder, top_k=None, **kw)
    out["pipeline"] = [[next(d["score"] for d in row if d["label"] == lab) for lab in labels] for row in clf(texts)]
    from textattack.models.wrappers import HuggingFaceModelWrapper

    with torch.no_grad():
        out["textattack"] = torch.as_tensor(HuggingFaceModelWrapper(model, tok)(texts)).softmax(-1).tolist()
    out["class"] = type(model).__name__
    return out


def main():
    spec = json.loads(sys.argv[1])
    result = {}
    for folder, remote in spec["folders"]:
        entry = {}
        if remote:  # must refuse without trust_remote_code, before any model is built
            try:
                AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=False)
                entry["without_remote_code"] = "loaded"
            except ValueError as exc:
                entry["without_remote_code"] = str(exc)
        entry.update(probs_of(folder, spec["texts"], remote))
        result[folder] = entry
    assert "uegr" not in sys.modules  # nothing of the project was used
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
