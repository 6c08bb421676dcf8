"""The seven hub models as offline data: specs load, configs build at full size (meta device) and tiny size,
byte tokenizers hold the special tokens at their real ids and carry the real chat templates, and the library's
chat formatting, template positions and batching run on tiny random-weight models of the real architectures."""

from __future__ import annotations

import json

import jinja2
import pytest
import torch

from refusal import hub_models as H
from refusal.config import list_models, load_config
from refusal.models import FIXED_DATE, LoadedModel, chat_prompts, stop_token_ids

ENTRIES = ["gemma_2b_it", "llama31_8b", "llama32_1b", "llama32_3b", "phi3_mini", "qwen1_8b_chat", "qwen3_1_7b"]
BUILDABLE = [e for e in ENTRIES if e != "qwen1_8b_chat"]  # Qwen-1's modelling code lives only on the hub

# Published sizes (model cards / hub safetensors metadata), independent of the configs under test.
KNOWN_PARAMS = {
    "llama32_1b": 1.24e9,
    "llama32_3b": 3.21e9,
    "llama31_8b": 8.03e9,
    "gemma_2b_it": 2.51e9,  # Gemma "2B": 2.51 B with its 256k-row embedding
    "phi3_mini": 3.82e9,
    "qwen3_1_7b": 1.7e9,  # model card: 1.7 B (1.4 B non-embedding); input and output embeddings tied
    "qwen1_8b_chat": 1.84e9,
}
# Qwen3-1.7B's checkpoint at the pinned revision is 4,063,479,808 bytes of bfloat16 (a public download pin):
# 2,031,739,904 stored values, because the tied lm_head is stored beside embed_tokens.
QWEN3_CHECKPOINT_VALUES = 4_063_479_808 // 2

# What each template renders for user message "Hi" with a generation prompt (Llama 3.x with the fixed date).
HI = {
    "llama31_8b": "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December "
                  "2023\nToday Date: 26 Jul 2024\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\n",
    "gemma_2b_it": "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n",
    "phi3_mini": "<|user|>\nHi<|end|>\n<|assistant|>\n",
    # the library builds Qwen3 prompts with thinking disabled: the template then closes an empty think block
    "qwen3_1_7b": "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
    "qwen1_8b_chat": "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                     "<|im_start|>assistant\n",
}
HI["llama32_1b"] = HI["llama32_3b"] = HI["llama31_8b"]

# The post-instruction suffix (the template's text after the user message) and the special-token ids in it.
SUFFIX = {
    "llama": ("<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", [128009, 128006, 128007]),
    "gemma_2b_it": ("<end_of_turn>\n<start_of_turn>model\n", [107, 106]),
    "phi3_mini": ("<|end|>\n<|assistant|>\n", [32007, 32001]),
    "qwen": ("<|im_end|>\n<|im_start|>assistant\n", [151645, 151644]),
    "qwen3_1_7b": ("<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n", [151645, 151644, 151667, 151668]),
}
QWEN3_THINKING = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"  # the template with thinking left on


def _suffix(entry: str) -> tuple[str, list[int]]:
    return SUFFIX.get(entry) or SUFFIX["llama" if entry.startswith("llama") else "qwen"]


@pytest.fixture(scope="module")
def tokenizers():
    return {e: H.byte_tokenizer(e) for e in ENTRIES}


def _as_loaded(tok):
    """What refusal.models.load_tokenizer does to a real tokenizer: left padding, pad = EOS when missing."""
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token if tok.eos_token is not None else "<|endoftext|>"  # Qwen-1 has neither
    return tok


# --------------------------------------------------------------------------- specs


def test_every_hub_registry_entry_has_a_spec():
    hub = sorted(e for e in list_models() if load_config(e).source.kind == "hub")
    assert hub == sorted(ENTRIES) == H.hub_entries()


