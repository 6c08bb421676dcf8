"""The peer comparison on the comparison page: table, refusal-vs-KL scatter and a verdict written from the numbers.

Reads ``runs/_peers/<model>/results.json`` (written by ``bench/peers/compare.py``, see
:mod:`refusal.peers.evaluate`) where the benchmark has run on this machine, else the measured run recorded in the
repository, ``bench/peers/results/<model>.json`` (the published site's build does not run the benchmark; see
:func:`results_paths`). Nothing here loads a model or imports a peer tool. Where no results exist the page says how
to produce them (:func:`how_to_produce`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from refusal.artifacts import read_json
from refusal.paths import REPO_ROOT, runs_dir

__all__ = ["LABELS", "RESULTS_FILE", "RECORDED_DIR", "results_paths", "peer_models", "read_results", "peers_table", "examples_table", "overlap",
           "verdict", "heretic_version", "direction_note", "scatter", "how_to_produce"]

RESULTS_FILE = "results.json"  # as refusal.peers.evaluate writes it
PEERS_RUN = "_peers"  # runs/_peers/<model>/ (refusal.peers.PEERS_RUN)
LABELS = {"baseline": "baseline (unedited)", "ours": "this project (stages 02-05)",
          "single_layer": "single-layer abliteration", "heretic": "heretic"}
_RATE_KEYS = ("rate", "low", "high", "n")


RECORDED_DIR = REPO_ROOT / "bench" / "peers" / "results"  # <model>.json: measured runs, committed (a copy of results.json)


def results_paths(root: Path | None = None, recorded: Path | None = RECORDED_DIR) -> dict[str, Path]:
    """Each model's comparison results: ``runs/_peers/<model>/results.json`` where the benchmark ran here, else the
    recorded ``<recorded>/<model>.json`` (None: none), sorted by model."""
    found = {p.stem: p for p in recorded.glob("*.json")} if recorded is not None and recorded.is_dir() else {}
    found.update({p.parent.name: p for p in ((root or runs_dir()) / PEERS_RUN).glob(f"*/{RESULTS_FILE}")})
    return dict(sorted(found.items()))


def peer_models(root: Path | None = None, recorded: Path | None = RECORDED_DIR) -> list[str]:
    """Models with a peer comparison (run here, or recorded), sorted."""
    return list(results_paths(root, recorded))


def read_results(model: str, root: Path | None = None, recorded: Path | None = RECORDED_DIR) -> dict[str, Any] | None:
    """The comparison's results for ``model`` (see :func:`results_paths`), or None when it has neither run nor
    been recorded. The record's ``source`` says which file it came from."""
    p = results_paths(root, recorded).get(model)
    return None if p is None else {**read_json(p), "source": str(p)}


def _rate(rec: dict[str, Any], key: str, where: str) -> dict[str, float]:
    r = rec.get(key)
    if not isinstance(r, dict) or any(k not in r for k in _RATE_KEYS):
        raise ValueError(f"{where}: '{key}' must hold {', '.join(_RATE_KEYS)} (got {r!r})")
    return r


def _choice(m: dict[str, Any]) -> str:
    """What the method chose, in words, from its build record."""
    b = m.get("build") or {}
    if m["method"] == "ours":
        return f"layer {b.get('layer')}, position {b.get('position')}"
    if m["method"] == "single_layer":
        return f"layer {b.get('layer')}, last token"
    if m["method"] == "heretic" and b.get("chosen"):
        c = b["chosen"]
        direction = "per layer" if c.get("direction_index") is None else f"index {c['direction_index']:.2f}"
        return (f"trial {c.get('index')} of {len(b.get('trials') or [])} (its objective: {c.get('refusals')}/"
                f"{c.get('n_bad_prompts')} refusals, KL {c.get('kl_divergence'):.3f}; direction {direction})")
    return "–"


def peers_table(results: dict[str, Any], where: str = RESULTS_FILE) -> pd.DataFrame:
    """One row per method: rates with Wilson intervals, KL, MC accuracy, build cost and what it chose.

    Raises:
        ValueError: a method record lacks a field (naming ``where`` and the method).
    """
    rows = []
    for i, m in enumerate(results.get("methods") or []):
        at = f"{where}: methods[{i}] ({m.get('method', '?')})"
        h, s = _rate(m, "harmful_refusal", at), _rate(m, "harmless_refusal", at)
        if "first_token_kl" not in m or "mc" not in m:
            raise ValueError(f"{at}: needs 'first_token_kl' and 'mc'")
        measured = m.get("measured") or {}
        rss = measured.get("peak_rss_bytes")
        rows.append({
            "method": m["method"], "label": LABELS.get(m["method"], m["method"]),
            "harmful_refusal": h["rate"], "harmful_low": h["low"], "harmful_high": h["high"], "n_harmful": h["n"],
            "harmless_refusal": s["rate"], "harmless_low": s["low"], "harmless_high": s["high"], "n_harmless": s["n"],
            "first_token_kl": m["first_token_kl"], "mc_accuracy": m["mc"]["accuracy"], "mc_stderr": m["mc"]["stderr"],
            "mc_metric": m["mc"]["metric"], "build_seconds": measured.get("seconds"),
            "build_cpu_seconds": measured.get("cpu_seconds"),
            "peak_rss_gb": rss / 2**30 if rss is not None else None,
            "chose": _choice(m) if m["method"] != "baseline" else "–",
        })
    if not rows:
        raise ValueError(f"{where}: no method records")
    return pd.DataFrame(rows)


