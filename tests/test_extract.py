"""Extraction (02) and separability (03): exactness of batched extraction, statistics against NumPy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from refusal import data as D
from refusal.extraction.activations import collect, project, template_positions
from refusal.extraction.directions import diff_of_means, extract_directions, read_directions, write_directions
from refusal.extraction.separability import (
    best_candidate,
    bootstrap_d_ci,
    cohens_d,
    cosine_matrix,
    effective_rank,
    paired_cosine,
    threshold_accuracy,
)


@pytest.fixture(scope="module")
def smollm_bridge(smollm):
    from refusal.models import load_bridge

    return load_bridge(smollm)  # a separate copy: the session's model stays un-bridged


def _pairs(n):
    pairs = D.default_pairs()
    train = D.default_pair_splits(0).train[:n]
    return [pairs[i][0] for i in train], [pairs[i][1] for i in train]


def _batched_vs_sequential(lm, bridge, n_pairs):
    harmful, safe = _pairs(n_pairs)
    out = {}
    for mode in ("batched", "sequential"):
        d, _, _ = extract_directions(bridge, lm, harmful, safe, mode=mode, batch_size=8, progress=False)
        out[mode] = d
    b, s = out["batched"], out["sequential"]
    assert torch.equal(b.valid, s.valid)
    cos = paired_cosine(b.directions, s.directions)
    return b, cos


def test_template_positions_smollm(smollm):
    tp = template_positions(smollm)
    assert tp.positions == list(range(-len(tp.positions), 0))
    assert tp.tokens[0] == "<|im_end|>" and tp.tokens[-1] == "\n"
    assert "".join(tp.tokens) == "<|im_end|>\n<|im_start|>assistant\n"


def test_batched_equals_sequential_smollm(smollm, smollm_bridge):
    b, cos = _batched_vs_sequential(smollm, smollm_bridge, 16)
    # layer 0 at fixed template tokens: every prompt has the same embedding -> degenerate, zeros not NaN
    assert not b.valid[0].any() and b.valid[1:].all()
    assert torch.isfinite(b.directions).all() and (b.directions[0] == 0).all()
    v = b.valid.numpy()
    assert cos[v].min() >= 0.9999, cos[v].min()


def test_batched_equals_sequential_qwen(qwen05):
    from refusal.models import load_bridge

    bridge = load_bridge(qwen05)
    b, cos = _batched_vs_sequential(qwen05, bridge, 8)
    v = b.valid.numpy()
    assert v[1:].all()
    assert cos[v].min() >= 0.9999, cos[v].min()


def test_activations_equal_hf_hidden_states(smollm, smollm_bridge):
    """The bridge's resid_pre at layer i is HF's hidden_states[i] (RMSNorm models: no folding)."""
    harmful, _ = _pairs(3)
    tp = template_positions(smollm)
    st = collect(smollm_bridge, smollm, harmful, tp.positions, mode="batched", keep=torch.float32, progress=False)
    ref = []
    with torch.inference_mode():
        for text in smollm.chat(harmful):
            ids = smollm.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
            hs = smollm.model(ids, output_hidden_states=True).hidden_states  # L+1 entries
            ref.append(torch.stack([hs[i][0, tp.positions] for i in range(smollm.n_layers)]))
    ref = torch.stack(ref)  # [n, L, P, d]
    assert torch.allclose(st.acts, ref, atol=1e-4, rtol=1e-4)
    assert torch.allclose(st.mean, ref.double().mean(0), atol=1e-4)
    assert st.projections is None  # streaming: nothing per prompt unless asked


def test_projections_match_kept_activations(smollm, smollm_bridge):
    harmful, _ = _pairs(4)
    tp = template_positions(smollm)
    g = torch.Generator().manual_seed(0)
    dirs = torch.nn.functional.normalize(torch.randn(smollm.n_layers, len(tp.positions), smollm.d_model, generator=g), dim=-1)
    st = collect(smollm_bridge, smollm, harmful, tp.positions, directions=dirs, keep=torch.float32, progress=False)
    assert st.projections.shape == (4, smollm.n_layers, len(tp.positions))
    assert torch.allclose(st.projections, project(st.acts, dirs), atol=1e-4)


def test_stop_at_layer_subset(smollm, smollm_bridge):
    """Collecting layers [2, 5] gives the same numbers as collecting all layers."""
    harmful, _ = _pairs(2)
    tp = template_positions(smollm)
    full = collect(smollm_bridge, smollm, harmful, tp.positions, progress=False)
    part = collect(smollm_bridge, smollm, harmful, tp.positions, layers=[5, 2], progress=False)
    assert part.layers == [2, 5]
    assert torch.allclose(part.sum, full.sum[[2, 5]])


# ----------------------------------------------------------------------------- statistics vs NumPy


def _d_numpy(a, b):
    na, nb = len(a), len(b)
    sp = np.sqrt(((na - 1) * np.var(a, ddof=1) + (nb - 1) * np.var(b, ddof=1)) / (na + nb - 2))
    return (np.mean(a) - np.mean(b)) / sp


def test_cohens_d_and_heldout_d_match_numpy():
    rng = np.random.default_rng(1)
    L, P, d = 3, 2, 16
    shift = rng.normal(size=(L, P, d))
    Xh_tr, Xs_tr = rng.normal(size=(40, L, P, d)) + shift, rng.normal(size=(40, L, P, d))
    Xh_te, Xs_te = rng.normal(size=(30, L, P, d)) + shift, rng.normal(size=(25, L, P, d))
    dirs = diff_of_means(torch.tensor(Xh_tr.mean(0)), torch.tensor(Xs_tr.mean(0))).directions.double()
    proj = lambda X: np.einsum("nlpd,lpd->nlp", X, dirs.numpy())  # noqa: E731
    d_in = cohens_d(proj(Xh_tr), proj(Xs_tr))
    d_out = cohens_d(proj(Xh_te), proj(Xs_te))
    for l in range(L):
        for p in range(P):
            u = (Xh_tr[:, l, p].mean(0) - Xs_tr[:, l, p].mean(0))
            u = u / np.linalg.norm(u)
            assert d_in[l, p] == pytest.approx(_d_numpy(Xh_tr[:, l, p] @ u, Xs_tr[:, l, p] @ u), rel=1e-5)
            assert d_out[l, p] == pytest.approx(_d_numpy(Xh_te[:, l, p] @ u, Xs_te[:, l, p] @ u), rel=1e-5)
    assert (d_in > 0).all() and (d_in > d_out).mean() > 0.5  # in-sample is optimistic


def test_bootstrap_ci_seeded_and_covers_estimate():
    rng = np.random.default_rng(2)
    h, s = rng.normal(1.0, 1.0, size=(60, 4)), rng.normal(0.0, 1.0, size=(60, 4))
    lo, hi = bootstrap_d_ci(h, s, n_boot=400, seed=7)
    lo2, hi2 = bootstrap_d_ci(h, s, n_boot=400, seed=7)
    assert np.array_equal(lo, lo2) and np.array_equal(hi, hi2)
    d = cohens_d(h, s)
    assert (lo < d).all() and (d < hi).all() and (hi - lo < 1.2).all()
    # paired resampling with one index set: candidate 0 against a brute-force loop
    r = np.random.default_rng(7)
    ref = []
    for _ in range(400):
        i = r.integers(0, 60, size=60)
        ref.append(_d_numpy(h[i, 0], s[i, 0]))
    assert lo[0] == pytest.approx(np.quantile(ref, 0.025)) and hi[0] == pytest.approx(np.quantile(ref, 0.975))


def test_threshold_accuracy_matches_brute_force():
    rng = np.random.default_rng(3)
    th, ts = rng.normal(1, 1, size=(30, 3)), rng.normal(0, 1, size=(35, 3))
    eh, es = rng.normal(1, 1, size=(20, 3)), rng.normal(0, 1, size=(22, 3))
    r = threshold_accuracy(th, ts, eh, es)
    for c in range(3):
        vals = np.sort(np.concatenate([th[:, c], ts[:, c]]))
        cands = np.concatenate([[vals[0] - 1], (vals[1:] + vals[:-1]) / 2, [vals[-1] + 1]])
        accs = [((th[:, c] > t).sum() + (ts[:, c] <= t).sum()) / 65 for t in cands]
        assert r["train_acc"][c] == pytest.approx(max(accs))
        t = r["threshold"][c]
        assert r["test_acc"][c] == pytest.approx(((eh[:, c] > t).sum() + (es[:, c] <= t).sum()) / 42)


def test_degenerate_candidates_are_zero_not_nan(tmp_path):
    mh = torch.randn(3, 2, 8, dtype=torch.float64)
    ms = mh.clone()
    ms[1:] += torch.randn(2, 2, 8, dtype=torch.float64)
    dirs = diff_of_means(mh, ms, {"positions": [-2, -1], "layers": [0, 1, 2], "hook": "resid_pre", "split": "train"})
    assert dirs.valid.tolist() == [[False, False], [True, True], [True, True]]
    assert (dirs.directions[0] == 0).all() and torch.isfinite(dirs.directions).all()
    assert torch.allclose(dirs.directions[1:].norm(dim=-1), torch.ones(2, 2))
    back = read_directions(write_directions(tmp_path / "d.safetensors", dirs))
    assert torch.equal(back.directions, dirs.directions) and back.meta["positions"] == [-2, -1]


def test_cosines_and_effective_rank():
    rng = np.random.default_rng(4)
    u = rng.normal(size=32)
    same = np.stack([u, 2 * u, 0 * u, 3 * u])
    assert np.allclose(cosine_matrix(same)[[0, 1, 3]][:, [0, 1, 3]], 1) and (cosine_matrix(same)[2] == 0).all()
    one = effective_rank(np.stack([u / np.linalg.norm(u)] * 5))
    assert one["participation_ratio"] == pytest.approx(1.0) and one["n_for_energy"] == 1
    q, _ = np.linalg.qr(rng.normal(size=(32, 6)))
    orth = effective_rank(q.T)
    assert orth["participation_ratio"] == pytest.approx(6.0) and orth["n_for_energy"] == 6
    assert paired_cosine(np.stack([u, u]), np.stack([u, -u])).tolist() == pytest.approx([1, -1])


def test_best_candidate_skips_invalid_and_late_layers():
    score = np.array([[9.0, 0.0], [1.0, 2.0], [3.0, 1.0], [0.0, 8.0]])
    valid = np.array([[False, True], [True, True], [True, True], [True, True]])
    assert best_candidate(score, valid) == (3, 1)
    assert best_candidate(score, valid, exclude_last_frac=0.25) == (2, 0)


@pytest.mark.parametrize("hook", ["resid_pre", "resid_post"])
def test_hf_hooks_equal_bridge(smollm, smollm_bridge, hook):
    """The plain-PyTorch backend (hooks on lm.model's decoder layers) gives the bridge's numbers, batched."""
    harmful, _ = _pairs(5)
    tp = template_positions(smollm)
    a = collect(smollm_bridge, smollm, harmful, tp.positions, hook=hook, batch_size=5, keep=torch.float32, progress=False)
    b = collect(smollm.model, smollm, harmful, tp.positions, hook=hook, batch_size=5, keep=torch.float32, progress=False)
    seq = collect(smollm.model, smollm, harmful, tp.positions, hook=hook, mode="sequential", keep=torch.float32, progress=False)
    scale = a.acts.abs().amax(dim=(0, 2, 3), keepdim=True)  # per layer: late layers have large entries
    assert ((a.acts - b.acts).abs() / scale).max() < 1e-5  # eager (bridge) vs sdpa (HF) attention: rounding only
    assert ((seq.acts - b.acts).abs() / scale).max() < 1e-5
