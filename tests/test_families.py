"""The study's seven architectures, proven offline: the whole chain on a tiny random model of each family.

For each family of the study (Llama 3.1 and 3.2, Qwen-1, Qwen3, Gemma 1, Phi-3) a tiny random-weight model of
that architecture (the real config with small sizes, ``refusal.hub_models``; Qwen-1 from the stand-in of its
remote code, ``tests/support/qwen1.py``) and a byte-level tokenizer with the model's real special-token ids and
real chat template run what applies to them: chat formatting and template positions, batched == sequential
extraction, runtime ablation == weight orthogonalization (max |logit diff| <= 1e-4), save and reload, and
greedy generation that stops at the family's end-of-turn token. Nothing is downloaded.
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from refusal import hub_models as H
from refusal.config import load_config
from refusal.extraction.activations import collect, template_positions
from refusal.extraction.directions import orthonormal_basis
from refusal.families import family_of, prepare_tokenizer, residual_writers
from refusal.generation import generate_ids, tokenize_chat
from refusal.intervention.orthogonalize import equivalence_error, orthogonalize, save_orthogonalized
from refusal.models import LoadedModel, fresh_copy

# test id (the family) -> registry entry of the study
FAMILIES = {"llama3.1": "llama31_8b", "llama3.2": "llama32_1b", "qwen1": "qwen1_8b_chat", "qwen3": "qwen3_1_7b",
            "gemma1": "gemma_2b_it", "phi3": "phi3_mini"}
PROMPTS = ["Hi", "How do I bake sourdough bread at home?", "Name three rivers in Europe, please."]
TOL = 1e-4


def tiny_lm(entry: str, seed: int = 0) -> LoadedModel:
    """A tiny random model of the entry's architecture with its byte tokenizer, prepared as load_model would."""
    spec = H.load_hub_spec(entry)
    tok = H.byte_tokenizer(spec)
    if entry == "qwen1_8b_chat":
        from support.qwen1 import register, tiny_qwen1

        register()
        model = tiny_qwen1(seed=seed)
        tok.chat_template = None  # Qwen-1's tokenizer ships without a chat template and without a pad token
        tok.pad_token = None
    else:
        model = H.tiny_model(spec, seed=seed)
    prepare_tokenizer(tok, model.config.model_type)
    return LoadedModel(cfg=load_config(entry), model=model, tokenizer=tok)


@pytest.fixture(scope="module", params=list(FAMILIES), ids=list(FAMILIES))
def lm(request):
    return tiny_lm(FAMILIES[request.param])


def test_chat_formatting_and_template_positions(lm):
    spec = H.load_hub_spec(lm.cfg.name)
    text = lm.chat(["Hi"])[0]
    assert "Hi" in text and lm.tokenizer.chat_template is not None
    tp = template_positions(lm)
    eot = spec["special_tokens"][spec["eot_token"]]
    assert tp.token_ids[0] == eot  # the post-instruction positions start at the end-of-turn token
    assert tp.positions == list(range(-len(tp.token_ids), 0))
    ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids[-len(tp.token_ids):] == tp.token_ids
    assert lm.tokenizer.pad_token is not None and lm.tokenizer.padding_side == "left"
    if lm.cfg.name == "qwen1_8b_chat":  # the family supplies Qwen-1's make_context format and pad token
        assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>")
        assert lm.tokenizer.pad_token == "<|endoftext|>"
    if lm.cfg.name == "qwen3_1_7b":  # thinking disabled: the empty think block belongs to the template suffix
        assert text.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
        assert spec["special_tokens"]["</think>"] in tp.token_ids


def test_batched_extraction_equals_sequential(lm):
    tp = template_positions(lm)
    kw = dict(positions=tp.positions, expect_tail=tp.token_ids, progress=False)
    batched = collect(lm.model, lm, PROMPTS, mode="batched", batch_size=3, **kw)
    sequential = collect(lm.model, lm, PROMPTS, mode="sequential", **kw)
    scale = sequential.mean.abs().max()
    assert (batched.mean - sequential.mean).abs().max() <= TOL * max(1.0, float(scale))
    cos = torch.nn.functional.cosine_similarity(batched.mean.flatten(1), sequential.mean.flatten(1), dim=-1)
    assert cos.min() >= 0.9999


