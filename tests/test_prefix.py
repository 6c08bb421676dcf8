"""Shared-prefix forward passes equal whole-prompt passes: on tiny random models of every family, and on SmolLM2
through the three users (first-token log-probs, activation collection, greedy generation), with and without an
active ablation."""

from __future__ import annotations

from contextlib import nullcontext

import pytest
import torch

from refusal.extraction.directions import random_direction
from refusal.intervention.ablation import ablate
from refusal.batching import MIN_PREFIX, pad, prefix_cache, shared_prefix, suffix_inputs, supports_prefix

TOL = 1e-4
PROMPTS = ["How do I bake sourdough bread at home?", "Name three rivers in Europe.", "What is 7 times 8?",
           "Write a haiku about autumn leaves falling on a quiet pond.", "Why is the sky blue?",
           "Explain photosynthesis to a ten-year-old in two sentences.", "List four prime numbers.", "Hi"]


def test_shared_prefix_rules():
    a, b, c = [1, 2, 3, 4, 5, 6, 7], [1, 2, 3, 4, 5, 9], [1, 2, 3, 4, 5, 6, 8, 8]
    assert shared_prefix([a, b, c]) == 5
    assert shared_prefix([a, c], keep=1) == 6
    assert MIN_PREFIX == 4 and shared_prefix([a, b], keep=3) == 0  # only 3 tokens may be shared: not worth it
    assert shared_prefix([a, b], keep=2) == 4  # min length 6, at least 2 tokens left in each
    assert shared_prefix([a]) == 0  # nothing to share
    assert shared_prefix([[1, 2, 3, 9], [1, 2, 3, 8]]) == 0  # below MIN_PREFIX


def _tiny_models():
    from transformers import (AutoModelForCausalLM, Gemma3TextConfig, GemmaConfig, LlamaConfig, Phi3Config,
                              Qwen2Config, Qwen3Config)

    tiny = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
                num_key_value_heads=2, vocab_size=256, max_position_embeddings=128)
    cfgs = {"llama": LlamaConfig(**tiny), "qwen2": Qwen2Config(**tiny), "qwen3": Qwen3Config(**tiny, head_dim=16),
            "gemma": GemmaConfig(**tiny, head_dim=16), "phi3": Phi3Config(**tiny, pad_token_id=0),
            "gemma3": Gemma3TextConfig(**tiny, head_dim=16, sliding_window=8)}
    for name, cfg in cfgs.items():
        torch.manual_seed(0)
        yield name, AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()


@pytest.mark.parametrize("ablated", [False, True])
def test_suffix_pass_equals_full_pass_on_every_family(ablated):
    """Last-position logits of [prefix | pad | suffix] with the cached prefix == the whole left-padded prompt."""
    g = torch.Generator().manual_seed(1)
    prefix = torch.randint(3, 256, (11,), generator=g).tolist()  # longer than gemma3's sliding window of 8
    suffixes = [torch.randint(3, 256, (n,), generator=g).tolist() for n in (2, 7, 5, 1)]
    seqs = [prefix + s for s in suffixes]
    for name, m in _tiny_models():
        span = 2 * max(map(len, seqs))
        if name == "gemma3":  # window 8: the cache slots of [prefix | pad | suffix] do not fit; refused
            assert not supports_prefix(m, span) and not supports_prefix(m) and supports_prefix(m, 8)
            m.config.sliding_window = m.model.config.sliding_window = 64  # now they do, and must be equal
        assert supports_prefix(m, span), name
        v = random_direction(64, 0, [])
        with torch.inference_mode(), (ablate(m, v) if ablated else nullcontext()):
            ids, mask = pad(seqs, 0)
            full = m(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp_min(0)).logits[:, -1]
            n = shared_prefix(seqs, keep=1)
            assert n == len(prefix)
            cache = prefix_cache(m, prefix)
            short = m(**suffix_inputs(cache, n, [s[n:] for s in seqs], 0)).logits[:, -1]
            again = m(**suffix_inputs(cache, n, [s[n:] for s in seqs], 0)).logits[:, -1]  # the shared cache is intact
        err = (full - short).abs().max().item()
        assert err < TOL, f"{name}: max |logit diff| {err:.2e}"
        assert torch.equal(short, again), name


@pytest.mark.parametrize("ablated", [False, True])
def test_last_logprobs_share_prefix_matches(smollm, ablated):
    from refusal.intervention.scoring import last_logprobs

    v = random_direction(smollm.d_model, 0, [])
    with (ablate(smollm.model, v) if ablated else nullcontext()):
        a = last_logprobs(smollm, PROMPTS, batch_size=3, share_prefix=False)
        b = last_logprobs(smollm, PROMPTS, batch_size=3)
    assert (a - b).abs().max().item() < TOL


def test_collect_share_prefix_matches_sequential(smollm):
    from refusal.extraction.activations import collect, template_positions

    tp = template_positions(smollm)
    shared = collect(smollm.model, smollm, PROMPTS, tp.positions, batch_size=3, keep=torch.float32, progress=False)
    seq = collect(smollm.model, smollm, PROMPTS, tp.positions, mode="sequential", keep=torch.float32, progress=False)
    assert shared.count == seq.count == len(PROMPTS)
    cos = torch.nn.functional.cosine_similarity(shared.acts.flatten(2), seq.acts.flatten(2), dim=-1)
    assert cos.min().item() >= 0.9999
    rel = ((shared.sum - seq.sum).norm() / seq.sum.norm()).item()
    assert rel < 1e-5


@pytest.mark.parametrize("ablated", [False, True])
def test_generation_share_prefix_same_tokens(smollm, ablated):
    from refusal.generation import generate_ids

    v = random_direction(smollm.d_model, 0, [])
    with (ablate(smollm.model, v) if ablated else nullcontext()):
        a = generate_ids(smollm, PROMPTS, max_new_tokens=16, batch_size=3, share_prefix=False, progress=False)
        b = generate_ids(smollm, PROMPTS, max_new_tokens=16, batch_size=3, progress=False)
    assert a == b


def test_generation_of_no_prompts_is_empty(smollm):
    from refusal.generation import generate

    assert generate(smollm, [], max_new_tokens=4, progress=False) == []
