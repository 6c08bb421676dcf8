"""Separability and cross-layer statistics of candidate directions.

All functions are vectorized over trailing candidate axes: projections come as
``[n_prompts, *cand]`` (usually ``cand = (n_layers, n_pos)``) and results as ``[*cand]``.
Effect sizes follow the original study (Cohen's d with pooled standard deviation,
harmful minus safe) but are also computed held out (direction from train, d on test)
with seeded bootstrap intervals.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from refusal.device import host

__all__ = [
    "cohens_d",
    "bootstrap_d_ci",
    "threshold_accuracy",
    "cosine_matrix",
    "paired_cosine",
    "effective_rank",
    "best_candidate",
    "candidate_table",
    "cross_layer",
]


def _np(x: Any) -> np.ndarray:
    return host(x).double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)


def cohens_d(harmful: Any, safe: Any) -> np.ndarray:
    """Cohen's d = (mean_h - mean_s) / pooled SD, over axis 0.

    Args:
        harmful: ``[n_h, *cand]`` projections; safe: ``[n_s, *cand]``.

    Returns:
        ``[*cand]`` float64; pooled SD = sqrt(((n_h-1) var_h + (n_s-1) var_s) / (n_h+n_s-2)),
        variances with ddof=1. A zero pooled SD gives d = 0 (no separation measurable).
    """
    h, s = _np(harmful), _np(safe)
    nh, ns = h.shape[0], s.shape[0]
    if nh < 2 or ns < 2:
        raise ValueError(f"Cohen's d needs >= 2 prompts per group, got {nh} and {ns}")
    pooled = np.sqrt(((nh - 1) * h.var(0, ddof=1) + (ns - 1) * s.var(0, ddof=1)) / (nh + ns - 2))
    diff = h.mean(0) - s.mean(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(pooled > 0, diff / np.where(pooled > 0, pooled, 1.0), 0.0)


def bootstrap_d_ci(harmful: Any, safe: Any, n_boot: int = 1000, seed: int = 0, level: float = 0.95,
                   paired: bool | None = None, chunk: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of Cohen's d, ``([*cand], [*cand])`` (low, high).

    With ``paired`` (default: when both groups have the same size, i.e. harmful/safe
    twins) the same pair indices are resampled in both groups; otherwise each group
    is resampled on its own. Seeded: the same inputs give the same interval.
    """
    h, s = _np(harmful), _np(safe)
    paired = (h.shape[0] == s.shape[0]) if paired is None else paired
    rng = np.random.default_rng(seed)
    ds = []
    for start in range(0, n_boot, chunk):
        k = min(chunk, n_boot - start)
        ih = rng.integers(0, h.shape[0], size=(k, h.shape[0]))
        js = ih if paired else rng.integers(0, s.shape[0], size=(k, s.shape[0]))
        hb, sb = h[ih], s[js]  # [k, n, *cand]
        nh, ns = hb.shape[1], sb.shape[1]
        pooled = np.sqrt(((nh - 1) * hb.var(1, ddof=1) + (ns - 1) * sb.var(1, ddof=1)) / (nh + ns - 2))
        diff = hb.mean(1) - sb.mean(1)
        ds.append(np.where(pooled > 0, diff / np.where(pooled > 0, pooled, 1.0), 0.0))
    d = np.concatenate(ds, 0)
    a = (1 - level) / 2
    return np.quantile(d, a, axis=0), np.quantile(d, 1 - a, axis=0)


