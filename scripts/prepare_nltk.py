"""Build the NLTK data TextAttack needs, offline, inside <repo>/.cache/nltk_data (or $NLTK_DATA).

- corpora/stopwords/english: NLTK's downloader cannot reach its server here, and `import textattack`
  raises LookupError without this file. We write NLTK's English stopword list (179 words) ourselves.
- corpora/wordnet: WordNet 3.0 from the Debian packages wordnet-base + wordnet-sense-index, COPIED
  (NLTK rejects symlinks as a "Security Violation"), plus a generated `lexnames` file (Debian lacks
  it; the table is from lexnames(5WN)). Skipped with a message when the Debian files are absent:
  the PWWS attack then reports itself unavailable.

Idempotent: files are rewritten only when missing or different. Exit code 0 unless writing fails.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# NLTK's own english stopword list (nltk_data corpora/stopwords/english, 179 words).
STOPWORDS = """i me my myself we our ours ourselves you you're you've you'll you'd your yours yourself
yourselves he him his himself she she's her hers herself it it's its itself they them their theirs
themselves what which who whom this that that'll these those am is are was were be been being have has
had having do does did doing a an the and but if or because as until while of at by for with about
against between into through during before after above below to from up down in out on off over under
again further then once here there when where why how all any both each few more most other some such
no nor not only own same so than too very s t can will just don don't should should've now d ll m o re
ve y ain aren aren't couldn couldn't didn didn't doesn doesn't hadn hadn't hasn hasn't haven haven't isn
isn't ma mightn mightn't mustn mustn't needn needn't shan shan't shouldn shouldn't wasn wasn't weren
weren't won won't wouldn wouldn't""".split()

# lexnames(5WN): file number, lexicographer file name, syntactic category (1 noun 2 verb 3 adj 4 adv).
LEXNAMES = [
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact",
    "noun.attribute", "noun.body", "noun.cognition", "noun.communication", "noun.event", "noun.feeling",
    "noun.food", "noun.group", "noun.location", "noun.motive", "noun.object", "noun.person",
    "noun.phenomenon", "noun.plant", "noun.possession", "noun.process", "noun.quantity", "noun.relation",
    "noun.shape", "noun.state", "noun.substance", "noun.time", "verb.body", "verb.change", "verb.cognition",
    "verb.communication", "verb.competition", "verb.consumption", "verb.contact", "verb.creation",
    "verb.emotion", "verb.motion", "verb.perception", "verb.possession", "verb.social", "verb.stative",
    "verb.weather", "adj.ppl",
]
POS_CODE = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}

WORDNET_FILES = [
    "data.adj", "data.adv", "data.noun", "data.verb", "index.adj", "index.adv", "index.noun", "index.verb",
    "adj.exc", "adv.exc", "noun.exc", "verb.exc", "cntlist.rev", "index.sense",
]
OPTIONAL_FILES = ["cntlist", "frames.vrb", "sentidx.vrb", "sents.vrb"]
SOURCE_DIRS = ["/usr/share/wordnet", "/usr/share/wordnet/dict", "/usr/local/share/wordnet", "/usr/lib/wordnet"]


def nltk_data_dir() -> Path:
    env = os.environ.get("NLTK_DATA", "").split(os.pathsep)[0]
    if env:
        return Path(env).expanduser()
    cache = Path(os.environ["UEGR_CACHE"]).expanduser() if os.environ.get("UEGR_CACHE") else REPO / ".cache"
    return cache / "nltk_data"


def lexnames_text() -> str:
    return "".join(f"{i:02d}\t{name}\t{POS_CODE[name.split('.')[0]]}\n" for i, name in enumerate(LEXNAMES))


def _write_if_changed(path: Path, text: str) -> bool:
    if path.is_file() and not path.is_symlink() and path.read_text(encoding="utf-8") == text:
        return False
    if path.is_symlink():
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return True


def _copy_if_changed(src: Path, dst: Path) -> bool:
    if dst.is_symlink():
        dst.unlink()
    if dst.is_file() and dst.stat().st_size == src.stat().st_size:
        return False
    shutil.copyfile(src, dst)  # a real copy: NLTK refuses symlinked corpus files
    return True


def prepare_stopwords(root: Path) -> None:
    path = root / "corpora" / "stopwords" / "english"
    changed = _write_if_changed(path, "\n".join(STOPWORDS) + "\n")
    print(f"[prepare_nltk] stopwords: {path} ({'written' if changed else 'up to date'}, {len(STOPWORDS)} words)")


def find_wordnet_source() -> Path | None:
    for d in SOURCE_DIRS:
        p = Path(d)
        if all((p / f).is_file() for f in WORDNET_FILES):
            return p
    return None


def prepare_wordnet(root: Path) -> bool:
    src = find_wordnet_source()
    if src is None:
        print("[prepare_nltk] WordNet: SKIPPED - the Debian WordNet files were not found (need packages "
              "wordnet-base and wordnet-sense-index: `apt-get install wordnet-base wordnet-sense-index`, "
              "then rerun scripts/setup.sh). The PWWS attack will report itself unavailable.")
        return False
    dst = root / "corpora" / "wordnet"
    if dst.is_symlink():
        dst.unlink()
    dst.mkdir(parents=True, exist_ok=True)
    copied = 0
    for name in WORDNET_FILES + [f for f in OPTIONAL_FILES if (src / f).is_file()]:
        copied += _copy_if_changed(src / name, dst / name)
    copied += _write_if_changed(dst / "lexnames", lexnames_text())
    print(f"[prepare_nltk] WordNet: {dst} from {src} ({copied} files written, others up to date)")
    return True


def verify(root: Path) -> bool:
    os.environ["NLTK_DATA"] = str(root)
    try:
        import nltk

        if str(root) not in nltk.data.path:
            nltk.data.path.insert(0, str(root))
        from nltk.corpus import stopwords, wordnet

        n_stop = len(stopwords.words("english"))
        ok = True
        try:
            syn = wordnet.synsets("good")[:2]
            print(f"[prepare_nltk] check: {n_stop} stopwords; wordnet.synsets('good')[:2] = {syn}")
        except LookupError:
            print(f"[prepare_nltk] check: {n_stop} stopwords; WordNet not available")
            ok = False
        return ok
    except ImportError:
        print("[prepare_nltk] check skipped: nltk is not installed in this Python")
        return False


def main() -> int:
    root = nltk_data_dir()
    root.mkdir(parents=True, exist_ok=True)
    prepare_stopwords(root)
    prepare_wordnet(root)
    verify(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
