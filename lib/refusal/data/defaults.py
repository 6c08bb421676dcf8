"""The project's embedded default data (``lib/refusal/default_data/``, written for this project; see its README)."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from refusal.artifacts import sha256_json
from refusal.data.formats import Pair, validate_meta, validate_pairs, validate_prompts
from refusal.data.splits import Splits, split_indices_grouped

__all__ = ["default_pairs", "default_pair_categories", "default_pair_sources", "default_pair_splits",
           "default_harmful_eval", "default_harmful_eval_categories", "default_harmless_eval", "default_refusals",
           "default_independent_harmful", "default_independent_harmless", "default_independent_meta",
           "INDEPENDENT_STYLES", "INDEPENDENT_TOPICS", "dataset_hash", "default_data_path"]

# styles of the independent eval set (see default_data/README.md) and the topic kinds of its harmless side
INDEPENDENT_STYLES = ("long", "roleplay", "embedded", "hypothetical", "casual")
INDEPENDENT_TOPICS = ("sensitive", "ordinary")


def _default(name: str) -> Any:
    ref = resources.files("refusal") / "default_data" / name
    return json.loads(ref.read_text(encoding="utf-8"))


def default_data_path(name: str) -> str:
    return str(resources.files("refusal") / "default_data" / name)


def default_pairs() -> list[Pair]:
    """The project's embedded ``[harmful, safe]`` minimal pairs."""
    return validate_pairs(_default("pairs.json"), default_data_path("pairs.json"))


def default_pair_categories() -> list[str]:
    """Harm category of each default pair (same order)."""
    return list(_default("pairs_categories.json"))


def default_pair_sources() -> list[str]:
    """``"hand"`` or ``"template:<category>:<n>"`` for each default pair."""
    return list(_default("pairs_sources.json"))


def default_pair_splits(seed: int = 0, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)) -> Splits:
    """Train/val/test indices into :func:`default_pairs`; each template's pairs stay in one split."""
    groups = [src if src != "hand" else f"hand:{i}" for i, src in enumerate(default_pair_sources())]
    return split_indices_grouped(groups, seed, fractions)


def default_harmful_eval() -> list[str]:
    """Harmful eval prompts, disjoint from the pairs."""
    return validate_prompts(_default("harmful_eval.json"), default_data_path("harmful_eval.json"))


def default_harmful_eval_categories() -> list[str]:
    return list(_default("harmful_eval_categories.json"))


def default_harmless_eval() -> list[str]:
    """Harmless eval prompts."""
    return validate_prompts(_default("harmless_eval.json"), default_data_path("harmless_eval.json"))


def default_independent_harmful() -> list[str]:
    """Harmful requests of the independent eval set: written by hand apart from the pairs, in other styles (long,
    role-play, embedded in a task, hypothetical, casual). Eval only: never for training or direction selection."""
    return validate_prompts(_default("independent_harmful.json"), default_data_path("independent_harmful.json"))


def default_independent_harmless() -> list[str]:
    """Harmless requests of the independent eval set, in the same styles, many about sensitive topics. Eval only."""
    return validate_prompts(_default("independent_harmless.json"), default_data_path("independent_harmless.json"))


def default_independent_meta() -> dict[str, list[dict[str, str]]]:
    """Per-prompt metadata of the independent eval set, aligned with its prompt lists.

    Returns ``{"harmful": [{"category", "style"}, ...], "harmless": [{"topic", "style"}, ...]}``; entry ``i`` describes
    prompt ``i`` of :func:`default_independent_harmful` / :func:`default_independent_harmless`. Categories are those
    of :func:`default_harmful_eval_categories`, styles :data:`INDEPENDENT_STYLES`, topics :data:`INDEPENDENT_TOPICS`.

    Raises:
        DataError: naming the metadata file, when a list is not aligned with its prompts or holds an unknown value.
    """
    categories = set(default_harmful_eval_categories())
    harmful = validate_meta(_default("independent_harmful_meta.json"), len(default_independent_harmful()),
                            {"category": categories, "style": INDEPENDENT_STYLES},
                            default_data_path("independent_harmful_meta.json"))
    harmless = validate_meta(_default("independent_harmless_meta.json"), len(default_independent_harmless()),
                             {"topic": INDEPENDENT_TOPICS, "style": INDEPENDENT_STYLES},
                             default_data_path("independent_harmless_meta.json"))
    return {"harmful": harmful, "harmless": harmless}

def default_refusals() -> list[str]:
    """Refusal responses in several styles (used to build organisms and to test judges)."""
    return list(_default("refusals.json"))


def dataset_hash(*datasets: Any) -> str:
    """SHA-256 of the given datasets (lists of pairs or prompts), for provenance."""
    return sha256_json([list(map(list, d)) if d and isinstance(d[0], tuple) else d for d in datasets])
