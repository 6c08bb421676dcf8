"""The site: pages listed in _quarto.yml exist, and every number on the index page comes from an artifact."""

from __future__ import annotations

import re

import yaml

from refusal import site
from refusal.artifacts import write_json
from refusal.paths import REPO_ROOT


def _fake_run(root, model, seed):
    d = root / model
    f = lambda x: round(x + seed / 1000, 4)  # noqa: E731  distinctive numbers per model
    write_json(d / "03_separability" / "best_candidate.json",
               {"layer": 7, "pos_index": 4, "position": -1, "d_test": f(1.234), "d_test_lo": f(1.0), "d_test_hi": f(1.5)})
    write_json(d / "03_separability" / "cross_layer.json",
               {"positions": [-2, -1], "effective_rank": [{"participation_ratio": 3.0}, {"participation_ratio": f(2.5)}]})
    write_json(d / "04_ablate" / "summary.json", {
        "baseline": {"harmful_refusal": {"rate": f(0.61), "low": f(0.44), "high": f(0.76), "n": 32},
                     "harmless_refusal": {"rate": f(0.03), "low": 0.0, "high": 0.1, "n": 32}, "judge": "offline-v1"},
        "selected": {"layer": 9, "position": -1},
        "ablation": {"selected": {"harmful_refusal_rate": f(0.06), "harmful_refusal_low": f(0.02),
                                  "harmful_refusal_high": f(0.2), "harmful_compliance": f(0.81), "harmful_coherence": f(0.88)},
                     "random": {"harmful_refusal_rate": f(0.59)}},
        "original_rule": {"agrees": True},
        "verdict": {"verdict": "centralized", "effective_rank": 1, "k1_compliance": f(0.81), "max_compliance": f(0.83),
                    "basis": "top_layers"},
    })
    write_json(d / "06_benchmark" / "capability.json", {"kl_ce": {"first_token_kl": f(0.0421), "ce_delta": 0.01}})
    return d


def test_index_numbers_all_come_from_artifacts(tmp_path):
    for i, m in enumerate(["model_a", "model_b"]):
        _fake_run(tmp_path, m, i)
    from refusal.findings import findings_table

    table, notes = site.findings_markdown(findings_table(root=tmp_path))
    rows = [r for r in table.splitlines() if r.startswith("| `")]
    assert len(rows) == 2
    artifact_text = " ".join(p.read_text() for p in tmp_path.rglob("*.json"))
    artifact_numbers = {float(x) for x in re.findall(r"-?\d+\.?\d*", artifact_text)}
    for row in rows:
        for num in re.findall(r"(?<![\w`])-?\d+\.\d+|(?<![\w.`-])\d+(?![\w.])", row):
            value = float(num)
            # each printed number is an artifact value rounded to the printed digits
            digits = len(num.split(".")[1]) if "." in num else 0
            assert any(abs(round(a, digits) - value) < 1e-9 for a in artifact_numbers), (num, row)
    assert "centralized" in rows[0] and "offline-v1" in notes and "n = 32" in notes


def test_index_page_generated_and_quarto_pages_exist(tmp_path, monkeypatch):
    monkeypatch.setenv("REFUSAL_RUNS", str(tmp_path))
    page = site.write_index()
    text = page.read_text()
    assert "## Findings" in text and "Responsible release" in text and "$" not in text.split("## Findings")[1][:200]
    cfg = yaml.safe_load((REPO_ROOT / "_quarto.yml").read_text())
    for entry in cfg["project"]["render"]:
        if "*" not in entry:
            assert (REPO_ROOT / entry).exists(), entry
    for item in cfg["website"]["navbar"]["left"]:
        assert (REPO_ROOT / item["href"]).exists(), item
