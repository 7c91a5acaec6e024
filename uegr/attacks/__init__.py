"""Offline adversarial attacks (TextAttack 0.3.11): recipe registry, runner and CLI helper.

    from uegr.attacks import RECIPES, get_recipe, list_recipes, attack_dataset, attack_sentence
TextAttack itself is imported only when an attack is built (it takes ~4.5 s).
"""

from .recipes import (
    DEFAULT_RECIPE,
    RECIPES,
    AttackError,
    AttackUnavailable,
    Recipe,
    get_recipe,
    list_recipes,
    wordnet_status,
)
from .runner import (
    ModelWrapper,
    attack_dataset,
    attack_sentence,
    clear_attack_cache,
    get_attack,
    read_records,
    select_indices,
    summarize,
    word_diff,
)

__all__ = [
    "DEFAULT_RECIPE", "RECIPES", "AttackError", "AttackUnavailable", "ModelWrapper", "Recipe", "attack_dataset",
    "attack_sentence", "clear_attack_cache", "get_attack", "get_recipe", "list_recipes", "read_records",
    "select_indices", "summarize", "word_diff", "wordnet_status",
]