def threshold_accuracy(train_h: Any, train_s: Any, test_h: Any, test_s: Any) -> dict[str, np.ndarray]:
    """One-threshold classifier on a projection: harmful iff projection > t.

    ``t`` is the midpoint between consecutive sorted train projections that maximizes
    train accuracy (ties: the first, i.e. lowest). Returns ``threshold``, ``train_acc``
    and ``test_acc``, each ``[*cand]``. Inputs ``[n, *cand]``.
    """
    th, ts, eh, es = (_np(x) for x in (train_h, train_s, test_h, test_s))
    cand = th.shape[1:]
    th, ts = th.reshape(th.shape[0], -1), ts.reshape(ts.shape[0], -1)
    eh, es = eh.reshape(eh.shape[0], -1), es.reshape(es.shape[0], -1)
    vals = np.concatenate([th, ts], 0)  # [n, C]
    lab = np.concatenate([np.ones(th.shape[0]), np.zeros(ts.shape[0])])
    order = np.argsort(vals, axis=0, kind="stable")
    sv = np.take_along_axis(vals, order, 0)
    sl = lab[order]  # [n, C] labels in sorted order
    n = vals.shape[0]
    # threshold below sorted index i (i = 0..n): predict harmful for sorted[i:]
    # correct = (#safe in sorted[:i]) + (#harmful in sorted[i:])
    safe_below = np.concatenate([np.zeros((1, sl.shape[1])), np.cumsum(1 - sl, 0)], 0)
    harm_above = sl.sum(0, keepdims=True) - np.concatenate([np.zeros((1, sl.shape[1])), np.cumsum(sl, 0)], 0)
    correct = safe_below + harm_above  # [n+1, C]
    best = correct.argmax(0)
    lo = np.where(best > 0, sv[np.clip(best - 1, 0, n - 1), np.arange(sv.shape[1])], -np.inf)
    hi = np.where(best < n, sv[np.clip(best, 0, n - 1), np.arange(sv.shape[1])], np.inf)
    thr = np.where(np.isinf(lo), hi - 1.0, np.where(np.isinf(hi), lo + 1.0, (lo + hi) / 2))
    train_acc = correct[best, np.arange(sv.shape[1])] / n
    test_acc = ((eh > thr).sum(0) + (es <= thr).sum(0)) / (eh.shape[0] + es.shape[0])
    return {"threshold": thr.reshape(cand), "train_acc": train_acc.reshape(cand), "test_acc": test_acc.reshape(cand)}


def cosine_matrix(vectors: Any) -> np.ndarray:
    """``[n, n]`` cosine between rows of ``[n, d]``; rows with zero norm give 0 (not NaN)."""
    v = _np(vectors)
    n = np.linalg.norm(v, axis=1, keepdims=True)
    u = np.divide(v, n, out=np.zeros_like(v), where=n > 0)
    return u @ u.T


def paired_cosine(a: Any, b: Any) -> np.ndarray:
    """Row-wise cosine of ``[..., d]`` tensors ``a`` and ``b`` -> ``[...]`` (0 where a norm is 0)."""
    x, y = _np(a), _np(b)
    den = np.linalg.norm(x, axis=-1) * np.linalg.norm(y, axis=-1)
    return np.divide((x * y).sum(-1), den, out=np.zeros(den.shape), where=den > 0)


def effective_rank(vectors: Any, energy: float = 0.9) -> dict[str, Any]:
    """Singular-value spectrum of a stack of directions ``[n, d]`` (rows unit or zero).

    Returns ``singular_values`` (descending), ``energy`` (cumulative share of
    sum s^2), ``participation_ratio`` = (sum s^2)^2 / sum s^4 (1 for n copies of one
    direction, n for n orthogonal ones) and ``n_for_energy`` = the number of singular
    values that hold ``energy`` of sum s^2.
    """
    v = _np(vectors)
    v = v[np.linalg.norm(v, axis=1) > 0]
    if v.shape[0] == 0:
        raise ValueError("effective_rank of an empty stack")
    s = np.linalg.svd(v, compute_uv=False)
    e = s**2
    cum = np.cumsum(e) / e.sum()
    return {"singular_values": s.tolist(), "energy": cum.tolist(),
            "participation_ratio": float(e.sum() ** 2 / (e**2).sum()),
            "n_for_energy": int(np.searchsorted(cum, energy - 1e-12) + 1), "energy_level": energy}


