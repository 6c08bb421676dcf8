"""Deterministic train / validation / test splits (grouped, so that a template's pairs stay in one split)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from refusal.data.formats import Pair

__all__ = ["Splits", "split_indices", "split_indices_grouped", "split_pairs", "split_prompts"]


@dataclass(frozen=True)
class Splits:
    """Disjoint train/val/test index lists into the original data."""

    train: list[int]
    val: list[int]
    test: list[int]

    def take(self, items: list[Any], split: str) -> list[Any]:
        return [items[i] for i in getattr(self, split)]


def split_indices(n: int, seed: int, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)) -> Splits:
    """Deterministic shuffled split of ``range(n)`` into train/val/test by ``fractions``."""
    if abs(sum(fractions) - 1) > 1e-9 or min(fractions) < 0:
        raise ValueError(f"split fractions must be >= 0 and sum to 1, got {fractions}")
    idx = list(range(n))
    random.Random(seed).shuffle(idx)
    n_train = round(fractions[0] * n)
    n_val = round(fractions[1] * n)
    return Splits(sorted(idx[:n_train]), sorted(idx[n_train : n_train + n_val]), sorted(idx[n_train + n_val :]))


def split_indices_grouped(groups: list[str], seed: int, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)) -> Splits:
    """Like :func:`split_indices`, but items sharing a group label stay in one split.

    Used for the default pairs: all pairs expanded from one template form a
    group, so a held-out split differs in wording, not only in slot fillers.
    """
    if abs(sum(fractions) - 1) > 1e-9 or min(fractions) < 0:
        raise ValueError(f"split fractions must be >= 0 and sum to 1, got {fractions}")
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    keys = sorted(members)
    random.Random(seed).shuffle(keys)
    n = len(groups)
    targets = [fractions[0] * n, fractions[1] * n]
    out: list[list[int]] = [[], [], []]
    for k in keys:
        # fill train, then val, then test; a group goes to the first split it fits into
        for s in (0, 1):
            if len(out[s]) + len(members[k]) <= targets[s] + 0.5:
                out[s].extend(members[k])
                break
        else:
            out[2].extend(members[k])
    return Splits(sorted(out[0]), sorted(out[1]), sorted(out[2]))


def split_pairs(pairs: list[Pair], seed: int = 0, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)) -> dict[str, list[Pair]]:
    """``{"train": [...], "val": [...], "test": [...]}``, deterministic for a seed."""
    s = split_indices(len(pairs), seed, fractions)
    return {k: s.take(pairs, k) for k in ("train", "val", "test")}


def split_prompts(prompts: list[str], seed: int = 0, fractions: tuple[float, float, float] = (0.5, 0.0, 0.5)) -> dict[str, list[str]]:
    """Same as :func:`split_pairs` for a list of prompts."""
    s = split_indices(len(prompts), seed, fractions)
    return {k: s.take(prompts, k) for k in ("train", "val", "test")}