def examples_table(results: dict[str, Any]) -> pd.DataFrame:
    """The redacted example completions of every method (they are redacted when recorded)."""
    return pd.DataFrame([{"method": m["method"], "prompt": e["prompt"], "response (redacted)": e["response"],
                          "refused": e["refused"]}
                         for m in results.get("methods") or [] for e in m.get("examples", [])])


def overlap(a: pd.Series, b: pd.Series, key: str = "harmful") -> bool:
    """Whether two rows' Wilson intervals of ``<key>_refusal`` overlap."""
    return bool(a[f"{key}_low"] <= b[f"{key}_high"] and b[f"{key}_low"] <= a[f"{key}_high"])


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _best(t: pd.DataFrame, col: str, lowest: bool = True) -> list[str]:
    """Labels of the rows at the best value of ``col`` (ties share it); empty if the column has no value."""
    v = pd.to_numeric(t[col], errors="coerce")
    if v.isna().all():
        return []
    target = v.min() if lowest else v.max()
    return [t.loc[i, "label"] for i in t.index
            if not pd.isna(v[i]) and math.isclose(v[i], target, rel_tol=1e-9, abs_tol=1e-12)]


def _names(labels: list[str], verb: str = "") -> str:
    """``a``, ``a and b``, ``a, b and c``, then ``verb`` (third person singular) agreeing with the count."""
    names = " and ".join(labels) if len(labels) <= 2 else ", ".join(labels[:-1]) + " and " + labels[-1]
    if not verb:
        return names
    return f"{names} {verb if len(labels) == 1 else verb[:-1]}"


def verdict(table: pd.DataFrame) -> str:
    """Who wins on what, in a paragraph written from the table's numbers (no claim is typed by hand).

    Winners are among the edits (the baseline is the reference). For this project's edit, every peer that leaves
    fewer harmful refusals at an equal or lower first-token KL is named with the margin in points and whether the
    Wilson intervals overlap (if they do, the margin is within sampling error at this n).
    """
    base = table[table.method == "baseline"]
    edits = table[table.method != "baseline"].reset_index(drop=True)
    if edits.empty:
        return "No edited model in the results."
    out = []
    b = base.iloc[0] if len(base) else None
    ref = (f" (unedited: {_pct(b.harmful_refusal)} of n = {int(b.n_harmful)})" if b is not None else "")
    out.append(f"Refusal removal: {_names(_best(edits, 'harmful_refusal'), 'leaves')} the fewest harmful refusals"
               f"{ref}; " + ", ".join(f"{r.label} {_pct(r.harmful_refusal)} [{_pct(r.harmful_low)}, "
                                      f"{_pct(r.harmful_high)}]" for r in edits.itertuples()) + ".")
    out.append(f"Over-refusal: {_names(_best(edits, 'harmless_refusal'), 'refuses')} the fewest harmless prompts ("
               + ", ".join(f"{r.label} {_pct(r.harmless_refusal)}" for r in edits.itertuples())
               + (f"; unedited {_pct(b.harmless_refusal)}" if b is not None else "") + ").")
    out.append(f"Damage: {_names(_best(edits, 'first_token_kl'), 'moves')} the first token least (first-token KL "
               + ", ".join(f"{r.label} {r.first_token_kl:.3f}" for r in edits.itertuples()) + ").")
    mc = ", ".join(f"{r.label} {r.mc_accuracy:.3f}" for r in edits.itertuples())
    top = _names(_best(edits, "mc_accuracy", lowest=False), "scores")
    unedited = f"; unedited {b.mc_accuracy:.3f}" if b is not None else ""
    out.append(f"Multiple choice ({edits.mc_metric.iloc[0]}): {top} highest ({mc}{unedited}, standard error about "
               f"{edits.mc_stderr.max():.3f}).")
    timed = edits[pd.to_numeric(edits.build_seconds, errors="coerce").notna()]
    if len(timed):
        cpu = pd.to_numeric(timed.build_cpu_seconds, errors="coerce").notna().all()
        key = "build_cpu_seconds" if cpu else "build_seconds"
        out.append(f"Cost: {_names(_best(timed, key), 'builds')} with the least "
                   + ("computation (CPU time; wall time in brackets: " if cpu else "wall time (")
                   + ", ".join(f"{r.label} {getattr(r, key) / 60:.1f} min"
                               + (f" [{r.build_seconds / 60:.1f}]" if cpu else "") for r in timed.itertuples())
                   + f"); {_names(_best(timed, 'peak_rss_gb'), 'needs')} the least memory ("
                   + ", ".join(f"{r.label} {r.peak_rss_gb:.1f} GB" for r in timed.itertuples()) + ").")
    out.append(_against_ours(edits))
    return " ".join(out)


