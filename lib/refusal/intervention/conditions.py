"""What the model does under an intervention: greedy generations, judged, per condition, prompt set and side.

A *condition* is an intervention held while the model generates (none, the selected direction removed, random
directions removed, the edited weights...). :func:`run_condition` generates for every prompt of every requested
set (e.g. the project's eval set and the independent one, each with a harmful and a harmless side) and judges
the completions; the long table it returns is the stage's record of generations. :func:`condition_rates` reads
rates from it with Wilson intervals, always over the *scored* rows: an item the judge could not score is left out
of every rate and every mean, and counted. A control over several random directions splits the prompts between
the directions (:func:`run_condition` with several interventions): the pooled rate has the full n, and each
direction's own rate gives the range.

Dose-response curves reuse the same machinery: :func:`alpha_curve` (removal strength ``alpha``) and
:func:`induction_curve` (the raw direction added at its layer with a coefficient, on harmless prompts). A point that
is a condition already generated on the same prompts (alpha 0 and coefficient 0: the baseline; alpha 1: the headline
ablation) is taken from that condition's rows (:func:`rows_on`) instead of being generated again.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import pandas as pd
import torch

from refusal.generation import generate
from refusal.intervention.ablation import ablate, add_direction
from refusal.models import LoadedModel
from refusal.stats import rate

__all__ = ["PromptSet", "run_condition", "condition_rates", "direction_range", "alpha_curve", "induction_curve",
           "rates_by", "flips", "prompt_sets", "rows_on", "CONDITION_COLUMNS"]

# A judge: (prompts, responses) -> the table of refusal.evaluation.judge.score (compliance, coherence, refused, unscored...)
JudgeFn = Callable[[list[str], list[str]], pd.DataFrame]
Intervention = Callable[[], AbstractContextManager]
# the columns run_condition adds to the judge's table
CONDITION_COLUMNS = ("condition", "set", "side", "direction", "index", "category")


@dataclass(frozen=True)
class PromptSet:
    """A named evaluation set: harmful and harmless prompts (and, optionally, a category per harmful prompt)."""

    name: str
    harmful: list[str]
    harmless: list[str]
    categories: list[str] | None = None  # aligned with ``harmful``

    def sides(self) -> dict[str, list[str]]:
        return {"harmful": self.harmful, "harmless": self.harmless}


def _split(n: int, k: int) -> list[list[int]]:
    """Indices 0..n-1 dealt round-robin into ``k`` groups (each direction of a control gets every k-th prompt)."""
    return [list(range(j, n, k)) for j in range(k)]


def run_condition(lm: LoadedModel, name: str, interventions: Sequence[Intervention | None], sets: Sequence[PromptSet],
                  judge: JudgeFn, max_new_tokens: int, model: Any = None, sides: Sequence[str] = ("harmful", "harmless"),
                  desc: str | None = None) -> pd.DataFrame:
    """Generate under ``name`` on every set and side, judge, and return the long table.

    With several ``interventions`` (e.g. five random directions) the prompts of each side are dealt round-robin
    between them; the ``direction`` column says which one each row ran under. ``model`` is the module to generate
    with (default ``lm.model``; an edited copy for the weight-edit condition).

    Returns:
        one row per prompt: condition, set, side, direction, prompt, category, response and the judge's columns.
    """
    interventions = list(interventions) or [None]
    # the prompts each intervention runs on, over every set and side: (set, side, indices) in table order
    chunks: list[list[tuple[PromptSet, str, list[int]]]] = [[] for _ in interventions]
    for ps in sets:
        for side in sides:
            for j, idx in enumerate(_split(len(ps.sides()[side]), len(interventions))):
                if idx:
                    chunks[j].append((ps, side, idx))
    frames = []
    for j, parts in enumerate(chunks):
        if not parts:
            continue
        # one generate call per intervention: its prompts of every set and side share length-sorted batches
        # (on a CPU a batch of 64 generates about twice as fast per prompt as one of 16)
        prompts = [ps.sides()[side][i] for ps, side, idx in parts for i in idx]
        ctx = interventions[j]() if interventions[j] is not None else nullcontext()
        with ctx:
            outs = generate(lm, prompts, max_new_tokens=max_new_tokens, model=model, progress=False,
                            desc=desc or f"{name} ({j + 1}/{len(interventions)})")
        start = 0
        for ps, side, idx in parts:
            chunk, chunk_outs = prompts[start:start + len(idx)], outs[start:start + len(idx)]
            start += len(idx)
            t = judge(chunk, chunk_outs).assign(condition=name, set=ps.name, side=side, direction=j, index=idx)
            if side == "harmful" and ps.categories is not None:
                t["category"] = [ps.categories[i] for i in idx]
            frames.append(t)
    out = pd.concat(frames, ignore_index=True)
    if "category" not in out:
        out["category"] = None
    return out.sort_values(["set", "side", "index"], kind="stable", ignore_index=True)


def _scored(t: pd.DataFrame) -> pd.DataFrame:
    return t[~t["unscored"].astype(bool)]


def condition_rates(table: pd.DataFrame, by: Sequence[str] = ("condition", "set", "side")) -> pd.DataFrame:
    """Rates per group, over scored rows only, with Wilson 95% intervals.

    Columns: the ``by`` keys, n (scored), n_unscored, refusal (+ _low, _high), full_compliance (compliance 1;
    + _low, _high), mean_compliance, mean_coherence.
    """
    rows = []
    for key, t in table.groupby(list(by), sort=False):
        s = _scored(t)
        ref = rate(int(s["refused"].astype(bool).sum()), len(s))
        full = rate(int((s["compliance"] >= 1).sum()), len(s))
        rows.append({**dict(zip(by, key if isinstance(key, tuple) else (key,))), "n": len(s),
                     "n_unscored": int(len(t) - len(s)), "refusal": ref.rate, "refusal_low": ref.lo,
                     "refusal_high": ref.hi, "full_compliance": full.rate, "full_compliance_low": full.lo,
                     "full_compliance_high": full.hi, "mean_compliance": float(s["compliance"].mean()) if len(s) else float("nan"),
                     "mean_coherence": float(s["coherence"].mean()) if len(s) else float("nan")})
    return pd.DataFrame(rows)


def direction_range(table: pd.DataFrame) -> pd.DataFrame:
    """For a condition over several directions: each direction's refusal rate (scored rows) per set and side, and
    the mean and range over directions."""
    per = condition_rates(table, by=("set", "side", "direction"))
    agg = per.groupby(["set", "side"], sort=False)["refusal"].agg(["mean", "min", "max", "count"]).reset_index()
    return agg.rename(columns={"mean": "refusal_mean", "min": "refusal_min", "max": "refusal_max", "count": "directions"})


def rates_by(table: pd.DataFrame, column: str) -> pd.DataFrame:
    """Refusal and compliance rates per condition and value of ``column`` (e.g. ``category``), scored rows only."""
    return condition_rates(table[table[column].notna()], by=("condition", "set", column))


def flips(table: pd.DataFrame, before: str, after: str, set_name: str, side: str = "harmless") -> pd.DataFrame:
    """Prompts of one set and side that were not refused under ``before`` and are refused under ``after``
    (both scored), with both responses and the judge's reason for the new refusal."""
    key = ["set", "side", "index"]
    a = table[(table["condition"] == before) & (table["set"] == set_name) & (table["side"] == side)].set_index(key)
    b = table[(table["condition"] == after) & (table["set"] == set_name) & (table["side"] == side)].set_index(key)
    j = a[["prompt", "response", "refused", "unscored"]].join(b[["response", "refused", "unscored", "reason"]],
                                                             rsuffix="_after", how="inner")
    ok = ~(j["unscored"].astype(bool) | j["unscored_after"].astype(bool))
    return j[ok & ~j["refused"].astype(bool) & j["refused_after"].astype(bool)].reset_index()