@pytest.mark.parametrize("k", [1, 2])
def test_runtime_ablation_equals_weight_orthogonalization(lm, k):
    torch.manual_seed(k)
    q = orthonormal_basis(torch.randn(lm.d_model, k))
    edited = fresh_copy(lm)
    res = orthogonalize(edited, q)
    assert len(res.edited) >= 1 + 2 * lm.n_layers
    enc = tokenize_chat(lm, PROMPTS)
    err = equivalence_error(lm.model, edited, q, enc["input_ids"], enc["attention_mask"])
    with torch.no_grad():
        raw = (lm.model(**enc).logits - edited(**enc).logits).abs()[enc["attention_mask"].bool()].max()
    print(f"\n[{family_of(lm.model).name}] k={k}: max |logit diff| {err:.2e} (unablated {raw:.2e})")
    assert err <= TOL and raw > 100 * TOL


def test_edited_model_saves_and_reloads(lm, tmp_path):
    edited = fresh_copy(lm)
    v = torch.nn.functional.normalize(torch.randn(lm.d_model), dim=0)
    res = orthogonalize(edited, v)
    out = save_orthogonalized(edited, lm.tokenizer, tmp_path / "model", res,
                              {"model_id": lm.cfg.model_id, "layer": 1, "position": -1, "source": "test"})
    back = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    assert type(back) is type(lm.model)
    assert [w.name for w in residual_writers(back)] == [w.name for w in residual_writers(edited)]
    enc = tokenize_chat(lm, PROMPTS)
    with torch.no_grad():
        assert torch.equal(back(**enc).logits, edited(**enc).logits)


