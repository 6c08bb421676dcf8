"""The cross-model findings table, read from each model's stage artifacts.

Used by ``notebooks/07_compare`` and by the site's index page
(:func:`refusal.report.site.write_index`), so that every number published is read
from ``runs/<model>/`` and none is typed by hand. A model whose stage has not
run has empty cells for that stage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from refusal.artifacts import read_json, write_csv, write_json
from refusal.paths import runs_dir

__all__ = ["model_row", "cross_dir", "findings_table", "models_with_results", "PUBLISHED", "published_table", "COMPARE_RUN",
           "comparison_dir", "export_findings", "FINDINGS_FILES"]

# The comparison (07_compare) is not a model: its artifacts live in runs/_compare/07_compare/ (the leading
# underscore keeps the folder out of any model listing); every cross-model stage writes to runs/_compare/<stage>/.
COMPARE_RUN = "_compare"
FINDINGS_FILES = ("findings.csv", "findings.json")

# The original study's published figures (REFERENCE.md section 1): NOT re-measured here.
PUBLISHED = [
    {"model": "Qwen/Qwen3-1.7B", "entry": "qwen3_1_7b", "peak_single_direction_compliance": 0.96, "verdict": "centralized"},
    {"model": "Qwen/Qwen-1_8B-chat", "entry": "qwen1_8b_chat", "peak_single_direction_compliance": 0.90, "verdict": "centralized",
     "detail": "layer 15, alpha 0.75: compliance 0.912, coherence 0.956"},
    {"model": "google/gemma-2b-it", "entry": "gemma_2b_it", "peak_single_direction_compliance": 0.90, "verdict": "centralized"},
    {"model": "meta-llama/Llama-3.1-8B-Instruct", "entry": "llama31_8b", "peak_single_direction_compliance": 0.80,
     "verdict": "centralized", "detail": "layer 9, alpha 1: 0.795 / 0.965"},
    {"model": "microsoft/Phi-3-mini-4k-instruct", "entry": "phi3_mini", "peak_single_direction_compliance": 0.39, "verdict": "partial"},
    {"model": "meta-llama/Llama-3.2-1B-Instruct", "entry": "llama32_1b", "peak_single_direction_compliance": 0.21,
     "verdict": "distributed", "detail": "layer 9: 0.21-0.27; k=3-4 subspace ~0.36"},
    {"model": "meta-llama/Llama-3.2-3B-Instruct", "entry": "llama32_3b", "peak_single_direction_compliance": 0.15, "verdict": "distributed"},
]


def published_table() -> pd.DataFrame:
    """The original study's published numbers, labelled as such."""
    return pd.DataFrame(PUBLISHED).assign(source="published by the original study (not re-measured here)")


def _read(path: Path) -> Any:
    return read_json(path) if path.exists() else None


def models_with_results(root: Path | None = None) -> list[str]:
    """Models that have at least the ablation stage's summary, sorted."""
    root = root or runs_dir()
    return sorted(p.parent.parent.name for p in root.glob("*/04_ablate/summary.json"))


def rate_record(rates: list[dict], condition: str, set_name: str, side: str) -> dict | None:
    for r in rates:
        if (r["condition"], r["set"], r["side"]) == (condition, set_name, side):
            return r
    return None


def _put(row: dict[str, Any], key: str, r: dict | None, col: str = "refusal") -> None:
    """``row[key]``, ``row[key_low]``, ``row[key_high]`` from a rates record's ``col`` and its interval."""
    if r is not None:
        row[key], row[f"{key}_low"], row[f"{key}_high"] = r[col], r[f"{col}_low"], r[f"{col}_high"]