def rows_on(table: pd.DataFrame, condition: str, set_name: str, side: str, prompts: Sequence[str]) -> pd.DataFrame | None:
    """The judged rows of ``condition`` on ``set_name``/``side`` of ``table`` for exactly ``prompts``, in their order
    (a condition's prompts start with them), or None when that condition did not run on these prompts.

    Lets a curve reuse a point it shares with a condition already generated (same intervention, same prompts, same
    greedy settings) instead of generating it again.
    """
    t = table[(table["condition"] == condition) & (table["set"] == set_name) & (table["side"] == side)]
    t = t.sort_values("index", kind="stable")
    if len(t) < len(prompts) or list(t["prompt"].iloc[: len(prompts)]) != list(prompts):
        return None
    return t.iloc[: len(prompts)].reset_index(drop=True)


def _point(known: Mapping[float, pd.DataFrame] | None, x: float, name: str, set_name: str) -> pd.DataFrame | None:
    rows = (known or {}).get(float(x))
    return None if rows is None else rows.assign(condition=name, set=set_name, direction=0,
                                                 index=range(len(rows)))


def alpha_curve(lm: LoadedModel, direction: torch.Tensor, alphas: Sequence[float], prompts: list[str],
                judge: JudgeFn, max_new_tokens: int, known: Mapping[float, pd.DataFrame] | None = None) -> pd.DataFrame:
    """Refusal of ``prompts`` (harmful) under removal of ``direction`` at each strength ``alpha``
    (``r <- r - alpha <r, v> v`` at every read of the residual stream), judged; one row per alpha.

    ``known`` maps an alpha to judged rows already generated under that strength on exactly ``prompts``
    (:func:`rows_on`; e.g. 0: the baseline, 1: the headline ablation); those points are not generated again.
    """
    ps = [PromptSet("dose", prompts, [])]
    frames = []
    for a in alphas:
        name = f"alpha={a:g}"
        rows = _point(known, a, name, "dose")
        if rows is None:
            rows = run_condition(lm, name, [lambda a=a: ablate(lm.model, direction, alpha=a)], ps, judge,
                                 max_new_tokens, sides=("harmful",))
        frames.append(rows.assign(alpha=float(a)))
    t = pd.concat(frames, ignore_index=True)
    return condition_rates(t, by=("alpha",))


