"""Statistics helpers shared by the notebooks: intervals on rates and agreement.

Every rate the project reports comes with a Wilson 95% interval and its ``n``
(:func:`rate_with_ci`); agreement between two raters (e.g. the offline and the
LLM judge) is Cohen's kappa (:func:`cohen_kappa`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["wilson", "Rate", "rate", "rate_with_ci", "cohen_kappa", "kappa_with_ci"]


def wilson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval for ``k`` successes out of ``n`` trials.

    Returns ``(low, high)``; ``(nan, nan)`` when ``n == 0``.
    """
    from statsmodels.stats.proportion import proportion_confint

    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return (math.nan, math.nan)
    low, high = proportion_confint(k, n, alpha=alpha, method="wilson")
    # statsmodels' closed form can land a rounding step on the wrong side of 0/n or n/n (e.g. 7/7 -> 0.9999999999999999)
    return (min(float(low), k / n), max(float(high), k / n))


@dataclass(frozen=True)
class Rate:
    """``k`` of ``n`` with its Wilson 95% interval ``[lo, hi]``."""

    k: int
    n: int
    lo: float
    hi: float

    @property
    def rate(self) -> float:
        return self.k / self.n if self.n else math.nan

    def __str__(self) -> str:
        return f"{self.rate:.1%} ({self.k}/{self.n}; 95% CI {self.lo:.1%}-{self.hi:.1%})"

    def as_dict(self) -> dict[str, float | int]:
        """``{"rate", "low", "high", "n"}``: the form every artifact of the project records a rate in."""
        return {"rate": self.rate, "low": self.lo, "high": self.hi, "n": self.n}

    def row(self, **extra: Any) -> dict[str, Any]:
        """A table row: ``extra`` then k, n, rate, ci_lo, ci_hi (rounded to 4 digits)."""
        return {**extra, "k": self.k, "n": self.n, "rate": round(self.rate, 4), "ci_lo": round(self.lo, 4),
                "ci_hi": round(self.hi, 4)}


def rate(k: int, n: int, alpha: float = 0.05) -> Rate:
    """``k/n`` as a :class:`Rate` with its Wilson interval."""
    lo, hi = wilson(k, n, alpha)
    return Rate(int(k), int(n), lo, hi)


def _is_missing(v: Any) -> bool:
    """True for None, NaN and pandas' NA."""
    if v is None:
        return True
    try:
        return bool(v != v)  # NaN and pd.NA (pd.NA != pd.NA is NA, bool(NA) raises)
    except TypeError:
        return True


def rate_with_ci(values: Iterable[Any], alpha: float = 0.05) -> dict[str, float | int]:
    """Rate of true values with its Wilson interval: ``dict(rate, low, high, n)``.

    ``values`` are booleans or 0/1 numbers; missing values (None, NaN, NA) are
    left out of ``n``. Any other value is an error (a 3-level score must be
    binarized by the caller). With ``n == 0`` the rate and bounds are NaN.
    """
    k = n = 0
    for v in values:
        if _is_missing(v):
            continue
        if v not in (0, 1, True, False):
            raise ValueError(f"rate_with_ci needs 0/1 or boolean values, got {v!r}")
        n += 1
        k += int(bool(v))
    return rate(k, n, alpha).as_dict()


def cohen_kappa(a: Sequence[Any], b: Sequence[Any]) -> float:
    """Cohen's kappa between two raters' labels (any hashable categories).

    Pairs where either label is missing are dropped. Returns NaN when no pair
    is left or when chance agreement is 1 (both raters used one same label
    throughout, so kappa is undefined).
    """
    if len(a) != len(b):
        raise ValueError(f"cohen_kappa: the raters have {len(a)} and {len(b)} labels")
    pairs = [(x, y) for x, y in zip(a, b) if not (_is_missing(x) or _is_missing(y))]
    if not pairs:
        return math.nan
    cats = sorted({x for x, _ in pairs} | {y for _, y in pairs}, key=repr)
    index = {c: i for i, c in enumerate(cats)}
    table = np.zeros((len(cats), len(cats)))
    for x, y in pairs:
        table[index[x], index[y]] += 1
    n = table.sum()
    po = np.trace(table) / n
    pe = float((table.sum(axis=1) / n) @ (table.sum(axis=0) / n))
    if math.isclose(pe, 1.0):
        return math.nan
    return float((po - pe) / (1 - pe))


def kappa_with_ci(a: Sequence[Any], b: Sequence[Any]) -> dict[str, float | int]:
    """Cohen's kappa between two raters with its 95% confidence interval (statsmodels' asymptotic
    variance), over the pairs where neither label is missing: ``dict(kappa, low, high, n)`` (NaN where undefined)."""
    from statsmodels.stats.inter_rater import cohens_kappa

    pairs = [(x, y) for x, y in zip(a, b) if not (_is_missing(x) or _is_missing(y))]
    kappa = cohen_kappa([x for x, _ in pairs], [y for _, y in pairs])
    if not pairs or math.isnan(kappa):
        return {"kappa": math.nan, "low": math.nan, "high": math.nan, "n": len(pairs)}
    cats = sorted({x for x, _ in pairs} | {y for _, y in pairs}, key=repr)
    index = {c: i for i, c in enumerate(cats)}
    table = np.zeros((len(cats), len(cats)))
    for x, y in pairs:
        table[index[x], index[y]] += 1
    res = cohens_kappa(table)  # 95% interval
    return {"kappa": float(res["kappa"]), "low": max(-1.0, float(res["kappa_low"])),
            "high": min(1.0, float(res["kappa_upp"])),
            "n": len(pairs)}
