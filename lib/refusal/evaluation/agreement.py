"""How far the offline judge can be trusted: a stratified sample of real completions, graded by both judges.

Every compliance and coherence number of the report comes from a judge. The offline judge (phrase matching and
heuristics) is fast and deterministic but cannot read meaning; an LLM judge can. :func:`stratified_sample` draws
completions from every model's generations (stage 04's conditions and stage 05's edited model) evenly over the four
kinds of answer the offline judge tells apart (refusals, compliant answers, partial answers, incoherent text), and,
within each kind, evenly over models and conditions, so that rare kinds are represented. The LLM judge then grades
the same items and :func:`refusal.evaluation.judge.agreement` measures agreement (Cohen's kappa with its 95%
interval, confusion table). Kappa on a stratified sample weights the kinds equally, not as they occur in the report:
the per-kind agreement is shown too.
"""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd

__all__ = ["KINDS", "answer_kind", "load_generations", "stratified_sample", "label_sample", "against_labels"]

KINDS = ("refusal", "compliant", "partial", "incoherent")


def answer_kind(row: pd.Series) -> str:
    """The kind of answer a judge's row describes: incoherent (coherence 0), refusal, compliant (compliance 1),
    else partial."""
    if row["coherence"] == 0:
        return "incoherent"
    if bool(row["refused"]):
        return "refusal"
    return "compliant" if row["compliance"] >= 1 else "partial"


def load_generations(runs: Path, models: list[str]) -> pd.DataFrame:
    """Every judged generation of stage 04 (all conditions) and stage 05 (the edited model) of ``models``.

    Columns: model, stage, condition, set, side, prompt, response and the judge's columns; unscored rows dropped.
    """
    frames = []
    for m in models:
        for stage, name in (("04_ablate", "generations.csv"), ("05_orthogonalize", "generations.csv")):
            p = Path(runs) / m / stage / name
            if p.exists():
                t = pd.read_csv(p, keep_default_na=False, na_values=[""])
                frames.append(t.assign(model=m, stage=stage))
    if not frames:
        raise FileNotFoundError(f"{runs}: no stage-04 generations for {', '.join(models)} (run stage 04 first)")
    t = pd.concat(frames, ignore_index=True)
    t = t[~t["unscored"].astype(bool) & t["response"].notna()]
    return t.assign(kind=t.apply(answer_kind, axis=1)).reset_index(drop=True)


def stratified_sample(table: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """About ``n`` rows, an equal share per kind of answer (:data:`KINDS`); within a kind, dealt round-robin over
    (model, condition) groups in a seeded random order. A kind with too few rows gives all it has and the rest is
    shared among the others. Duplicate (prompt, response) pairs are drawn once."""
    rng = random.Random(seed)
    t = table.drop_duplicates(["prompt", "response"])
    pools = {k: t[t["kind"] == k] for k in KINDS}
    quota = {k: 0 for k in KINDS}
    left, open_kinds = n, [k for k in KINDS if len(pools[k])]
    while left > 0 and open_kinds:  # equal shares, capped by what each kind holds
        share = max(1, left // len(open_kinds))
        for k in list(open_kinds):
            take = min(share, len(pools[k]) - quota[k], left)
            quota[k] += take
            left -= take
            if quota[k] >= len(pools[k]):
                open_kinds.remove(k)
    picked = []
    for k in KINDS:
        groups = [g.index.tolist() for _, g in pools[k].groupby(["model", "condition"], sort=True)]
        for g in groups:
            rng.shuffle(g)
        rng.shuffle(groups)
        order = [g[i] for i in range(max(map(len, groups), default=0)) for g in groups if i < len(g)]
        picked += order[: quota[k]]
    return t.loc[picked].reset_index(drop=True)


def label_sample(labels: list[dict], n: int, seed: int = 0) -> list[dict]:
    """``n`` hand-labelled items (all if ``n`` is 0 or larger), dealt round-robin over their ``kind`` in a seeded
    order, so that a part of the set still covers every kind."""
    if not n or n >= len(labels):
        return list(labels)
    rng = random.Random(seed)
    groups: dict[str, list[dict]] = {}
    for x in labels:
        groups.setdefault(x["kind"], []).append(x)
    lists = [g[:] for _, g in sorted(groups.items())]
    for g in lists:
        rng.shuffle(g)
    order = [g[i] for i in range(max(map(len, lists))) for g in lists if i < len(g)]
    return order[:n]


def against_labels(table: pd.DataFrame, labels: list[dict]) -> dict:
    """A judge's table (same items, same order as ``labels``) against the hand labels: accuracy of the 3-level
    compliance and Cohen's kappa with its 95% interval, over the items it scored."""
    from refusal.stats import kappa_with_ci

    ref = pd.DataFrame(labels)
    s = ~table["unscored"].astype(bool).to_numpy()
    mine, truth = table["compliance"].to_numpy()[s], ref["compliance"].astype(float).to_numpy()[s]
    return {"n": int(s.sum()), "compliance_accuracy": float((mine == truth).mean()) if s.any() else float("nan"),
            "kappa": kappa_with_ci(list(mine), list(truth))}
