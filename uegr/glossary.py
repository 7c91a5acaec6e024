"""The studio's glossary: one source for every term the pages, the CLI help and the reports use.

`TERMS` maps a key (what pages link by) to a title, a one-line summary and a longer explanation in
Markdown. Layer-part names are the labels `uegr.models.matrix_kind` gives parameters (query, ffn_in, ...).
"""

from __future__ import annotations

import re

# key -> (title, one line, longer Markdown). Keys are lower-case, '-' separated: they become URL anchors.
_RAW: dict[str, tuple[str, str, str]] = {
    "fisher-saliency": (
        "Fisher saliency",
        "How much a weight matters for the loss, estimated as the running mean of its squared gradient g².",
        "The diagonal of the empirical Fisher information: for each weight, an exponential moving average "
        "(decay `method.saliency_decay`, 0.9) of g² over steps. UEGR's selective update keeps the weights with "
        "the largest saliency (CHILD-TUNING, RoAST). The alternatives are `taylor` (|θ·g|, the first-order "
        "change of the loss if the weight were zeroed) and `grad` (|g|)."),
    "js-divergence": (
        "JS divergence (generalised Jensen-Shannon)",
        "How much K probability distributions disagree: H(M) − mean H(P_k), with M their mean; 0 when they agree.",
        "For the K sub-models' predicted distributions P_1..P_K and their mixture M = (1/K)·Σ P_k, "
        "L_JS = H(M) − (1/K)·Σ H(P_k). It is ≥ 0, equals 0 exactly when all P_k are equal, and is at most "
        "log K. With K = 1 there is nothing to compare, so L_JS = 0 — unless `method.js_include_clean` adds the "
        "clean pass as one more member (the quick-demo preset does this: K = 1 + clean pass gives two views)."),
    "linf-per-token": (
        "l∞ per token (linf_token)",
        "Each token's perturbation δ_t is bounded separately: its largest coordinate is at most ε.",
        "The adversary moves every real token's embedding by δ_t = ε·g_t/‖g_t‖∞ (RoAST), so ‖δ_t‖∞ = ε for "
        "each token and padding is untouched. The alternative `l2` bounds the whole sentence's δ by ‖δ‖₂ ≤ ε "
        "(FreeLB), which lets a few sensitive tokens take most of the budget."),
    "keep-ratio": (
        "Keep ratio",
        "The share of encoder weights the selective update lets change at each step (0.3 = the top 30 %).",
        "After the backward pass, weights are ranked by saliency; the top `method.keep_ratio` keep their "
        "gradient, the rest get zero (they still shrink by weight decay unless `freeze_moments` is on). "
        "`mask_scope=global` ranks all encoder matrices together, `per_tensor` keeps the same share of each. "
        "Embeddings and the classifier head are always updated."),
    "mask-iou": (
        "Mask IoU",
        "Intersection over union of the kept weights of two consecutive masks: 1 = the same weights stay trainable.",
        "At every mask refresh the updater counts, per tensor, the weights kept by both the new and the "
        "previous mask (intersection) and by either (union). IoU near 1 means the selective update keeps "
        "training the same sub-network; low IoU means the trainable set wanders."),
    "eps-sharpness": (
        "ε-sharpness",
        "How much the loss can rise within a small box around the weights, in % of (1 + loss) (Keskar et al. 2017).",
        "100·(max_{z∈C} L(θ+z) − L(θ)) / (1 + L(θ)), with C a box of half-width ε·(|θ|+1) around the weights, "
        "maximised by a few projected gradient-ascent steps (so the value is a lower bound). Flatter minima "
        "give smaller values. SAM sharpness is the same idea with an l2 ball of radius ρ and one ascent step."),
    "filter-normalisation": (
        "Filter normalisation",
        "Random directions for loss-landscape plots are rescaled row by row to the weights' own norms (Li et al. 2018).",
        "A random direction d is drawn for every weight matrix; each row (filter) of d is rescaled to the norm "
        "of the same row of θ. Plots of L(θ + α·d) are then comparable between models whose weights have "
        "different scales. Biases and LayerNorm vectors are left out by default."),
    "adversarial-perturbation": (
        "Adversarial perturbation (δ, ε)",
        "A small change to the token embeddings in the direction that raises the loss most; ε bounds its size.",
        "UEGR takes one 'free' step from the clean pass's embedding gradient (FreeLB / RoAST): "
        "δ = ε·g/‖g‖ under the chosen norm; `adv_steps` > 1 adds projected ascent steps of size `adv_lr`. "
        "The K sub-models see the perturbed embeddings. With the adversary off they see the clean ones."),
    "sub-models": (
        "Sub-models (K, adaptive dropout)",
        "The same weights run K times with K different dropout rates: K slightly different networks.",
        "Rates are drawn from [p_min, p_max] each step (`rate_rule=uniform`), evenly spaced (`grid`), "
        "annealed over training (`schedule`), or steered to a target JS (`feedback`). The K passes run as one "
        "forward over a K-times repeated batch. Their mean cross-entropy is L_adv; their disagreement, L_JS."),
    "selective-update": (
        "Selective update",
        "Stage 2 of UEGR: only the most salient encoder weights are updated at each step.",
        "Saliency → mask (refreshed every `refresh_every` steps after `mask_warmup`) → masked gradients → "
        "clipping → the optimizer. It does not change the loss of the step, only which weights move."),
    "freeze-moments": (
        "Freeze moments",
        "Masked-out weights are frozen exactly: no gradient, no weight decay, no Adam-moment drift (ROSE).",
        "Without it a frozen weight's gradient is zero but AdamW still applies weight decay and its moving "
        "averages keep moving it on later steps."),
    # ---- layer parts (labels of uegr.models.matrix_kind)
    "query": ("query", "Attention's query projection W_Q of an encoder layer.",
              "Maps each token's hidden state to the query vector that is matched against every key."),
    "key": ("key", "Attention's key projection W_K.",
            "Maps each token to the key that queries are compared with (scaled dot product)."),
    "value": ("value", "Attention's value projection W_V.",
              "Maps each token to the value that attention weights average into the output."),
    "attn_out": ("attn_out", "The attention block's output projection (attention.output.dense).",
                 "Mixes the heads' concatenated outputs back to the hidden size before the residual connection."),
    "ffn_in": ("ffn_in", "The feed-forward block's first matrix (intermediate.dense), hidden → 4×hidden.",
               "Expands each token's hidden state (384 → 1536 in MiniLM) before the GELU; the largest matrices "
               "of a layer with ffn_out."),
    "ffn_out": ("ffn_out", "The feed-forward block's second matrix (output.dense), 4×hidden → hidden.",
                "Projects the expanded activations back to the hidden size before the residual connection."),
    "attn_ln": ("attn_ln", "The LayerNorm after the attention block (its gain and bias vectors).",
                "Normalises each token after attention + residual. Vectors, so they have no 2-D map."),
    "ffn_ln": ("ffn_ln", "The LayerNorm after the feed-forward block.",
               "Normalises each token after the feed-forward block + residual."),
    "bias": ("*_bias", "A layer part's bias vector (query_bias, ffn_in_bias, ...).",
             "Biases are ranked with the matrices by the selective update but get no weight decay."),
}