@pytest.mark.parametrize("entry", ENTRIES)
def test_spec_loads_and_agrees_with_the_registry(entry):
    spec = H.load_hub_spec(entry)
    reg = load_config(entry)
    assert (spec["model_id"], spec["revision"]) == (reg.model_id, reg.revision)
    assert spec["config"]["num_hidden_layers"] == reg.n_layers
    assert spec["config"]["hidden_size"] == reg.d_model
    assert [spec["eot_token"]] == reg.eot_tokens
    assert spec["config"]["model_type"] == reg.architecture


def _broken(tmp_path, entry, edit):
    spec = json.loads((H.HUB_MODELS_DIR / f"{entry}.json").read_text())
    edit(spec)
    path = tmp_path / f"{entry}.json"
    path.write_text(json.dumps(spec))
    return path


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.pop("revision"), "missing key 'revision'"),
        (lambda s: s.update(eot_token="<|nope|>"), "key 'eot_token'"),
        (lambda s: s["special_tokens"].update({"<|eot_id|>": 999999}), "key 'special_tokens.<|eot_id|>' id 999999"),
        (lambda s: s["special_tokens"].update({"<|dup|>": 128009}), "repeats id 128009"),
        (lambda s: s["config"].pop("vocab_size"), "missing key 'config.vocab_size'"),
        (lambda s: s["tokenizer"].update(add_bos_token="yes"), "key 'tokenizer.add_bos_token' must be bool"),
        (lambda s: s.update(extra=1), "unknown key(s) ['extra']"),
        (lambda s: s.update(entry="other"), "key 'entry' is 'other'"),
    ],
)
def test_invalid_spec_errors_name_file_and_key(tmp_path, edit, message):
    path = _broken(tmp_path, "llama32_1b", edit)
    with pytest.raises(H.HubSpecError) as err:
        H.load_hub_spec(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_template_less_spec_needs_a_chat_format(tmp_path):
    path = _broken(tmp_path, "qwen1_8b_chat", lambda s: s.pop("chat_format"))
    with pytest.raises(H.HubSpecError, match="'chat_template' is null, so key 'chat_format' is required"):
        H.load_hub_spec(path)


def test_unknown_entry_lists_the_known_ones():
    with pytest.raises(H.HubSpecError, match="known: gemma_2b_it, llama31_8b"):
        H.load_hub_spec("no_such_model")


# --------------------------------------------------------------------------- configs and sizes


@pytest.mark.parametrize("entry", BUILDABLE)
def test_full_config_builds_with_the_real_values(entry):
    spec = H.load_hub_spec(entry)
    cfg = H.hub_config(entry)
    raw = spec["config"]
    assert cfg.model_type == raw["model_type"]
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "vocab_size", "max_position_embeddings", "rms_norm_eps"):
        assert getattr(cfg, key) == raw[key], key
    assert cfg.tie_word_embeddings == raw.get("tie_word_embeddings", raw["model_type"] == "gemma")
    if "head_dim" in raw:
        assert cfg.head_dim == raw["head_dim"]
    if (raw.get("rope_scaling") or {}).get("rope_type") == "llama3":
        rope = cfg.rope_parameters
        assert rope["rope_type"] == "llama3" and rope["factor"] == raw["rope_scaling"]["factor"]
        assert rope["original_max_position_embeddings"] == 8192 and rope["rope_theta"] == 500000.0
    if "sliding_window" in raw:
        assert cfg.sliding_window == raw["sliding_window"]


@pytest.mark.parametrize("entry", BUILDABLE)
def test_meta_parameter_count_matches_the_published_size(entry):
    n = H.meta_parameter_count(H.hub_config(entry))
    assert abs(n / KNOWN_PARAMS[entry] - 1) < 0.02, f"{entry}: {n:,} parameters"


def test_qwen3_count_plus_stored_lm_head_equals_the_checkpoint_size():
    spec = H.load_hub_spec("qwen3_1_7b")
    n = H.meta_parameter_count(H.hub_config(spec))
    embedding = spec["config"]["vocab_size"] * spec["config"]["hidden_size"]
    assert n + embedding == QWEN3_CHECKPOINT_VALUES


