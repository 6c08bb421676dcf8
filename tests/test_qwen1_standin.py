"""The Qwen-1 stand-in (``tests/support/qwen1.py``) itself: layout, forward semantics, padding, cache, save/load.

These test the test double, not the library: other tests use it as Qwen-1 (whose remote code
cannot be fetched here), so it must have Qwen-1's names and compute what Qwen-1 computes.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from torch import nn

from support.qwen1 import (
    ENDOFTEXT_ID,
    IM_END_ID,
    IM_START_ID,
    QWenAttention,
    QWenBlock,
    QWenConfig,
    QWenLMHeadModel,
    RMSNorm,
    RotaryEmbedding,
    qwen1_tokenizer,
    register,
    tiny_qwen1,
)

PROMPTS = [[9707, 11, 1246, 525, 498, 30], [785, 3974], [40, 1184, 264, 11116, 311, 1281, 264, 12022, 13]]


@pytest.fixture(scope="module")
def model() -> QWenLMHeadModel:
    return tiny_qwen1(seed=0)


def left_pad(seqs: list[list[int]], pad: int = ENDOFTEXT_ID) -> tuple[torch.Tensor, torch.Tensor]:
    n = max(map(len, seqs))
    ids = torch.tensor([[pad] * (n - len(s)) + s for s in seqs])
    mask = torch.tensor([[0] * (n - len(s)) + [1] * len(s) for s in seqs])
    return ids, mask


def expected_keys(n_layers: int) -> set[str]:
    per_block = ["ln_1.weight", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight", "ln_2.weight",
                 "mlp.w1.weight", "mlp.w2.weight", "mlp.c_proj.weight"]
    return ({"transformer.wte.weight", "transformer.ln_f.weight", "lm_head.weight"}
            | {f"transformer.h.{i}.{k}" for i in range(n_layers) for k in per_block})


# --------------------------------------------------------------------------------------------- layout


def test_module_tree_and_parameter_names(model):
    cfg = model.config
    assert cfg.model_type == "qwen" and not cfg.tie_word_embeddings
    params = dict(model.named_parameters())
    assert set(params) == expected_keys(3)  # exactly Qwen-1's checkpoint keys, nothing else
    h, ff, v = 64, 256 // 2, 151936
    assert params["transformer.wte.weight"].shape == (v, h)
    assert params["transformer.ln_f.weight"].shape == (h,)
    assert params["transformer.h.0.attn.c_attn.weight"].shape == (3 * h, h)
    assert params["transformer.h.0.attn.c_attn.bias"].shape == (3 * h,)
    assert params["transformer.h.0.attn.c_proj.weight"].shape == (h, h)
    assert params["transformer.h.0.mlp.w1.weight"].shape == params["transformer.h.0.mlp.w2.weight"].shape == (ff, h)
    assert params["transformer.h.0.mlp.c_proj.weight"].shape == (h, ff)
    assert params["lm_head.weight"].shape == (v, h)
    assert params["lm_head.weight"].data_ptr() != params["transformer.wte.weight"].data_ptr()

    t = model.transformer
    assert isinstance(t.wte, nn.Embedding) and isinstance(t.drop, nn.Dropout)
    assert isinstance(t.rotary_emb, RotaryEmbedding) and t.rotary_emb.inv_freq.shape == (16 // 2,)
    assert isinstance(t.h, nn.ModuleList) and len(t.h) == 3 and all(isinstance(b, QWenBlock) for b in t.h)
    assert isinstance(t.ln_f, RMSNorm) and t.ln_f.eps == cfg.layer_norm_epsilon == 1e-6
    assert isinstance(model.lm_head, nn.Linear) and model.lm_head.bias is None
    block = t.h[0]
    assert [n for n, _ in block.named_children()] == ["ln_1", "attn", "ln_2", "mlp"]
    assert isinstance(block.attn, QWenAttention) and block.attn.c_proj.bias is None
    # the Llama-style layout (model.model.layers, self_attn.o_proj, mlp.down_proj) is absent
    assert not hasattr(model, "model") and not hasattr(t, "layers") and not hasattr(block, "self_attn")
    assert not hasattr(block.mlp, "down_proj")


def test_config_validation_and_seeding():
    with pytest.raises(ValueError, match="kv_channels"):
        QWenConfig(hidden_size=64, num_attention_heads=4, kv_channels=8)
    state = torch.get_rng_state()
    a, b, c = tiny_qwen1(seed=3), tiny_qwen1(seed=3), tiny_qwen1(seed=4)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is left alone
    for (name, p), q, r in zip(a.named_parameters(), b.parameters(), c.parameters()):
        assert torch.equal(p, q), name
        assert not torch.equal(p, r), name
    # the perturbed paths are non-trivial: norm gains away from 1, c_attn bias away from 0
    assert (a.transformer.h[0].ln_1.weight - 1).abs().mean() > 0.1
    assert a.transformer.h[0].attn.c_attn.bias.abs().mean() > 0.1


# --------------------------------------------------------------------------------------------- semantics


def _reference_logits(model: QWenLMHeadModel, ids: list[int]) -> torch.Tensor:
    """Qwen-1's forward for one unpadded sequence, written out in float64 from the definitions.

    Rotary embeddings as complex rotations of the pairs (i, i + d/2) by ``p * base^(-2i/d)``, per-head
    attention with an explicit causal loop; independent of the stand-in's own code paths.
    """
    cfg = model.config
    sd = {k: v.double() for k, v in model.state_dict().items()}
    nh, d, q = cfg.num_attention_heads, cfg.kv_channels, len(ids)
    half = d // 2

    def rms(x, w):
        return x / torch.sqrt((x * x).mean(-1, keepdim=True) + cfg.layer_norm_epsilon) * w

    theta = torch.arange(q, dtype=torch.float64)[:, None] * cfg.rotary_emb_base ** (
        -2 * torch.arange(half, dtype=torch.float64) / d)
    rot = torch.polar(torch.ones_like(theta), theta)  # [q, half]

    def rope(x):  # [q, d]
        z = torch.complex(x[:, :half], x[:, half:]) * rot
        return torch.cat([z.real, z.imag], dim=-1)

    x = sd["transformer.wte.weight"][ids]
    for i in range(cfg.num_hidden_layers):
        p = f"transformer.h.{i}."
        a = rms(x, sd[p + "ln_1.weight"]) @ sd[p + "attn.c_attn.weight"].T + sd[p + "attn.c_attn.bias"]
        qs, ks, vs = a.split(cfg.hidden_size, dim=-1)
        heads = []
        for hd in range(nh):
            sl = slice(hd * d, (hd + 1) * d)
            qh, kh, vh = rope(qs[:, sl]), rope(ks[:, sl]), vs[:, sl]
            out = torch.zeros(q, d, dtype=torch.float64)
            for t in range(q):
                w = torch.softmax(kh[: t + 1] @ qh[t] / d**0.5, dim=0)
                out[t] = w @ vh[: t + 1]
            heads.append(out)
        x = x + torch.cat(heads, dim=-1) @ sd[p + "attn.c_proj.weight"].T
        m = rms(x, sd[p + "ln_2.weight"])
        w1, w2 = m @ sd[p + "mlp.w1.weight"].T, m @ sd[p + "mlp.w2.weight"].T
        x = x + (w1 * torch.nn.functional.silu(w2)) @ sd[p + "mlp.c_proj.weight"].T
    return rms(x, sd["transformer.ln_f.weight"]) @ sd["lm_head.weight"].T


@torch.no_grad()
def test_forward_matches_reference_implementation(model):
    ids = PROMPTS[2]
    got = model(torch.tensor([ids])).logits[0].double()
    ref = _reference_logits(model, ids)
    assert got.shape == (len(ids), 151936)
    err = (got - ref).abs().max().item()
    print(f"float32 stand-in vs float64 reference, logits: max |diff| {err:.1e}")
    # measured 2026-11-30: 5.4e-6 (pytest -q -s tests/test_qwen1_standin.py -k reference)
    assert err < 1e-4, err
    assert ref.std() > 0.5  # logits are not near-constant, so the comparison has teeth


@torch.no_grad()
def test_block_contract_and_hidden_states(model):
    """Block i is called with hidden_states first and returns (hidden, ...); hidden_states[i] is its input."""
    ids = torch.tensor([PROMPTS[0]])
    seen_in, seen_out = [], []
    hooks = []
    for blk in model.transformer.h:
        hooks.append(blk.register_forward_pre_hook(lambda m, a, k: seen_in.append(a[0]), with_kwargs=True))
        hooks.append(blk.register_forward_hook(lambda m, a, o: seen_out.append(o)))
    try:
        out = model(ids, output_hidden_states=True, use_cache=False)
    finally:
        for hk in hooks:
            hk.remove()
    hs = out.hidden_states
    assert len(hs) == 4 and all(isinstance(o, tuple) and len(o) == 1 for o in seen_out)
    for i in range(3):
        assert torch.equal(hs[i], seen_in[i])
    assert torch.equal(hs[0], model.transformer.wte(ids))
    assert torch.equal(seen_in[1], seen_out[0][0]) and torch.equal(seen_in[2], seen_out[1][0])
    assert torch.equal(hs[3], model.transformer.ln_f(seen_out[2][0]))
    assert torch.equal(out.logits, model.lm_head(hs[3]))

    # x_mid = x + attn(ln_1(x)); out = x_mid + mlp(ln_2(x_mid)); mlp = c_proj(w1 x * silu(w2 x))
    blk, x = model.transformer.h[1], seen_in[1]
    pos = torch.arange(x.shape[1])[None]
    causal = torch.ones(x.shape[1], x.shape[1], dtype=torch.bool).tril()[None, None]
    attn = blk.attn(blk.ln_1(x), rotary_pos_emb_list=[model.transformer.rotary_emb(pos)], attention_mask=causal)[0]
    mid = x + attn
    n2 = blk.ln_2(mid)
    mlp = blk.mlp.c_proj(blk.mlp.w1(n2) * torch.nn.functional.silu(blk.mlp.w2(n2)))
    assert (mid + mlp - seen_out[1][0]).abs().max() < 1e-5
    xf = x.float()
    assert torch.allclose(blk.ln_1(x), xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-6) * blk.ln_1.weight)


@torch.no_grad()
def test_labels_give_shifted_cross_entropy(model):
    ids = torch.tensor([PROMPTS[2]])
    out = model(ids, labels=ids)
    manual = torch.nn.functional.cross_entropy(out.logits[0, :-1], ids[0, 1:])
    assert abs(out.loss.item() - manual.item()) < 1e-6


# --------------------------------------------------------------------------------------------- padding and positions


@torch.no_grad()
def test_left_padded_batch_equals_each_prompt_alone(model):
    ids, mask = left_pad(PROMPTS)
    batched = model(ids, attention_mask=mask).logits[:, -1]
    alone = torch.stack([model(torch.tensor([p])).logits[0, -1] for p in PROMPTS])
    err = (batched - alone).abs().max().item()
    print(f"left-padded vs alone, last-token logits: max |diff| {err:.1e}")
    # measured 2026-11-30: 3.8e-6 (pytest -q -s tests/test_qwen1_standin.py -k left_padded)
    assert err <= 1e-4, err

    # the mask matters: attending to the padding changes the shortest prompt's logits
    unmasked = model(ids, attention_mask=torch.ones_like(mask), position_ids=(mask.cumsum(-1) - 1).clamp_min(0))
    assert (unmasked.logits[1, -1] - alone[1]).abs().max() > 1e-2
    # explicit position ids are used: the mask-derived ones are the default ...
    explicit = model(ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp_min(0)).logits[:, -1]
    assert torch.equal(explicit, batched)
    # ... a constant shift changes nothing (rotary scores depend on position differences only: why Qwen-1,
    # which rotates by cache slot and ignores position_ids, gives the same result) ...
    shifted = model(ids, attention_mask=mask, position_ids=(mask.cumsum(-1) + 6)).logits[:, -1]
    assert (shifted - batched).abs().max() <= 1e-4
    # ... and scrambled positions change the result
    scrambled = model(ids, attention_mask=mask, position_ids=torch.arange(ids.shape[1]).flip(0)[None]).logits[:, -1]
    assert (scrambled - batched).abs().max() > 1e-2


def test_inputs_beyond_seq_length_are_refused():
    m = tiny_qwen1(seq_length=8)
    with pytest.raises(ValueError, match="seq_length"):
        m(torch.tensor([list(range(9))]))


# --------------------------------------------------------------------------------------------- generate and the cache


def _greedy_by_hand(model: QWenLMHeadModel, prompt: list[int], n: int, eos: set[int]) -> list[int]:
    """Greedy decoding without cache or generate(): one full forward pass per new token."""
    seq = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            hidden = model.transformer(torch.tensor([seq]), use_cache=False).last_hidden_state
            nxt = int(model.lm_head(hidden[0, -1]).argmax())
            seq.append(nxt)
            if nxt in eos:
                break
    return seq[len(prompt):]


@torch.no_grad()
def test_forward_with_cache_continues_the_full_pass(model):
    """Positions and mask default correctly after a cache: prefix then rest equals one whole pass."""
    from transformers import DynamicCache

    full_ids, mask = left_pad(PROMPTS)
    full = model(full_ids, attention_mask=mask).logits
    cut = 4
    for use_mask in (True, False):
        rows = slice(None) if use_mask else slice(2, 3)  # without a mask, only the unpadded (longest) prompt
        ids = full_ids[rows]
        cache = DynamicCache(config=model.config)
        kw = {"attention_mask": mask[rows, :cut]} if use_mask else {}
        first = model(ids[:, :cut], past_key_values=cache, use_cache=True, **kw)
        assert first.cache is cache and cache.get_seq_length() == cut
        kw = {"attention_mask": mask[rows]} if use_mask else {}
        rest = model(ids[:, cut:], past_key_values=cache, use_cache=True, **kw).logits
        real = mask[rows, cut:].bool()  # a padding position's output is meaningless (it attends to nothing)
        assert (rest[real] - full[rows, cut:][real]).abs().max() <= 1e-4
        assert cache.get_seq_length() == ids.shape[1]
    cache = DynamicCache(config=model.config)
    model(full_ids[:, :cut], past_key_values=cache, attention_mask=mask[:, :cut])
    with pytest.raises(ValueError, match="attention_mask"):  # the mask must cover the cached positions too
        model(full_ids[:, cut:], past_key_values=cache, attention_mask=mask[:, cut:])


def test_greedy_generate_with_cache_equals_without(model):
    ids, mask = left_pad(PROMPTS)
    kw = dict(attention_mask=mask, max_new_tokens=12, do_sample=False, eos_token_id=[IM_END_ID, ENDOFTEXT_ID],
              pad_token_id=ENDOFTEXT_ID)
    lengths = []
    hook = model.transformer.register_forward_pre_hook(
        lambda m, a, k: lengths.append((k["input_ids"].shape[1], k["past_key_values"] is not None)), with_kwargs=True)
    try:
        cached = model.generate(ids, use_cache=True, **kw)
        n_cached = list(lengths)
        lengths.clear()
        uncached = model.generate(ids, use_cache=False, **kw)
    finally:
        hook.remove()
    new = cached[:, ids.shape[1]:]
    assert new.shape == (3, 12)
    assert torch.equal(cached, uncached)
    # the cache was really used: the prompt once, then one new token per step with the cache; without: no cache
    assert n_cached == [(ids.shape[1], True)] + [(1, True)] * 11
    assert all(has is False for _, has in lengths) and [n for n, _ in lengths] == list(range(ids.shape[1], ids.shape[1] + 12))
    # and both equal greedy decoding by hand, each prompt alone and unpadded
    for row, p in enumerate(PROMPTS):
        assert new[row].tolist() == _greedy_by_hand(model, p, 12, {IM_END_ID, ENDOFTEXT_ID})
    assert len({tuple(r) for r in new.tolist()}) == 3  # the prompts matter


def test_generate_stops_a_row_at_eos(model):
    ids, mask = left_pad(PROMPTS)
    free = model.generate(ids, attention_mask=mask, max_new_tokens=8, do_sample=False, pad_token_id=ENDOFTEXT_ID,
                          eos_token_id=[IM_END_ID])[:, ids.shape[1]:]
    stop = int(free[0, 2])  # make row 0's third new token a stop token
    got = model.generate(ids, attention_mask=mask, max_new_tokens=8, do_sample=False, pad_token_id=ENDOFTEXT_ID,
                         eos_token_id=[IM_END_ID, stop])[:, ids.shape[1]:]
    first = free[0].tolist().index(stop)
    assert got[0, : first + 1].tolist() == free[0, : first + 1].tolist()
    assert set(got[0, first + 1:].tolist()) <= {ENDOFTEXT_ID}
    for row in (1, 2):
        toks = free[row].tolist()
        cut = toks.index(stop) + 1 if stop in toks else len(toks)
        assert got[row, :cut].tolist() == toks[:cut]


# --------------------------------------------------------------------------------------------- save and reload


@torch.no_grad()
def test_save_and_reload_through_auto_classes(model, tmp_path):
    from transformers import AutoConfig, AutoModelForCausalLM

    register()
    register()  # idempotent
    model.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["model_type"] == "qwen" and cfg["architectures"] == ["QWenLMHeadModel"]
    for field in ("kv_channels", "seq_length", "no_bias", "layer_norm_epsilon", "rotary_emb_base", "rotary_pct",
                  "intermediate_size", "max_position_embeddings"):
        assert field in cfg, field
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        assert set(f.keys()) == expected_keys(3)

    assert isinstance(AutoConfig.from_pretrained(tmp_path), QWenConfig)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert type(reloaded) is QWenLMHeadModel and not reloaded.training
    assert torch.equal(reloaded.transformer.rotary_emb.inv_freq, model.transformer.rotary_emb.inv_freq)
    ids, mask = left_pad(PROMPTS)
    assert torch.equal(reloaded(ids, attention_mask=mask).logits, model(ids, attention_mask=mask).logits)


# --------------------------------------------------------------------------------------------- tokenizer


@pytest.mark.slow
def test_tokenizer_as_shipped():
    tok = qwen1_tokenizer()
    assert tok.chat_template is None
    with pytest.raises(ValueError):
        tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert tok.pad_token is None and tok.pad_token_id is None
    with pytest.raises(ValueError):
        tok(["a", "b c d"], padding=True)  # as Qwen-1: a pad token must be chosen by the caller
    assert tok.eos_token is None and tok.bos_token is None
    for name, want in (("<|endoftext|>", ENDOFTEXT_ID), ("<|im_start|>", IM_START_ID), ("<|im_end|>", IM_END_ID)):
        assert tok(name, add_special_tokens=False)["input_ids"] == [want], name
    assert (tok.eod_id, tok.im_start_id, tok.im_end_id) == (ENDOFTEXT_ID, IM_START_ID, IM_END_ID)
    # the opening of Qwen-1's ChatML prompt (as its make_context builds it); these ids are also what Qwen-1's
    # own tiktoken tokenizer gives for it, as printed in public fine-tuning code
    text = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    assert tok(text)["input_ids"] == [151644, 8948, 198, 2610, 525, 264, 10950, 17847, 13, 151645, 198, 151644, 872,
                                      198]
    assert max(len(tok), tok.vocab_size) <= QWenConfig().vocab_size  # every id has an embedding row