TERMS: dict[str, dict[str, str]] = {k: {"key": k, "title": t, "short": s, "body": b} for k, (t, s, b) in _RAW.items()}

_ALIASES = {"fisher": "fisher-saliency", "saliency": "fisher-saliency", "js": "js-divergence", "l_js": "js-divergence",
            "linf_token": "linf-per-token", "l_inf per token": "linf-per-token", "keep_ratio": "keep-ratio",
            "iou": "mask-iou", "ε-sharpness": "eps-sharpness", "sharpness": "eps-sharpness",
            "filter normalization": "filter-normalisation", "filter_normalize": "filter-normalisation",
            "epsilon": "adversarial-perturbation", "eps": "adversarial-perturbation", "ε": "adversarial-perturbation",
            "k": "sub-models", "dropout": "sub-models", "freeze_moments": "freeze-moments"}


def lookup(term: str) -> dict[str, str]:
    """The entry for a key, alias or layer-part label ('ffn_in_bias' finds 'bias'); KeyError if unknown."""
    t = term.strip().lower()
    t = _ALIASES.get(t, t).replace(" ", "-")
    if t in TERMS:
        return TERMS[t]
    if t.endswith("_bias"):
        return TERMS["bias"]
    raise KeyError(f"no glossary entry for {term!r}; known: {', '.join(TERMS)}")


def anchor(term: str) -> str:
    """The entry's anchor on the Glossary page."""
    return re.sub(r"[^a-z0-9_-]", "", lookup(term)["key"])


def as_markdown() -> str:
    """The whole glossary as Markdown (the report appendix and the docs use it)."""
    return "\n\n".join(f"**{e['title']}** — {e['short']} {e['body']}" for e in TERMS.values())