def _qwen1_parameters(c: dict) -> int:
    """Parameters of QWenLMHeadModel (remote code): wte, lm_head, ln_f; per block ln_1, c_attn (weight + bias),
    c_proj, ln_2, mlp w1/w2 (d x intermediate_size/2) and c_proj."""
    d, ff, v = c["hidden_size"], c["intermediate_size"] // 2, c["vocab_size"]
    proj = c["num_attention_heads"] * c["kv_channels"]
    block = 2 * d + (d * 3 * proj + 3 * proj) + proj * d + 3 * d * ff
    return 2 * v * d + d + c["num_hidden_layers"] * block


def test_qwen1_needs_remote_code_and_its_counted_size_matches():
    spec = H.load_hub_spec("qwen1_8b_chat")
    with pytest.raises(H.HubSpecError, match="remote code.*config_class="):
        H.hub_config(spec)
    from transformers import PretrainedConfig

    cfg = H.hub_config(spec, config_class=PretrainedConfig, **H.tiny_overrides(spec))
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.kv_channels, cfg.use_logn_attn) == (64, 3, 16, True)
    n = _qwen1_parameters(spec["config"])
    assert n == 1_836_828_672 and abs(n / KNOWN_PARAMS["qwen1_8b_chat"] - 1) < 0.02


@pytest.mark.parametrize("entry", BUILDABLE)
def test_tiny_overrides_keep_the_architecture(entry):
    spec = H.load_hub_spec(entry)
    raw, cfg = spec["config"], H.hub_config(entry, **H.tiny_overrides(spec))
    assert cfg.num_hidden_layers == H.TINY_LAYERS and cfg.intermediate_size == H.TINY_INTERMEDIATE
    ratio = raw["num_attention_heads"] // raw["num_key_value_heads"]
    assert cfg.num_attention_heads // cfg.num_key_value_heads == ratio
    assert (cfg.num_key_value_heads == 1) == (raw["num_key_value_heads"] == 1)
    assert ("head_dim" in raw) == ("head_dim" in H.tiny_overrides(spec))
    assert cfg.tie_word_embeddings == H.hub_config(entry).tie_word_embeddings
    assert max(spec["special_tokens"].values()) < cfg.vocab_size <= raw["vocab_size"]
    if raw.get("rope_scaling"):
        assert cfg.rope_parameters["factor"] == raw["rope_scaling"]["factor"]
    assert getattr(cfg, "sliding_window", None) == raw.get("sliding_window")


# --------------------------------------------------------------------------- byte tokenizers and templates


@pytest.mark.parametrize("entry", ENTRIES)
def test_special_tokens_are_single_tokens_at_their_real_ids(tokenizers, entry):
    spec, tok = H.load_hub_spec(entry), tokenizers[entry]
    for text, tid in spec["special_tokens"].items():
        assert tok.convert_tokens_to_ids(text) == tid
        assert tok(f"a{text}b", add_special_tokens=False)["input_ids"][1] == tid
        assert len(tok(text, add_special_tokens=False)["input_ids"]) == 1
    for key in ("bos_token", "eos_token", "pad_token", "unk_token"):
        assert getattr(tok, key) == spec["tokenizer"][key]
    cfg = spec["config"]
    if "bos_token_id" in cfg:
        assert tok.bos_token_id == cfg["bos_token_id"] or spec["tokenizer"]["bos_token"] is None
    eos_ids = cfg.get("eos_token_id")
    eos_ids = eos_ids if isinstance(eos_ids, list) else [eos_ids] if eos_ids is not None else []
    assert all(tok.convert_ids_to_tokens(i) in spec["special_tokens"] for i in eos_ids)


