"""Mean pooling: the default for MiniLM (a sentence encoder trained with mean pooling)."""

import pytest
import torch

from uegr.config import ConfigError, ModelConfig, build_config
from uegr.methods import build_method
from uegr.methods.base import StepContext
from uegr.modeling_uegr import UEGRBertForSequenceClassification
from uegr.models import (
    ModelLoadError,
    install_pooling,
    load_checkpoint,
    load_model,
    resolve_pooling,
    save_checkpoint,
)


def _tiny_mean():
    model, tok = load_model(ModelConfig(name="tiny-bert", pooling="mean"), 2, ["neg", "pos"])
    return model.eval(), tok


def test_pooled_output_is_the_masked_mean_of_the_last_hidden_states():
    model, tok = _tiny_mean()
    enc = tok(["a fine film", "a long, dull and badly acted film"], padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model.bert(**enc)
        logits = model(**enc).logits
    mask = enc["attention_mask"].unsqueeze(-1).float()
    expected = (out.last_hidden_state * mask).sum(1) / mask.sum(1)
    assert out.pooler_output is None  # no [CLS] pooler at all
    assert torch.allclose(logits, model.classifier(expected), atol=1e-6)
    assert enc["attention_mask"][0].sum() < enc["attention_mask"].shape[1]  # the first row is padded


def test_padding_does_not_change_the_prediction():
    model, tok = _tiny_mean()
    padded = tok(["a fine film", "a long, dull and badly acted film"], padding=True, return_tensors="pt")
    alone = tok(["a fine film"], return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(model(**padded).logits[0], model(**alone).logits[0], atol=1e-5)


def test_checkpoint_reloads_with_the_same_head(tmp_path):
    model, tok = _tiny_mean()
    save_checkpoint(model, tok, tmp_path)
    again, _ = load_checkpoint(tmp_path)
    assert isinstance(again, UEGRBertForSequenceClassification) and again.bert.pooler is None
    enc = tok(["one", "two words here"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(model(**enc).logits, again.eval()(**enc).logits, atol=1e-6)


def test_uegr_step_trains_through_the_mean_head():
    model, tok = load_model(ModelConfig(name="tiny-bert", pooling="mean"), 2)
    method = build_method(build_config(overrides=["method.k=2"]).method, seed=0)
    method.prepare(model)
    batch = dict(tok(["good", "bad movie", "fine", "awful film indeed"], padding=True, return_tensors="pt"))
    batch["labels"] = torch.tensor([1, 0, 1, 0])
    ctx = StepContext(model=model, raw_model=model, backward=lambda loss, **kw: loss.backward(**kw))
    parts = method.step(batch, ctx)
    assert parts["adv"] > 0 and parts["js"] >= 0
    assert model.classifier.weight.grad.abs().sum() > 0
    assert model.bert.encoder.layer[0].attention.self.query.weight.grad.abs().sum() > 0


def test_auto_means_mean_for_minilm_only_and_bad_values_name_the_field():
    assert resolve_pooling("minilm", "auto") == "mean"
    assert resolve_pooling("tiny-bert", "auto") == "cls"
    assert resolve_pooling("bert-base-uncased", "cls") == "cls"
    with pytest.raises(ConfigError, match="model.pooling"):
        build_config(overrides=["model.pooling=max"])


def test_mean_on_a_model_without_a_pooler_is_a_clear_error():
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    model = DistilBertForSequenceClassification(DistilBertConfig(vocab_size=100, dim=16, n_layers=1, n_heads=2,
                                                                 hidden_dim=32))
    with pytest.raises(ModelLoadError, match="model.pooling"):
        install_pooling(model, "mean")
