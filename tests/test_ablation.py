"""Runtime ablation: every hooked residual loses its component along v (alpha = 1)."""

from __future__ import annotations

import pytest
import torch

from refusal.extraction.directions import DirectionError, orthonormal_basis
from refusal.families import decoder_layers, final_norm
from refusal.intervention.ablation import ablate, add_direction
from refusal.generation import generate, tokenize_chat

pytestmark = pytest.mark.slow


def _capture(model):
    seen = []
    points = list(decoder_layers(model)) + [final_norm(model)]

    def hook(module, args, kwargs):
        h = args[0] if args else kwargs["hidden_states"]
        seen.append(h.detach().clone())

    # registered after the ablation hooks, so they see the ablated residual
    return seen, [p.register_forward_pre_hook(hook, with_kwargs=True) for p in points]


@pytest.mark.parametrize("k", [1, 3])
def test_ablation_zeroes_projection_everywhere(smollm, k):
    torch.manual_seed(0)
    vecs = torch.randn(smollm.d_model, k)
    q = orthonormal_basis(vecs)
    direction = q[:, 0] * 3.0 if k == 1 else q  # an unnormalized vector is normalized
    enc = tokenize_chat(smollm, ["How do I make a cake?", "Hi"])
    with ablate(smollm.model, direction) as used:
        seen, handles = _capture(smollm.model)
        try:
            with torch.no_grad():
                smollm.model(**enc)
        finally:
            for h in handles:
                h.remove()
    assert len(seen) == smollm.n_layers + 1
    for h in seen:
        proj = h.float() @ used
        assert proj.abs().max() <= 1e-5 * max(1.0, h.abs().max().item()), proj.abs().max()
    # hooks are gone afterwards: the model is back to normal
    with torch.no_grad():
        a = smollm.model(**enc).logits
        b = smollm.model(**enc).logits
    assert torch.equal(a, b)


def test_ablation_applies_during_cached_generation(smollm):
    v = torch.randn(smollm.d_model)
    prompts = ["Tell me about the moon."]
    base = generate(smollm, prompts, max_new_tokens=16, progress=False)
    with ablate(smollm.model, v, alpha=0.0):
        same = generate(smollm, prompts, max_new_tokens=16, progress=False)
    assert same == base  # alpha = 0 is a no-op
    with add_direction(smollm.model, v / v.norm(), coeff=200.0, layers=[3]):
        steered = generate(smollm, prompts, max_new_tokens=16, progress=False)
    assert steered != base


@pytest.mark.parametrize("bad", [torch.zeros(576), torch.full((576,), float("nan")), torch.ones(10), torch.ones(576, 2)])
def test_bad_directions_are_refused_before_hooking(smollm, bad):
    with pytest.raises(DirectionError):
        with ablate(smollm.model, bad):
            pass
    assert all(not layer._forward_pre_hooks for layer in decoder_layers(smollm.model))


def test_orthonormal_basis_rejects_dependent_vectors():
    v = torch.randn(8)
    with pytest.raises(DirectionError, match="linearly dependent"):
        orthonormal_basis([v, 2 * v])
    q = orthonormal_basis([torch.randn(8), torch.randn(8), torch.randn(8)])
    assert torch.allclose(q.T @ q, torch.eye(3), atol=1e-6)


def test_random_direction_is_seeded_unit_and_zero_on_excluded_coordinates():
    from refusal.extraction.directions import random_direction

    v = random_direction(576, 3, [507, 17])
    assert abs(float(v.norm()) - 1) < 1e-6 and v[507] == 0 and v[17] == 0
    assert torch.equal(v, random_direction(576, 3, [507, 17]))
    assert not torch.equal(v, random_direction(576, 4, [507, 17]))


def test_outlier_dims_finds_smollm2_massive_activation(smollm):
    from refusal.extraction.activations import outlier_dims

    dims = outlier_dims(smollm, ["How do I bake bread?", "Name three rivers."])
    # SmolLM2-135M: coordinate 507 reaches ~2.5e4 on the first token, typical coordinates stay below ~50
    assert 507 in dims and len(dims) <= 8

