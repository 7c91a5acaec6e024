"""Tiny random sequence classifiers of each supported family (BERT, RoBERTa, DistilBERT, ELECTRA): 2 layers,
hidden size 32, MiniLM's vocabulary, 2 labels. Seed torch before calling for fixed weights."""

from __future__ import annotations


def tiny_classifier(family: str, roberta_positions: int = 514, **config):
    """`config`: extra settings for the family's config class (attn_implementation, id2label, ...)."""
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        DistilBertConfig,
        DistilBertForSequenceClassification,
        ElectraConfig,
        ElectraForSequenceClassification,
        RobertaConfig,
        RobertaForSequenceClassification,
    )

    common = {"vocab_size": 30522, "num_labels": 2, **config}
    blocks = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
    if family == "bert":
        return BertForSequenceClassification(BertConfig(**blocks, **common))
    if family == "roberta":
        return RobertaForSequenceClassification(RobertaConfig(**blocks, max_position_embeddings=roberta_positions,
                                                              **common))
    if family == "distilbert":
        return DistilBertForSequenceClassification(DistilBertConfig(dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                                                                    **common))
    if family == "electra":
        return ElectraForSequenceClassification(ElectraConfig(embedding_size=16, **blocks, **common))
    raise ValueError(f"unknown family {family!r}")