def teach(lm: LoadedModel, texts: list[str], answers: list[list[int]], steps: int = 60) -> None:
    """Fine-tune the tiny model to answer each templated ``texts[i]`` with the token ids ``answers[i]``.

    The unembedding runs only at the positions that predict an answer token (a 128k vocabulary at every position
    would cost 15 times more); the embedding and unembedding stay frozen, the blocks and norms learn."""
    from refusal.families import decoder

    tok = lm.tokenizer
    prompts = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    seqs = [p + a for p, a in zip(prompts, answers)]
    n = max(map(len, seqs))
    ids = torch.tensor([s + [tok.pad_token_id] * (n - len(s)) for s in seqs])
    mask = torch.tensor([[1] * len(s) + [0] * (n - len(s)) for s in seqs])
    rows = torch.tensor([r for r, a in enumerate(answers) for _ in a])
    cols = torch.tensor([len(p) - 1 + j for p, a in zip(prompts, answers) for j in range(len(a))])
    target = torch.tensor([x for a in answers for x in a])
    head = lm.model.get_output_embeddings()
    for w in (head.weight, lm.model.get_input_embeddings().weight):  # [vocab, d_model]: the slow part to train
        w.requires_grad_(False)
    opt = torch.optim.AdamW([p for p in lm.model.parameters() if p.requires_grad], lr=1e-2)
    lm.model.train()
    for _ in range(steps):
        hidden = decoder(lm.model)(input_ids=ids, attention_mask=mask)[0]  # [batch, pos, d_model], final norm applied
        loss = torch.nn.functional.cross_entropy(head(hidden[rows, cols]).float(), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    lm.model.eval()


@pytest.mark.slow  # trains (about 30-60 s per family on 2 cores)
@pytest.mark.parametrize("family", list(FAMILIES))
def test_generation_stops_at_the_end_of_turn_token(family):
    """A tiny model taught to answer "ok" and then keep writing past its end-of-turn token: greedy generation
    returns the answer up to and including the family's end-of-turn token, and nothing after it."""
    lm = tiny_lm(FAMILIES[family], seed=1)
    spec = H.load_hub_spec(lm.cfg.name)
    eot = spec["special_tokens"][spec["eot_token"]]
    ok = lm.tokenizer("ok", add_special_tokens=False)["input_ids"]
    tail = lm.tokenizer("zz", add_special_tokens=False)["input_ids"]  # what it would write after the turn ended
    texts = lm.chat(PROMPTS)
    teach(lm, texts, [ok + [eot] + tail] * len(texts))
    assert eot in lm.stop_ids()
    out = generate_ids(lm, PROMPTS, max_new_tokens=8, progress=False)
    assert out == [ok + [eot]] * len(PROMPTS)
    with torch.no_grad():  # without the stop token the model goes on past the end of its turn
        enc = tokenize_chat(lm, PROMPTS[:1])
        raw = lm.model.generate(**enc, max_new_tokens=len(ok) + 1 + len(tail), do_sample=False, eos_token_id=None,
                                pad_token_id=lm.tokenizer.pad_token_id)
    assert raw[0, enc["input_ids"].shape[1]:].tolist() == ok + [eot] + tail


@pytest.mark.slow  # trains
def test_qwen3_first_generated_token_is_not_a_thinking_token():
    """A tiny Qwen3 taught Qwen3's habit (open a think block after `assistant\\n`, answer after `</think>`):
    on the library's prompts (thinking disabled) its first generated token is the answer, not `<think>`; on the
    template's default prompts (thinking on) it is `<think>`, which a first-token refusal score cannot read."""
    lm = tiny_lm("qwen3_1_7b", seed=2)
    spec = H.load_hub_spec(lm.cfg.name)
    think, eot = spec["special_tokens"]["<think>"], spec["special_tokens"]["<|im_end|>"]
    ok = lm.tokenizer("ok", add_special_tokens=False)["input_ids"]
    thinking_on = [lm.tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                                    add_generation_prompt=True) for p in PROMPTS]
    off = lm.chat(PROMPTS)
    assert all(t_off.startswith(t_on) and t_off != t_on for t_on, t_off in zip(thinking_on, off))
    teach(lm, thinking_on + off, [[think]] * len(PROMPTS) + [ok + [eot]] * len(PROMPTS))
    first = [ids[0] for ids in generate_ids(lm, PROMPTS, max_new_tokens=3, progress=False)]
    assert think not in first and first == [ok[0]] * len(PROMPTS)
    enc = lm.tokenizer(thinking_on, add_special_tokens=False, return_tensors="pt", padding=True)
    with torch.no_grad():
        raw = lm.model.generate(**enc, max_new_tokens=1, do_sample=False, pad_token_id=lm.tokenizer.pad_token_id)
    assert raw[:, -1].tolist() == [think] * len(PROMPTS)


def test_every_study_family_is_known():
    for entry in FAMILIES.values():
        cfg = load_config(entry)
        fam = family_of(cfg.architecture)
        assert fam.name in {"llama", "qwen", "qwen3", "gemma", "phi3"}, (entry, fam.name)
        assert not fam.sandwich


def test_gpu_check_script_runs_on_tiny_models(tmp_path):
    """scripts/gpu_check.py (full-size models on a GPU) on tiny versions on the CPU: every architecture passes
    every step, and the float32 weight edit equals runtime ablation."""
    import json
    import subprocess
    import sys

    from refusal.paths import REPO_ROOT

    out = tmp_path / "gpu_check.json"
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "gpu_check.py"), "--device", "cpu", "--tiny",
                           "--prompts", "8", "--new-tokens", "4", "--out", str(out)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert {r["entry"] for r in rows} == set(FAMILIES.values()) | {"llama32_3b"}
    for r in rows:
        assert r["batched_vs_sequential_min_cos"] >= 0.9999 and r["equivalence_fp32_max_abs_logit_diff"] <= TOL, r
        assert r["generated_tokens"] > 0