def model_row(model: str, root: Path | None = None) -> dict[str, Any]:
    """One row of findings for ``model`` (missing stages give None).

    Every rate is over the items the judge scored (Wilson 95% interval; ``n_eval`` scored harmful items). The
    Cohen's d is that of the *selected* direction (stage 04's layer and position) in stage 03's per-candidate
    table, held out; stage 03's best-by-d candidate (chosen on validation pairs, after the late-layer cut) is beside
    it, labelled ``best_d_*``.
    """
    d = (root or runs_dir()) / model
    row: dict[str, Any] = {"model": model}
    sep = _read(d / "03_separability" / "best_candidate.json")
    if sep:
        row["best_d_layer"], row["best_d_position"] = sep.get("layer"), sep.get("position")
        row["best_d_chosen_by"], row["best_d_test"] = sep.get("by"), sep.get("d_test")
    s = _read(d / "04_ablate" / "summary.json")
    cl = _read(d / "03_separability" / "cross_layer.json")
    if cl:
        # participation ratio of the per-layer direction stack at the selected (else the best-separating) position
        pos = s["selected"]["position"] if s else (sep or {}).get("position", cl["positions"][-1])
        er = cl["effective_rank"][cl["positions"].index(pos)]
        row["direction_stack_participation_ratio"] = er["participation_ratio"]
    if s:
        row["layer"], row["position"] = s["selected"]["layer"], s["selected"]["position"]
        table = d / "03_separability" / "separability.csv"
        if table.exists():
            t = pd.read_csv(table)
            hit = t[(t.layer == row["layer"]) & (t.position == row["position"])]
            if len(hit):
                row["d_test"], row["d_test_low"], row["d_test_high"] = (float(hit.iloc[0][c]) for c in
                                                                        ("d_test", "d_test_lo", "d_test_hi"))
        rates = s["rates"]
        base = rate_record(rates, "baseline", "eval", "harmful")
        _put(row, "baseline_refusal", base)
        row["n_eval"] = base["n"] if base else None
        row["n_unscored"] = s.get("n_unscored")
        _put(row, "harmless_refusal", rate_record(rates, "baseline", "eval", "harmless"))
        sel = rate_record(rates, "selected", "eval", "harmful")
        _put(row, "ablated_refusal", sel)
        if sel:
            row["ablated_compliance"], row["ablated_coherence"] = sel["mean_compliance"], sel["mean_coherence"]
        _put(row, "ablated_harmless_refusal", rate_record(rates, "selected", "eval", "harmless"))
        _put(row, "random_refusal", rate_record(rates, "random", "eval", "harmful"))
        rng = [r for r in s["random_control"]["range"] if (r["set"], r["side"]) == ("eval", "harmful")]
        if rng:
            row["random_refusal_min"], row["random_refusal_max"] = rng[0]["refusal_min"], rng[0]["refusal_max"]
        for cond, key in (("baseline", "independent_baseline_refusal"), ("selected", "independent_ablated_refusal"),
                          ("random", "independent_random_refusal")):
            _put(row, key, rate_record(rates, cond, "independent", "harmful"))
        _put(row, "independent_ablated_harmless_refusal", rate_record(rates, "selected", "independent", "harmless"))
        v = s["verdict"]
        row["verdict"] = v["verdict"]
        row["effective_rank"] = v["effective_rank"]
        row["k1_compliance"], row["max_compliance"], row["verdict_basis"] = v["k1_compliance"], v["max_compliance"], v["basis"]
        row["gain_over_chance"] = v.get("gain_over_chance")
        row["judge"] = s.get("judge")
        row["original_rule_agrees"] = s["original_rule"]["agrees"]
    edited = d / "05_orthogonalize" / "rates.csv"
    if edited.exists():
        e = pd.read_csv(edited).to_dict("records")
        _put(row, "edited_refusal", rate_record(e, "edited", "eval", "harmful"))
        _put(row, "edited_harmless_refusal", rate_record(e, "edited", "eval", "harmless"))
        _put(row, "independent_edited_refusal", rate_record(e, "edited", "independent", "harmful"))
    cap = _read(d / "06_benchmark" / "capability.json")
    if cap:
        row["harmless_first_token_kl"] = cap["kl_ce"]["first_token_kl"]
        row["ce_delta"] = cap["kl_ce"]["ce_delta"]
    bench = d / "06_benchmark" / "benchmark_summary.csv"
    if bench.exists():
        b = pd.read_csv(bench).set_index("task")
        # the study's mean over its tasks where they ran (hub access), else the local task
        key = "mean (study tasks)" if "mean (study tasks)" in b.index else b.index[0]
        row["benchmark"] = f"{key} ({b.loc[key, 'metric']})"
        row["benchmark_base"] = float(b.loc[key, "base"])
        row["benchmark_delta"] = float(b.loc[key, "delta"])
    return row


def comparison_dir(root: Path | None = None) -> Path:
    """``runs/_compare/07_compare/``: the comparison's artifact folder (not created)."""
    return (root or runs_dir()) / COMPARE_RUN / "07_compare"


def cross_dir(stage: str, root: Path | None = None) -> Path:
    """``runs/_compare/<stage>/``: the artifact folder of a cross-model stage, created if missing."""
    d = (root or runs_dir()) / COMPARE_RUN / stage
    d.mkdir(parents=True, exist_ok=True)
    return d


def export_findings(table: pd.DataFrame, out_dir: Path) -> dict[str, Path]:
    """Write the findings table as ``findings.csv`` and ``findings.json`` (records; NaN as null) into ``out_dir``."""
    out_dir = Path(out_dir)
    records = [{k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()}
               for row in table.to_dict("records")]
    return {"csv": write_csv(out_dir / FINDINGS_FILES[0], table),
            "json": write_json(out_dir / FINDINGS_FILES[1], {"columns": list(table.columns), "rows": records})}


def findings_table(models: list[str] | None = None, root: Path | None = None) -> pd.DataFrame:
    """One row per model with results (see :func:`model_row`)."""
    models = models if models is not None else models_with_results(root)
    return pd.DataFrame([model_row(m, root) for m in models])
