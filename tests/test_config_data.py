"""Config validation and data loading: clear errors naming the field/file and the fix."""

import json

import pytest

from uegr.config import Config, ConfigError, DataConfig, ModelConfig, build_config, set_field, validate
from uegr.data import DataError, load_dataset
from uegr.models import ModelLoadError, load_model


@pytest.mark.parametrize("override,field", [
    ("method.k=0", "method.k"),
    ("method.k=three", "method.k"),
    ("method.keep_ratio=1.5", "method.keep_ratio"),
    ("method.rate_rule=sometimes", "method.rate_rule"),
    ("method.p_min=0.5", "method.p_min"),  # above p_max 0.3
    ("optim.lr=-1", "optim.lr"),
    ("runtime.device=tpu", "runtime.device"),
    ("method.nope=1", "method.nope"),
    ("nosection.k=1", "nosection.k"),
    ("optim.batch_size=2.5", "optim.batch_size"),
    ("method.dropout_targets=hidden,brain", "method.dropout_targets"),
])
def test_bad_values_name_the_field(override, field):
    with pytest.raises(ConfigError) as err:
        build_config("tiny", None, [override])
    assert err.value.field == field
    assert field in str(err.value)


def test_schema_drives_validation_and_the_readme_table():
    """Every range and choice of the schema (FIELD_META) is what validate() enforces, with the message the
    schema gives; the method choices are the method registry; README.md's table is the generated one."""
    from pathlib import Path

    from uegr import config as C
    from uegr.methods import REGISTRY

    assert C.METHODS == tuple(REGISTRY) == C.choices_of("method.name")
    checked = 0
    for dotted, meta in C.FIELD_META.items():
        low, high = meta["low"], meta["high"]
        ints = C.field_docs()[dotted.split(".")[0]][dotted.split(".")[1]]["type"] == "int"
        bad = []
        if low is not None:
            bad.append(low if meta["low_open"] else low - 1)
            if not meta["low_open"]:
                build_config("tiny", None, [f"{dotted}={low}"] + (["optim.max_steps=6"] if dotted == "optim.epochs" else [])
                             + (["method.p_min=0"] if dotted == "method.p_max" else []))
        if high is not None:
            bad.append(high if meta["high_open"] else (high + 1 if ints else high * 1.01 + 0.01))
        allowed = [str(low), str(high) if high is not None else "inf"]
        if C.choices_of(dotted) is not None:
            bad.append("no-such-choice")
            allowed = [", ".join(C.choices_of(dotted))]
        for value in bad:
            with pytest.raises(ConfigError) as err:
                build_config("tiny", None, [f"{dotted}={value}"])
            assert err.value.field == dotted and all(a in err.value.allowed for a in allowed), str(err.value)
            checked += 1
    assert checked > 60
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert C.readme_with_table(readme) == readme, "README.md's config table is stale: python -m uegr.config --readme"