def best_candidate(score: Any, valid: Any, exclude_last_frac: float = 0.0) -> tuple[int, int]:
    """``(layer_index, pos_index)`` of the valid candidate with the highest ``score`` ``[L, P]``.

    ``exclude_last_frac`` drops the last fraction of layers (Arditi et al. drop 20%,
    whose directions sit too close to the unembedding to ablate cleanly).
    """
    sc, ok = _np(score).copy(), np.asarray(valid, dtype=bool).copy()
    n_l = sc.shape[0]
    keep = n_l - int(np.floor(exclude_last_frac * n_l))
    ok[keep:] = False
    if not ok.any():
        raise ValueError("no valid candidate to choose from")
    sc[~ok | ~np.isfinite(sc)] = -np.inf
    li, pi = np.unravel_index(int(np.argmax(sc)), sc.shape)
    return int(li), int(pi)


def candidate_table(proj: dict[str, Any], valid: Any, positions: list[int], tokens: list[str] | None = None,
                    n_boot: int = 1000, seed: int = 0, test: str = "test") -> Any:
    """One row per (layer, position) candidate: in-sample and held-out d with bootstrap CIs,
    one-threshold accuracy (threshold on train, accuracy on ``test``).

    Args:
        proj: ``{"train_harmful", "train_safe", f"{test}_harmful", f"{test}_safe"}`` ->
            ``[n, L, P]`` projections onto the train directions.
        valid: ``[L, P]`` bool; invalid candidates get NaN statistics.

        When ``proj`` also holds ``val_harmful`` / ``val_safe`` (the validation split), the table has ``d_val``:
        the split on which a best candidate is chosen without touching ``test``.

    Returns:
        pandas DataFrame with columns layer, pos_index, position, token, valid, d_train,
        d_train_lo, d_train_hi, [d_val,] d_test, d_test_lo, d_test_hi, acc_train, acc_test.
    """
    import pandas as pd

    th, ts, eh, es = (proj[k] for k in ("train_harmful", "train_safe", f"{test}_harmful", f"{test}_safe"))
    v = np.asarray(valid, dtype=bool)
    d_tr, d_te = cohens_d(th, ts), cohens_d(eh, es)
    d_va = cohens_d(proj["val_harmful"], proj["val_safe"]) if "val_harmful" in proj and test != "val" else None
    lo_tr, hi_tr = bootstrap_d_ci(th, ts, n_boot=n_boot, seed=seed)
    lo_te, hi_te = bootstrap_d_ci(eh, es, n_boot=n_boot, seed=seed + 1)
    acc = threshold_accuracy(th, ts, eh, es)
    L, P = v.shape
    rows = []
    for l in range(L):
        for p in range(P):
            ok = bool(v[l, p])
            nan = float("nan")
            f = lambda a: float(a[l, p]) if ok else nan  # noqa: E731
            rows.append({"layer": l, "pos_index": p, "position": positions[p],
                         "token": (tokens[p] if tokens else str(positions[p])), "valid": ok,
                         "d_train": f(d_tr), "d_train_lo": f(lo_tr), "d_train_hi": f(hi_tr),
                         **({"d_val": f(d_va)} if d_va is not None else {}),
                         "d_test": f(d_te), "d_test_lo": f(lo_te), "d_test_hi": f(hi_te),
                         "acc_train": f(acc["train_acc"]), "acc_test": f(acc["test_acc"])})
    return pd.DataFrame(rows)


def cross_layer(directions: Any, valid: Any, energy: float = 0.9) -> dict[str, Any]:
    """Cross-layer structure of ``[L, P, d]`` candidates (invalid ones are zero rows).

    Returns per position ``p``: ``layer_cosine[p]`` ``[L, L]``, ``effective_rank[p]``
    (of the stack of that position's valid per-layer directions); and
    ``position_cosine`` ``[L, P, P]`` (cosine between positions within each layer).
    """
    D = _np(directions)
    v = np.asarray(valid, dtype=bool)
    L, P, _ = D.shape
    out: dict[str, Any] = {"layer_cosine": [], "effective_rank": [], "position_cosine": []}
    for p in range(P):
        out["layer_cosine"].append(cosine_matrix(D[:, p]).tolist())
        out["effective_rank"].append(effective_rank(D[v[:, p], p], energy) if v[:, p].any() else None)
    out["position_cosine"] = [cosine_matrix(D[l]).tolist() for l in range(L)]
    return out