@pytest.mark.parametrize("entry", ENTRIES)
def test_every_byte_round_trips(tokenizers, entry):
    tok = tokenizers[entry]
    text = "Zürich 東京 \t\r\n naïve \x00\x7f 🙂 " + "".join(chr(i) for i in range(32, 127))
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text.encode("utf-8"))
    assert tok.decode(ids) == text
    raw = bytes(range(256)).decode("latin-1")  # 256 distinct characters, 384 bytes of UTF-8
    assert tok.decode(tok(raw, add_special_tokens=False)["input_ids"]) == raw


@pytest.mark.parametrize("entry", ENTRIES)
def test_chat_template_renders_hi_and_round_trips(tokenizers, entry):
    tok = tokenizers[entry]
    text = chat_prompts(tok, ["Hi"], load_config(entry))[0]
    assert text == HI[entry]
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text
    suffix, special_ids = _suffix(entry)
    assert text.endswith("Hi" + suffix)
    suf_ids = tok(suffix, add_special_tokens=False)["input_ids"]
    assert ids[-len(suf_ids):] == suf_ids
    spec = H.load_hub_spec(entry)
    assert [i for i in suf_ids if i in spec["special_tokens"].values()] == special_ids
    assert suf_ids[0] == tok.convert_tokens_to_ids(spec["eot_token"])


@pytest.mark.parametrize("entry", ENTRIES)
def test_bos_is_prepended_only_where_the_real_tokenizer_does(tokenizers, entry):
    spec, tok = H.load_hub_spec(entry), tokenizers[entry]
    first = tok("x")["input_ids"][0]
    if spec["tokenizer"]["add_bos_token"]:
        assert first == spec["special_tokens"][spec["tokenizer"]["bos_token"]]
    else:
        assert first == tok("x", add_special_tokens=False)["input_ids"][0]


def test_qwen3_enable_thinking_false_appends_an_empty_think_block(tokenizers):
    tok = tokenizers["qwen3_1_7b"]
    msgs = [{"role": "user", "content": "Hi"}]
    off = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True, enable_thinking=False)
    assert off == QWEN3_THINKING + "<think>\n\n</think>\n\n" == HI["qwen3_1_7b"]
    on = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True, enable_thinking=True)
    assert on == QWEN3_THINKING
    ids = tok(off, add_special_tokens=False)["input_ids"]
    assert [151667, 151668] == [i for i in ids if i in (151667, 151668)]
    assert "<think>" in tok.decode(ids, skip_special_tokens=True)  # added tokens, not special ones, as in Qwen3
    # an earlier assistant turn loses its reasoning, the last one keeps it
    turns = msgs + [{"role": "assistant", "content": "<think>\nr1\n</think>\n\nA1"}, {"role": "user", "content": "Q2"}]
    assert "r1" not in tok.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)


def _make_context_raw_text(query: str, history: list[tuple[str, str]], system: str) -> str:
    """raw_text of Qwen-1's qwen_generation_utils.make_context (chat_format "chatml"), transcribed."""
    im_start, im_end = "<|im_start|>", "<|im_end|>"
    raw_text = ""
    for turn_query, turn_response in reversed(history):
        raw_text = f"\n{im_start}user\n{turn_query}{im_end}\n{im_start}assistant\n{turn_response}{im_end}" + raw_text
    raw_text = f"{im_start}system\n{system}{im_end}" + raw_text
    return raw_text + f"\n{im_start}user\n{query}{im_end}\n{im_start}assistant\n"


def test_qwen1_chat_format_reproduces_make_context(tokenizers):
    tok = tokenizers["qwen1_8b_chat"]
    history = [("Hello", "Hi! How can I help?"), ("  spaces kept  ", "ok\n")]
    msgs = [m for q, r in history for m in ({"role": "user", "content": q}, {"role": "assistant", "content": r})]
    msgs.append({"role": "user", "content": "Last?"})
    got = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert got == _make_context_raw_text("Last?", history, "You are a helpful assistant.")
    custom = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert tok.apply_chat_template(custom, tokenize=False, add_generation_prompt=True) == _make_context_raw_text(
        "Hi", [], "Be brief.")