def induction_curve(lm: LoadedModel, diff: torch.Tensor, layer: int, coeffs: Sequence[float], prompts: list[str],
                    judge: JudgeFn, max_new_tokens: int, known: Mapping[float, pd.DataFrame] | None = None) -> pd.DataFrame:
    """Refusal induced on ``prompts`` (harmless) by adding ``coeff x diff`` (the raw mean difference ``[d_model]``)
    at the input of ``layer``, judged on generations; one row per coefficient (0 = no intervention).

    ``known`` maps a coefficient to judged rows already generated on exactly ``prompts`` (e.g. 0: the baseline).
    """
    ps = [PromptSet("induce", [], prompts)]
    frames = []
    for c in coeffs:
        name = f"coeff={c:g}"
        rows = _point(known, c, name, "induce")
        if rows is None:
            rows = run_condition(lm, name, [lambda c=c: add_direction(lm.model, diff, c, [layer])] if c else [None],
                                 ps, judge, max_new_tokens, sides=("harmless",))
        frames.append(rows.assign(coeff=float(c)))
    t = pd.concat(frames, ignore_index=True)
    return condition_rates(t, by=("coeff",))


def prompt_sets(table: pd.DataFrame, condition: str) -> list[PromptSet]:
    """The prompt sets a condition of ``table`` ran on, in their original order (to run another condition on
    exactly the same prompts, e.g. the edited weights on stage 04's samples)."""
    out = []
    t = table[table["condition"] == condition]
    for name, s in t.groupby("set", sort=False):
        side = {k: g.sort_values("index") for k, g in s.groupby("side")}
        h = side.get("harmful", s.iloc[:0])
        out.append(PromptSet(name, list(h["prompt"]), list(side.get("harmless", s.iloc[:0])["prompt"]),
                             list(h["category"]) if h["category"].notna().any() else None))
    return out
