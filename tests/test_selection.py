"""Selection and verdict logic (pure functions), and the refusal score's arithmetic."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from refusal.refusal_score import kl_last, refusal_score
from refusal.selection import VerdictThresholds, bases_for_sweep, select, verdict


def _curve(comp, coh=None):
    coh = coh or [1.0] * len(comp)
    return pd.DataFrame({"k": range(1, len(comp) + 1), "compliance": comp, "coherence": coh})


def test_verdicts():
    assert verdict(_curve([0.9, 0.92, 0.95]), baseline_refusal=0.8)["verdict"] == "centralized"
    d = verdict(_curve([0.2, 0.3, 0.45, 0.5]), baseline_refusal=0.8)
    assert d["verdict"] == "distributed" and d["effective_rank"] == 3  # 0.45 >= 0.9 * 0.5
    assert verdict(_curve([0.1, 0.12, 0.15]), baseline_refusal=0.8)["verdict"] == "resistant"
    # high compliance at k=1 but incoherent: not centralized
    assert verdict(_curve([0.9, 0.9], [0.3, 0.3]), baseline_refusal=0.8)["verdict"] == "resistant"
    # a model that does not refuse has no refusal to remove
    assert verdict(_curve([0.9, 0.9]), baseline_refusal=0.05)["verdict"] == "no refusal"
    t = VerdictThresholds(centralized_compliance=0.95)
    assert verdict(_curve([0.9, 0.92]), t, baseline_refusal=0.8)["verdict"] == "resistant"


def test_select_prefers_unfiltered_lowest_bypass_and_falls_back():
    scores = pd.DataFrame({"layer": [1, 2, 3, 4], "pos_index": [0] * 4, "bypass": [-5.0, -3.0, -1.0, float("nan")],
                           "filtered": ["kl", "", "", "late layer"]})
    row, note = select(scores)
    assert int(row.layer) == 2 and note == ""
    scores["filtered"] = ["kl", "induce", "kl", "late layer"]
    row, note = select(scores)
    assert int(row.layer) == 1 and "no candidate passed" in note
    with pytest.raises(ValueError):
        select(scores, strict=True)


def test_refusal_score_is_log_odds():
    probs = torch.tensor([[0.2, 0.3, 0.5], [0.05, 0.05, 0.9]])
    lp = probs.log()
    s = refusal_score(lp, [0, 1])
    assert torch.allclose(s, torch.tensor([math.log(0.5 / 0.5), math.log(0.1 / 0.9)]), atol=1e-6)
    assert torch.allclose(kl_last(lp, lp), torch.zeros(2))
    q = torch.tensor([[1 / 3] * 3] * 2).log()
    expected = (probs * (probs.log() - q)).sum(-1)
    assert torch.allclose(kl_last(lp, q), expected, atol=1e-6)


def test_sweep_bases_are_orthonormal_and_start_with_selected():
    torch.manual_seed(0)
    L, P, d = 6, 2, 16
    dirs = torch.nn.functional.normalize(torch.randn(L, P, d), dim=-1)
    valid = torch.ones(L, P, dtype=torch.bool)
    scores = pd.DataFrame([{"layer": l, "pos_index": p, "bypass": float(l)} for l in range(L) for p in range(P)])
    bases = bases_for_sweep(dirs, valid, scores, pos_index=1, layer=3, pair_diffs=torch.randn(40, d), k_max=4)
    for name, q in bases.items():
        assert q.shape == (d, 4), name
        assert torch.allclose(q.T @ q, torch.eye(4), atol=1e-5), name
    assert abs(float(bases["top_layers"][:, 0] @ dirs[3, 1])) > 0.9999