def _against_ours(edits: pd.DataFrame) -> str:
    """Is this project's edit beaten on refusal removal at equal or lower KL, and by how much?"""
    ours = edits[edits.method == "ours"]
    if ours.empty:
        return "This project's edit is not in the results."
    o = ours.iloc[0]
    lines = []
    for r in edits[edits.method != "ours"].itertuples():
        if r.harmful_refusal < o.harmful_refusal and r.first_token_kl <= o.first_token_kl:
            noise = ("the Wilson intervals overlap, so the margin is within sampling error at this n"
                     if overlap(pd.Series(r._asdict()), o) else "the Wilson intervals do not overlap")
            lines.append(f"{r.label} beats this project's edit on refusal removal at equal or lower KL: "
                         f"{100 * (o.harmful_refusal - r.harmful_refusal):.0f} points fewer harmful refusals "
                         f"({_pct(r.harmful_refusal)} vs {_pct(o.harmful_refusal)}) at KL {r.first_token_kl:.3f} vs "
                         f"{o.first_token_kl:.3f}; {noise}.")
        elif r.harmful_refusal >= o.harmful_refusal and r.first_token_kl >= o.first_token_kl:
            lines.append(f"This project's edit matches or beats {r.label} on both refusal removal and KL.")
        else:
            better = "refusal removal" if r.harmful_refusal < o.harmful_refusal else "KL"
            lines.append(f"{r.label} is better on {better} only, worse on the other: a trade-off, not a win.")
    if not any("beats this project's edit" in s for s in lines):
        lines.append("No peer removes more refusals than this project's edit at equal or lower KL.")
    return " ".join(lines)


def heretic_version(results: dict[str, Any]) -> str | None:
    """The heretic-llm version the comparison ran (its build record), or None when heretic is not in the results."""
    return next(((m.get("build") or {}).get("heretic_version") for m in results.get("methods") or []
                 if m.get("method") == "heretic"), None)


def direction_note(results: dict[str, Any]) -> str:
    """How the two single-direction edits relate: where each took its direction and the cosine between them
    (``direction_cosine`` of the results), or "" when a build or the cosine is missing."""
    cos = results.get("direction_cosine")
    b = {m["method"]: m.get("build") or {} for m in results.get("methods") or []}
    if cos is None or "ours" not in b or "single_layer" not in b:
        return ""
    o, s = b["ours"], b["single_layer"]
    same = o.get("layer") == s.get("layer") and o.get("position") == s.get("position")
    where = (f"both at layer {o.get('layer')}, position {o.get('position')}" if same else
             f"this project at layer {o.get('layer')}, position {o.get('position')}; single-layer abliteration at "
             f"layer {s.get('layer')}, position {s.get('position')}")
    zeroed = o.get("outlier_dims_zeroed") or []
    diff = (f"; this project's direction has the model's {len(zeroed)} outlier coordinates ({', '.join(map(str, zeroed))}) "
            f"zeroed, the single-layer one keeps them" if zeroed else "")
    return f"The two single-direction edits removed directions with cosine {cos:.3f} ({where}{diff})."


def scatter(table: pd.DataFrame, ax: Any = None) -> Any:
    """Harmful refusal (Wilson 95% bars) against first-token KL, one point per method; returns the Axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4.2))
    for r in table.itertuples():
        ax.errorbar(r.first_token_kl, r.harmful_refusal,
                    yerr=[[r.harmful_refusal - r.harmful_low], [r.harmful_high - r.harmful_refusal]],
                    fmt="o", capsize=4, label=r.label)
    ax.set(xlabel="first-token KL(base || edited) on harmless prompts (nats)",
           ylabel="harmful refusal rate (Wilson 95%)", ylim=(-0.02, 1.02),
           title=f"n = {int(table.n_harmful.max())} held-out harmful prompts per method")
    ax.legend(fontsize=8)
    return ax


def how_to_produce(model: str = "qwen25_coder_05b") -> str:
    """What the page says when no peer comparison has run."""
    return (f"*No peer comparison has run yet.* Produce it with `make setup EXTRAS=peers` and then "
            f"`.venv/bin/python bench/peers/compare.py --model {model}` (timings in the README); it writes "
            f"`runs/_peers/{model}/results.json`, which this section reads (a measured run is kept in the "
            f"repository as `bench/peers/results/{model}.json`).")