def test_gemma_template_rejects_a_system_turn(tokenizers):
    with pytest.raises(jinja2.exceptions.TemplateError, match="System role not supported"):
        tokenizers["gemma_2b_it"].apply_chat_template(
            [{"role": "system", "content": "s"}, {"role": "user", "content": "Hi"}], tokenize=False)


def test_llama32_template_inserts_the_given_date_and_llama31_a_fixed_one(tokenizers):
    msgs = [{"role": "user", "content": "Hi"}]
    for entry in ("llama31_8b", "llama32_1b"):
        text = tokenizers[entry].apply_chat_template(msgs, tokenize=False, add_generation_prompt=True,
                                                     date_string="01 Jan 2030")
        assert "Today Date: 01 Jan 2030\n" in text
    bare = tokenizers["llama31_8b"].apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert "Today Date: 26 Jul 2024\n" in bare  # 3.1 falls back to a fixed date, 3.2 to today (strftime_now)


# --------------------------------------------------------------------------- tiny models run the library's code


@pytest.mark.parametrize("entry", BUILDABLE)
def test_tiny_model_runs_the_library_chat_batching_and_positions(entry):
    from refusal.extraction.activations import template_positions
    from refusal.generation import tokenize_chat

    spec = H.load_hub_spec(entry)
    lm = LoadedModel(cfg=load_config(entry), model=H.tiny_model(spec), tokenizer=_as_loaded(H.byte_tokenizer(spec)))
    pos = template_positions(lm)
    suffix, special_ids = _suffix(entry)
    assert len(pos.positions) == len(lm.tokenizer(suffix, add_special_tokens=False)["input_ids"])
    assert [i for i in pos.token_ids if i in special_ids] == special_ids
    assert set(stop_token_ids(lm.tokenizer, lm.cfg)) >= {spec["special_tokens"][spec["eot_token"]]}

    prompts = ["Hi", "How do I bake sourdough bread at home?"]
    batch = tokenize_chat(lm, prompts)
    assert batch["input_ids"].shape[0] == 2 and batch["attention_mask"][0, 0] == 0  # left padding
    with torch.no_grad():
        logits = lm.model(**batch).logits
        assert logits.shape[-1] == lm.model.config.vocab_size and torch.isfinite(logits).all()
        for row, prompt in enumerate(prompts):  # a padded row's last logits equal the unpadded prompt's
            alone = lm.model(**tokenize_chat(lm, [prompt])).logits[0, -1]
            torch.testing.assert_close(logits[row, -1], alone, rtol=1e-4, atol=1e-4)


def test_tiny_gemma_scales_embeddings_by_sqrt_d_model():
    model = H.tiny_model("gemma_2b_it")
    ids = torch.tensor([[2, 106, 50]])
    with torch.no_grad():
        first = model(input_ids=ids, output_hidden_states=True).hidden_states[0]  # the first block's input
        # transformers 5 scales inside embed_tokens (GemmaTextScaledWordEmbedding); compare with the raw rows
        expected = model.model.embed_tokens.weight[ids] * torch.tensor(model.config.hidden_size**0.5)
    torch.testing.assert_close(first, expected)


def test_hub_models_has_no_heavy_imports_at_module_level():
    import subprocess
    import sys

    code = ("import sys, refusal.hub_models as h; bad = [m for m in ('torch', 'transformers', 'tokenizers') "
            "if m in sys.modules]; print(bad); h.load_hub_spec('phi3_mini'); print([m for m in ('torch', "
            "'transformers') if m in sys.modules])")
    env_path = str(H.HUB_MODELS_DIR.parents[2])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"})
    assert out.stdout.split("\n")[:2] == ["[]", "[]"]