def test_overrides_and_file_and_round_trip(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("method:\n  k: 4\n  rate_rule: grid\noptim:\n  lr: 3.0e-5\n")
    cfg = build_config("quick-demo", str(path), ["method.lambda_js=0.5", "method.adv_enabled=false",
                                                 "method.dropout_targets=hidden,attention"])
    assert (cfg.method.k, cfg.method.rate_rule, cfg.optim.lr) == (4, "grid", 3e-5)
    assert cfg.method.lambda_js == 0.5 and cfg.method.adv_enabled is False
    assert cfg.method.dropout_targets == ["hidden", "attention"]
    again = Config.from_dict(json.loads(cfg.to_json()))
    assert again == cfg


def test_bad_config_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid YAML/JSON"):
        build_config(None, str(path), [])
    with pytest.raises(ConfigError, match="does not exist"):
        build_config(None, str(tmp_path / "missing.yaml"), [])


def test_defaults_are_valid_and_adv_eps_default_per_norm():
    cfg = validate(Config())
    assert cfg.method.resolved_adv_eps() == 0.1
    set_field(cfg, "method.adv_norm", "l2")
    assert cfg.method.resolved_adv_eps() == 1.0


def test_builtin_data_is_stratified_and_deterministic():
    a = load_dataset(DataConfig(source="builtin"))
    b = load_dataset(DataConfig(source="builtin"))
    assert a.label_names == ["negative", "positive"]
    assert a.splits["train"].texts[:5] == b.splits["train"].texts[:5]
    n = sum(len(s) for s in a.splits.values())
    assert n > 12000
    for split in a.splits.values():
        pos = sum(split.labels) / len(split)
        assert 0.55 < pos < 0.6  # 7,403 fresh / 12,808


@pytest.mark.parametrize("name,n_labels", [("sst2", 2), ("rt_polarity", 2), ("ag_news", 4), ("trec", 6),
                                           ("subj", 2), ("cr", 2), ("imdb", 2), ("mrpc", 2)])
def test_named_datasets_load(data_dir, name, n_labels):
    ds = load_dataset(DataConfig(source=name))
    assert ds.num_labels == n_labels
    assert {"train", "validation", "test"} <= set(ds.splits)
    for split in ds.splits.values():
        assert len(split) > 0 and max(split.labels) < n_labels and all(t for t in split.texts)
    if name == "sst2":
        assert [len(ds.splits[s]) for s in ("train", "validation", "test")] == [67349, 872, 1821]
    if name == "mrpc":
        assert ds.splits["train"].pairs is not None
    if name == "rt_polarity":
        assert sum(len(s) for s in ds.splits.values()) == 10662  # cp1252 0x85 did not split lines


def _csv(tmp_path, text, name="d.csv", encoding="utf-8"):
    p = tmp_path / name
    p.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return str(p)


def test_file_source_with_column_and_label_mapping(tmp_path):
    src = _csv(tmp_path, "review,stars\n" + "".join(f"great film {i},pos\nawful mess {i},neg\n" for i in range(20)))
    ds = load_dataset(DataConfig(source=src, text_column="review", label_column="stars"))
    assert ds.label_names == ["neg", "pos"]
    assert len(ds.splits["train"]) + len(ds.splits["validation"]) == 40
    jl = tmp_path / "d.jsonl"
    jl.write_text("".join(json.dumps({"s1": f"a {i}", "s2": f"b {i}", "y": i % 2}) + "\n" for i in range(10)))
    ds = load_dataset(DataConfig(source=str(jl), text_column="s1", text_pair_column="s2", label_column="y"))
    assert ds.splits["train"].pairs is not None and ds.num_labels == 2


@pytest.mark.parametrize("content,encoding,message", [
    ("sentence,label\nhello,1\n", "utf-8", "column 'text'"),
    ("text,label\nhello,1.5\nbye,0\n", "utf-8", "non-integer"),
    ("", "utf-8", "empty"),
    ("text,label\ncaf\u00e9 \u2026,1\n", "cp1252", "not UTF-8"),
    ("text,label\n,1\n", "utf-8", "empty text"),
])
def test_bad_files_give_clear_messages(tmp_path, content, encoding, message):
    src = _csv(tmp_path, content.encode(encoding))
    with pytest.raises(DataError, match=message) as err:
        load_dataset(DataConfig(source=src))
    assert "d.csv" in str(err.value)


def test_unknown_source_and_missing_data_root(monkeypatch):
    with pytest.raises(DataError, match="not 'builtin'"):
        load_dataset(DataConfig(source="no-such-thing"))
    monkeypatch.delenv("UEGR_DATA_DIR", raising=False)
    with pytest.raises(DataError, match="UEGR_DATA_DIR"):
        load_dataset(DataConfig(source="sst2"))


def test_hub_dataset_offline_is_explained():
    with pytest.raises(DataError, match="hub is not reachable"):
        load_dataset(DataConfig(source="hf:glue:sst2"))


def test_unknown_model_is_a_clear_message():
    with pytest.raises(ModelLoadError, match="not a local folder") as err:
        load_model(ModelConfig(name="no-such-org/no-such-model"), 2)
    assert "minilm" in str(err.value)


def test_minilm_loads_offline_with_new_head():
    model, tok = load_model(ModelConfig(name="minilm"), 3, ["a", "b", "c"])
    assert model.config.num_hidden_layers == 6 and model.config.hidden_size == 384
    assert model.config.id2label[2] == "c"
    assert tok("hello world")["input_ids"][0] == tok.cls_token_id
