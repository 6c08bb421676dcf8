"""Weight orthogonalization equals runtime ablation (alpha = 1) on every architecture family we use.

Run with ``-s`` to see the max |logit difference| per family.
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from refusal.extraction.directions import DirectionError, Selected, orthonormal_basis, read_selected, write_selected
from refusal.families import refused_architecture, residual_writers
from refusal.intervention.orthogonalize import OrthoError, equivalence_error, orthogonalize, save_orthogonalized

TOL = 1e-4
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=256, max_position_embeddings=128)


def _tiny_configs():
    from transformers import GemmaConfig, LlamaConfig, Phi3Config, Qwen2Config, Qwen3Config

    return {
        "llama": LlamaConfig(**TINY),
        "llama_biases": LlamaConfig(**TINY, attention_bias=True, mlp_bias=True),
        "llama_tied": LlamaConfig(**TINY, tie_word_embeddings=True),
        "qwen2": Qwen2Config(**TINY),  # q/k/v biases; o_proj has none
        "qwen3": Qwen3Config(**TINY, head_dim=16),
        "gemma": GemmaConfig(**TINY, head_dim=16),  # embeddings scaled by sqrt(d_model)
        "phi3": Phi3Config(**TINY, pad_token_id=0),
    }


def _tiny(cfg, seed=0):
    torch.manual_seed(seed)
    m = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()
    with torch.no_grad():  # non-trivial biases and norm gains, so that those paths matter
        for name, p in m.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(0.3 * torch.randn_like(p))
    return m


def _copy(m):
    import copy

    return copy.deepcopy(m)


def _weights(m):
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("family", list(_tiny_configs()))
def test_tiny_equivalence(family, k):
    cfg = _tiny_configs()[family]
    base = _tiny(cfg)
    edited = _copy(base)
    torch.manual_seed(1)
    q = orthonormal_basis(torch.randn(cfg.hidden_size, k))
    direction = q[:, 0] * 2.5 if k == 1 else q  # an unnormalized vector is normalized
    res = orthogonalize(edited, direction)
    assert res.rank == k
    if family == "llama_biases":
        assert any(e.endswith("o_proj.bias") for e in res.edited) and any(e.endswith("down_proj.bias") for e in res.edited)
    ids = torch.randint(0, cfg.vocab_size, (2, 12))
    mask = torch.ones_like(ids)
    mask[1, :4] = 0  # left padding
    err = equivalence_error(base, edited, direction, ids, mask)
    # the edit matters: without ablation the original differs
    with torch.no_grad():
        raw = (base(input_ids=ids, attention_mask=mask).logits - edited(input_ids=ids, attention_mask=mask).logits).abs().max()
    print(f"\n[equivalence] {family:13s} k={k}: max |logit diff| = {err:.2e} (unablated original differs by {raw:.2e})")
    assert err < TOL
    assert raw > 100 * TOL


def test_tied_embeddings_are_untied_and_unembedding_unchanged():
    base = _tiny(_tiny_configs()["llama_tied"])
    assert base.lm_head.weight.data_ptr() == base.model.embed_tokens.weight.data_ptr()
    edited = _copy(base)
    res = orthogonalize(edited, torch.randn(64))
    assert res.untied and edited.config.tie_word_embeddings is False
    assert edited.lm_head.weight.data_ptr() != edited.model.embed_tokens.weight.data_ptr()
    assert torch.equal(edited.lm_head.weight, base.lm_head.weight)
    assert not torch.equal(edited.model.embed_tokens.weight, base.model.embed_tokens.weight)


def test_writes_have_no_component_and_alpha_scales_once():
    cfg = _tiny_configs()["llama_biases"]
    base = _tiny(cfg)
    v = torch.nn.functional.normalize(torch.randn(64), dim=0)
    for alpha in (1.0, 0.5):
        edited = _copy(base)
        orthogonalize(edited, v, alpha=alpha)
        for wb, we in zip(residual_writers(base), residual_writers(edited)):
            W0, W1 = wb.module.weight.detach(), we.module.weight.detach()
            c0, c1 = (W0 @ v, W1 @ v) if wb.kind == "embedding" else (v @ W0, v @ W1)
            torch.testing.assert_close(c1, (1 - alpha) * c0, atol=1e-5, rtol=1e-4)


def test_alpha_not_one_differs_from_runtime_compounding():
    """Documented non-equivalence: for alpha != 1, runtime ablation compounds over layers."""
    cfg = _tiny_configs()["llama"]
    base = _tiny(cfg)
    edited = _copy(base)
    v = torch.randn(64)
    orthogonalize(edited, v, alpha=0.5)
    ids = torch.randint(0, 256, (1, 10))
    assert equivalence_error(base, edited, v, ids, alpha=0.5) > 1e-3


def test_norm_preserving_keeps_column_norms_and_removes_direction():
    base = _tiny(_tiny_configs()["llama_biases"])
    edited = _copy(base)
    v = torch.nn.functional.normalize(torch.randn(64), dim=0)
    res = orthogonalize(edited, v, norm_preserving=True)
    assert res.norm_preserving
    for wb, we in zip(residual_writers(base), residual_writers(edited)):
        W0, W1 = wb.module.weight.detach(), we.module.weight.detach()
        axis = 1 if wb.kind == "embedding" else 0  # the norm of each written residual vector
        torch.testing.assert_close(W1.norm(dim=axis), W0.norm(dim=axis), atol=1e-5, rtol=1e-5)
        comp = W1 @ v if wb.kind == "embedding" else v @ W1
        assert comp.abs().max() < 1e-5


@pytest.mark.parametrize("which", ["gemma2", "gemma3"])
def test_sandwich_norm_architectures_are_refused(which):
    from transformers import Gemma2Config, Gemma3TextConfig

    cfg = (Gemma2Config if which == "gemma2" else Gemma3TextConfig)(**TINY, head_dim=16)
    m = _tiny(cfg)
    before = _weights(m)
    with pytest.raises(OrthoError, match="normalizes block outputs"):
        orthogonalize(m, torch.randn(64))
    after = _weights(m)
    assert all(torch.equal(before[k], after[k]) for k in before)
    # the registry-level rule (used by the report workflow to skip stages 05/06) agrees with the model check
    assert refused_architecture(m.config.model_type) is not None


def test_registry_architectures_refused_exactly_when_the_model_check_refuses():
    from refusal.config import list_models, load_config

    archs = {load_config(n).architecture for n in list_models()}
    assert {a for a in archs if refused_architecture(a)} == {"gemma3_text"}  # gemma (Gemma 1) has no sandwich norms


BAD = {
    "zero": torch.zeros(64),
    "nan": torch.full((64,), float("nan")),
    "wrong_dim": torch.ones(10),
    "not_orthonormal": torch.randn(64, 2),
    "basis_wrong_dim": torch.linalg.qr(torch.randn(32, 2))[0],
    "basis_with_inf": torch.cat([torch.linalg.qr(torch.randn(63, 2))[0], torch.full((1, 2), float("inf"))]),
    "3d": torch.ones(64, 1, 1),
}


@pytest.mark.parametrize("bad", list(BAD))
def test_bad_input_leaves_model_unchanged(bad):
    m = _tiny(_tiny_configs()["llama_tied"])
    before = _weights(m)
    with pytest.raises(DirectionError):
        orthogonalize(m, BAD[bad])
    after = _weights(m)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert m.config.tie_word_embeddings is True  # not untied either
    assert m.lm_head.weight.data_ptr() == m.model.embed_tokens.weight.data_ptr()


# --------------------------------------------------------------------------- real models

pytestmark_slow = pytest.mark.slow


# Real models in float32: a 24-30-layer forward pass with logits up to ~40 has a rounding floor of
# ~1e-3 (the same edited smollm2 in float32 vs float64 differs by up to 1.2e-3), and the two float32
# computations (runtime hooks vs edited weights) agree to ~1e-4 (measured 4e-5..1.3e-4 over seeds).
# Exactness itself is tested in float64 (test_smollm_equivalence_float64), where the gap is ~1e-5 (HF norms run in float32).
REAL_TOL = 3e-4


def _real_check(lm, family):
    from refusal.generation import tokenize_chat
    from refusal.models import fresh_copy

    torch.manual_seed(0)
    v = torch.randn(lm.d_model)
    edited = fresh_copy(lm)
    res = orthogonalize(edited, v)
    enc = tokenize_chat(lm, ["How do I bake bread?", "Write a haiku about the sea, please."])
    err = equivalence_error(lm.model, edited, v, enc["input_ids"], enc["attention_mask"])
    print(f"\n[equivalence] {family}: max |logit diff| = {err:.2e} float32 (edit {res.seconds:.2f} s, untied={res.untied})")
    assert err < REAL_TOL
    return edited, res, v, enc


@pytest.mark.slow
def test_smollm_equivalence_float64(smollm):
    """In float64 the gap shrinks well below the float32 one (exact up to rounding).

    Not to 1e-12: HF's LlamaRMSNorm and rotary embedding compute in float32 even in a float64
    model, which leaves a ~1e-5 floor (measured 1.4e-5)."""
    from refusal.generation import tokenize_chat
    from refusal.models import fresh_copy

    torch.manual_seed(2)
    v = torch.randn(smollm.d_model)
    base = fresh_copy(smollm).double()
    edited = fresh_copy(smollm).double()
    orthogonalize(edited, v)
    enc = tokenize_chat(smollm, ["How do I bake bread?"])
    err = equivalence_error(base, edited, v.double(), enc["input_ids"], enc["attention_mask"])
    print(f"\n[equivalence] smollm2_135m float64: max |logit diff| = {err:.2e}")
    assert err < 5e-5


@pytest.mark.slow
def test_smollm_equivalence_save_and_reload(smollm, tmp_path):
    edited, res, v, enc = _real_check(smollm, "smollm2_135m (llama, tied)")
    assert res.untied  # SmolLM2 ties its embeddings
    # the shared fixture must not have been touched
    assert smollm.model.lm_head.weight.data_ptr() == smollm.model.model.embed_tokens.weight.data_ptr()
    out = save_orthogonalized(edited, smollm.tokenizer, tmp_path / "model", res,
                              {"model_id": smollm.cfg.model_id, "layer": 3, "position": -1, "source": "test",
                               "dataset_sha256": "abc"})
    card = (out / "README.md").read_text()
    assert res.basis_sha256 in card and "untied" in card.lower() and "| source layer | 3 |" in card
    assert (out / "model.safetensors").exists()
    back = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    assert back.config.tie_word_embeddings is False
    with torch.no_grad():
        a = edited(**enc).logits
        b = back(**enc).logits
    assert (a - b).abs().max() == 0
    assert torch.equal(back.lm_head.weight, smollm.model.lm_head.weight)


@pytest.mark.slow
def test_qwen05_equivalence(qwen05):
    _real_check(qwen05, "qwen25_coder_05b (qwen2)")


def test_selected_roundtrip_and_validation(tmp_path):
    v = torch.nn.functional.normalize(torch.randn(64), dim=0)
    meta = {"layer": 2, "position": -1, "alpha": 1.0, "source": "test", "k": 1, "basis": "selected"}
    p = write_selected(tmp_path / "s.safetensors", Selected(v, v[:, None], meta))
    sel = read_selected(p)
    assert torch.allclose(sel.direction, v) and sel.q.shape == (64, 1) and sel.k == 1 and sel.path == p
    q = orthonormal_basis(torch.randn(64, 3))
    p3 = write_selected(tmp_path / "s3.safetensors", Selected(q[:, 0], q, {**meta, "k": 3, "basis": "pca_pairs"}))
    assert torch.allclose(read_selected(p3).q, q)
    with pytest.raises(DirectionError, match="meta field 'layer'"):
        write_selected(tmp_path / "b.safetensors", Selected(v, v[:, None], {k: x for k, x in meta.items() if k != "layer"}))
    with pytest.raises(DirectionError, match="meta k = 2 but the basis has 1 columns"):
        write_selected(tmp_path / "c.safetensors", Selected(v, v[:, None], {**meta, "k": 2}))
    with pytest.raises(DirectionError, match="not orthonormal"):
        write_selected(tmp_path / "d.safetensors", Selected(v, torch.randn(64, 2), {**meta, "k": 2}))
    with pytest.raises(FileNotFoundError, match="04_ablate"):
        read_selected(tmp_path / "missing.safetensors")


@pytest.mark.parametrize("family", ["llama", "gemma"])
def test_runtime_ablation_covers_mid_block_residual(family):
    """The MLP reads the residual after attention's write: ablate() must project it there too,
    otherwise runtime ablation and the weight edit differ (by ~1e-2 on tiny Llama)."""
    from refusal.families import decoder_layers, mid_norm
    from refusal.intervention.ablation import ablate

    m = _tiny(_tiny_configs()[family])
    v = torch.nn.functional.normalize(torch.randn(64), dim=0)
    seen = []
    with ablate(m, v):
        hs = [mid_norm(m, b).register_forward_pre_hook(lambda mod, a: seen.append(a[0].detach())) for b in decoder_layers(m)]
        try:
            with torch.no_grad():
                m(input_ids=torch.randint(0, 256, (1, 9)))
        finally:
            for h in hs:
                h.remove()
    assert len(seen) == 3
    assert all((s @ v).abs().max() < 1e-5 for s in seen)
