"""The study's seven hub models as offline data: real configurations, chat templates and special tokens.

``default_data/hub_models/<entry>.json`` holds, for every registry entry whose ``source.kind`` is ``hub``,
the model's ``config.json`` at the pinned revision, its chat template (Qwen-1: a ``chat_format`` template that
reproduces ``make_context``), the special tokens that template uses with their real ids, and where each value
comes from. With it, the architectures can be built with random weights and no download:

* :func:`hub_config` -- a ``transformers`` config object (full size, or tiny with :func:`tiny_overrides`);
* :func:`byte_tokenizer` -- a byte-level ``PreTrainedTokenizerFast`` built in code whose special tokens sit at
  their real ids and which carries the real chat template, so that chat formatting, template positions and
  batching run on a random-weight model of the real architecture;
* :func:`tiny_model` and :func:`meta_parameter_count` for tests (tiny, CPU) and size checks (full, ``meta``).

Nothing heavy is imported at module level; ``transformers``, ``tokenizers`` and ``torch`` are imported by the
functions that need them.
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerFast

__all__ = [
    "HUB_MODELS_DIR",
    "HubSpecError",
    "hub_entries",
    "load_hub_spec",
    "chat_template_of",
    "hub_config",
    "tiny_overrides",
    "byte_vocab",
    "byte_tokenizer",
    "tiny_model",
    "meta_parameter_count",
    "TINY_D_MODEL",
    "TINY_LAYERS",
    "TINY_INTERMEDIATE",
]

log = logging.getLogger(__name__)

HUB_MODELS_DIR = Path(__file__).resolve().parent / "default_data" / "hub_models"

TINY_D_MODEL = 64
TINY_LAYERS = 3
TINY_INTERMEDIATE = 128
_TINY_HEAD_DIM = 16  # head width where 64 / heads is not an integer (3 query heads per KV head)

# key -> allowed types (None stands for JSON null)
_REQUIRED: dict[str, tuple[type, ...]] = {
    "entry": (str,),
    "model_id": (str,),
    "revision": (str,),
    "config": (dict,),
    "chat_template": (str, type(None)),
    "special_tokens": (dict,),
    "eot_token": (str,),
    "tokenizer": (dict,),
    "source": (dict, str),
}
_OPTIONAL: dict[str, tuple[type, ...]] = {"chat_format": (str,)}
_TOKENIZER_KEYS: dict[str, tuple[type, ...]] = {
    "bos_token": (str, type(None)),
    "eos_token": (str, type(None)),
    "pad_token": (str, type(None)),
    "unk_token": (str, type(None)),
    "add_bos_token": (bool,),
    "not_special": (list,),
}
_REMOTE_CODE_TYPES = {"qwen"}  # model types whose modelling code lives only on the hub


class HubSpecError(ValueError):
    """A hub-model spec file is missing, malformed or inconsistent; the message names the file and the key."""


# --------------------------------------------------------------------------- specs


def hub_entries() -> list[str]:
    """Registry entries that have a spec file, sorted."""
    return sorted(p.stem for p in HUB_MODELS_DIR.glob("*.json"))


def _type_names(types: tuple[type, ...]) -> str:
    return " or ".join("null" if t is type(None) else t.__name__ for t in types)


def _check(where: str, key: str, value: Any, types: tuple[type, ...]) -> None:
    # bool is an int in Python: reject it where an int is asked for and accept it only where bool is listed
    if isinstance(value, bool) and bool not in types:
        raise HubSpecError(f"{where}: key '{key}' must be {_type_names(types)}, got a boolean")
    if not isinstance(value, types):
        raise HubSpecError(f"{where}: key '{key}' must be {_type_names(types)}, got {type(value).__name__}")


def _validate(spec: dict[str, Any], where: str, stem: str) -> None:
    for key, types in _REQUIRED.items():
        if key not in spec:
            raise HubSpecError(f"{where}: missing key '{key}'")
        _check(where, key, spec[key], types)
    unknown = set(spec) - set(_REQUIRED) - set(_OPTIONAL)
    if unknown:
        raise HubSpecError(f"{where}: unknown key(s) {sorted(unknown)}")
    for key, types in _OPTIONAL.items():
        if key in spec:
            _check(where, key, spec[key], types)
    if spec["entry"] != stem:
        raise HubSpecError(f"{where}: key 'entry' is {spec['entry']!r} but the file is named {stem}.json")
    if len(spec["revision"]) != 40 or any(c not in "0123456789abcdef" for c in spec["revision"]):
        raise HubSpecError(f"{where}: key 'revision' must be a 40-hex-digit commit, got {spec['revision']!r}")
    cfg = spec["config"]
    for key in ("model_type", "architectures", "hidden_size", "num_hidden_layers", "num_attention_heads",
                "vocab_size"):
        if key not in cfg:
            raise HubSpecError(f"{where}: missing key 'config.{key}'")
    if spec["chat_template"] is None and "chat_format" not in spec:
        raise HubSpecError(f"{where}: 'chat_template' is null, so key 'chat_format' is required")
    ids: dict[int, str] = {}
    for tok, tid in spec["special_tokens"].items():
        _check(where, f"special_tokens.{tok}", tid, (int,))
        if tid < 0 or tid >= int(cfg["vocab_size"]):
            raise HubSpecError(f"{where}: key 'special_tokens.{tok}' id {tid} is outside the vocabulary "
                               f"(config.vocab_size {cfg['vocab_size']})")
        if tid in ids:
            raise HubSpecError(f"{where}: key 'special_tokens.{tok}' repeats id {tid} of {ids[tid]!r}")
        ids[tid] = tok
    if spec["eot_token"] not in spec["special_tokens"]:
        raise HubSpecError(f"{where}: key 'eot_token' {spec['eot_token']!r} is not in 'special_tokens'")
    tk = spec["tokenizer"]
    for key, types in _TOKENIZER_KEYS.items():
        if key not in tk:
            raise HubSpecError(f"{where}: missing key 'tokenizer.{key}'")
        _check(where, f"tokenizer.{key}", tk[key], types)
    unknown = set(tk) - set(_TOKENIZER_KEYS)
    if unknown:
        raise HubSpecError(f"{where}: unknown key(s) {sorted('tokenizer.' + k for k in unknown)}")
    for key in ("bos_token", "eos_token", "pad_token", "unk_token"):
        if tk[key] is not None and tk[key] not in spec["special_tokens"]:
            raise HubSpecError(f"{where}: key 'tokenizer.{key}' {tk[key]!r} is not in 'special_tokens'")
    for tok in tk["not_special"]:
        if tok not in spec["special_tokens"]:
            raise HubSpecError(f"{where}: 'tokenizer.not_special' lists {tok!r}, which is not in 'special_tokens'")
    if tk["add_bos_token"] and tk["bos_token"] is None:
        raise HubSpecError(f"{where}: 'tokenizer.add_bos_token' is true but 'tokenizer.bos_token' is null")


@lru_cache(maxsize=None)
def _load_cached(path: str) -> str:
    return Path(path).read_text(encoding="utf-8")


def load_hub_spec(entry: str | Path) -> dict[str, Any]:
    """Read and validate the spec of a hub registry entry (a name such as ``llama32_1b``, or a path to a file).

    Returns a fresh dict (callers may modify it). Raises :class:`HubSpecError` naming the file and the key.
    """
    path = Path(entry) if str(entry).endswith(".json") else HUB_MODELS_DIR / f"{entry}.json"
    if not path.exists():
        known = ", ".join(hub_entries()) or "none"
        raise HubSpecError(f"{path}: no hub-model spec for {entry!r} (known: {known})")
    try:
        spec = json.loads(_load_cached(str(path)))
    except json.JSONDecodeError as e:
        raise HubSpecError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(spec, dict):
        raise HubSpecError(f"{path}: the top level must be an object")
    _validate(spec, str(path), path.stem)
    return spec


def _spec(entry_or_spec: str | Path | dict[str, Any]) -> dict[str, Any]:
    return entry_or_spec if isinstance(entry_or_spec, dict) else load_hub_spec(entry_or_spec)


def chat_template_of(spec: dict[str, Any]) -> str:
    """The jinja template that formats a chat for this model: the shipped one, or Qwen-1's ``chat_format``."""
    return spec["chat_template"] if spec["chat_template"] is not None else spec["chat_format"]


# --------------------------------------------------------------------------- configs


def hub_config(entry: str | Path | dict[str, Any], config_class: type | None = None,
               **overrides: Any) -> PretrainedConfig:
    """A ``transformers`` config built from the spec's ``config.json``, with ``overrides`` applied on top.

    ``config_class`` builds it with that class instead of ``AutoConfig`` (needed for Qwen-1, whose
    ``model_type`` "qwen" is defined only by remote code on the hub). Example, a tiny Llama-3.2-1B::

        cfg = hub_config("llama32_1b", **tiny_overrides(load_hub_spec("llama32_1b")))
    """
    spec = _spec(entry)
    values = {**spec["config"], **overrides}
    model_type = values.pop("model_type")
    if config_class is not None:
        return config_class(**values)
    if model_type in _REMOTE_CODE_TYPES:
        raise HubSpecError(
            f"{spec['entry']}: model_type {model_type!r} ({spec['model_id']}) is defined only by remote code on the "
            f"hub (trust_remote_code), which cannot be loaded offline; pass config_class= (e.g. the QWenConfig of "
            f"a downloaded snapshot) to build it"
        )
    from transformers import AutoConfig

    try:
        return AutoConfig.for_model(model_type, **values)
    except (ValueError, KeyError) as e:
        raise HubSpecError(f"{spec['entry']}: transformers cannot build config.model_type {model_type!r}: {e}") from e


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def tiny_overrides(spec: dict[str, Any]) -> dict[str, Any]:
    """Config overrides that make a model tiny but keep its architecture's features.

    d_model 64, 3 layers, MLP width 128, float32. Kept: the ratio of query heads to KV heads (with 2 KV heads;
    multi-query stays multi-query, full multi-head gets 4 heads), an explicit ``head_dim`` where the real
    config has one (set to d_model / heads, as in all seven real configs), rope scaling (Llama 3.x
    ``llama3`` factors), sliding window (Phi-3's 2047: longer than any test prompt, so attention on short
    prompts equals the real model's), tied or untied embeddings, and what the model class itself does
    (Gemma's sqrt(d_model) embedding scaling, Qwen3's q/k norms, Phi-3's fused projections). transformers
    needs heads | d_model, so 3 query heads per KV head (Llama-3.2-3B: 6 heads) get d_model 96.

    ``vocab_size`` becomes the byte tokenizer's size (every special token id fits) rounded up to 64 and capped
    at the real size. It changes little for Llama, Qwen and Phi-3, whose special ids sit at the top of the
    vocabulary (a 64-wide embedding of 128,064 rows is 33 MB in float32), and cuts Gemma's 256,000 rows to
    320, which keeps a tiny Gemma at 0.1 M parameters instead of 16 M.
    """
    cfg = spec["config"]
    vocab = min(int(cfg["vocab_size"]), _round_up(len(byte_vocab(spec)), 64))
    if cfg["model_type"] == "qwen":
        # Qwen-1 (remote code): full multi-head attention, kv_channels = head width, MLP width intermediate_size // 2
        heads = 4
        return {"hidden_size": TINY_D_MODEL, "num_hidden_layers": TINY_LAYERS, "num_attention_heads": heads,
                "kv_channels": TINY_D_MODEL // heads, "intermediate_size": 2 * TINY_INTERMEDIATE,
                "vocab_size": vocab, "bf16": False, "fp16": False, "fp32": True}
    heads = int(cfg["num_attention_heads"])
    kv = int(cfg.get("num_key_value_heads") or heads)
    if heads % kv:
        raise HubSpecError(f"{spec['entry']}: config.num_attention_heads {heads} is not a multiple of "
                           f"config.num_key_value_heads {kv}")
    ratio = heads // kv
    tiny_kv = 1 if kv == 1 else (4 if ratio == 1 else 2)
    tiny_heads = tiny_kv * ratio
    # 3 query heads per KV head cannot divide 64: widen d_model (96 for 6 heads) rather than change the grouping
    d_model = TINY_D_MODEL if TINY_D_MODEL % tiny_heads == 0 else tiny_heads * _TINY_HEAD_DIM
    out: dict[str, Any] = {
        "hidden_size": d_model,
        "num_hidden_layers": TINY_LAYERS,
        "intermediate_size": TINY_INTERMEDIATE,
        "num_attention_heads": tiny_heads,
        "num_key_value_heads": tiny_kv,
        "vocab_size": vocab,
        "torch_dtype": "float32",
        "tie_word_embeddings": bool(cfg.get("tie_word_embeddings", cfg["model_type"] == "gemma")),
    }
    if "head_dim" in cfg:
        out["head_dim"] = d_model // tiny_heads
    if "max_window_layers" in cfg:
        out["max_window_layers"] = TINY_LAYERS
    return out


# --------------------------------------------------------------------------- byte tokenizer


@lru_cache(maxsize=1)
def _byte_symbols() -> tuple[str, ...]:
    """The 256 printable stand-ins of GPT-2 byte-level BPE, indexed by byte value (the ``ByteLevel`` alphabet)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table: dict[int, str] = {b: chr(b) for b in keep}
    n = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + n)
            n += 1
    return tuple(table[b] for b in range(256))


def byte_vocab(spec: dict[str, Any]) -> dict[str, int]:
    """Token -> id of the byte tokenizer: special tokens at their real ids, the 256 bytes at the lowest free ids,
    and every other id below the highest one filled by an unused placeholder, so that ids are contiguous."""
    specials: dict[str, int] = dict(spec["special_tokens"])
    taken = set(specials.values())
    vocab = dict(specials)
    free = (i for i in range(10**7) if i not in taken)
    for sym in _byte_symbols():
        vocab[sym] = next(free)
    size = max(vocab.values()) + 1
    used = set(vocab.values())
    for i in range(size):
        if i not in used:
            vocab[f"<|byte_tokenizer_unused_{i}|>"] = i
    return vocab


def byte_tokenizer(spec: dict[str, Any] | str) -> PreTrainedTokenizerFast:
    """A byte-level tokenizer for the spec's model, built in code (no download).

    Every byte is one token; each special token is one token at its real id (``<|eot_id|>`` is 128009, as in
    the real Llama 3 tokenizer, so config token ids and tokenizer agree). BOS/EOS/PAD/UNK are those of the real
    tokenizer, BOS is prepended on plain encoding where the real tokenizer does it (Llama 3, Gemma), and
    ``chat_template`` is the model's real template (Qwen-1: its ``chat_format``). ``decode(encode(text))``
    returns ``text``. Padding side and a missing pad token are left as the real tokenizer has them;
    :func:`refusal.models.load_tokenizer` sets left padding and pad = EOS for real models.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    spec = _spec(spec)
    tk = spec["tokenizer"]
    vocab = byte_vocab(spec)
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], fuse_unk=False))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    not_special = set(tk["not_special"])
    ordered = sorted(spec["special_tokens"].items(), key=lambda kv: kv[1])
    core.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, _ in ordered if t not in not_special])
    core.add_tokens([AddedToken(t, special=False, normalized=False) for t, _ in ordered if t in not_special])
    if tk["add_bos_token"]:
        bos, bos_id = tk["bos_token"], spec["special_tokens"][tk["bos_token"]]
        core.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B:1", special_tokens=[(bos, bos_id)])
    names = {k: tk[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token") if tk[k] is not None}
    tok = PreTrainedTokenizerFast(tokenizer_object=core, clean_up_tokenization_spaces=False,
                                  model_max_length=int(spec["config"].get("max_position_embeddings", 4096)), **names)
    tok.chat_template = chat_template_of(spec)
    tok.name_or_path = f"byte-tokenizer:{spec['model_id']}"
    for t, tid in spec["special_tokens"].items():  # the added vocabulary must reuse the model ids
        got = tok.convert_tokens_to_ids(t)
        if got != tid:
            raise HubSpecError(f"{spec['entry']}: byte tokenizer put {t!r} at id {got}, expected {tid}")
    return tok


# --------------------------------------------------------------------------- models


def tiny_model(entry: str | Path | dict[str, Any], seed: int = 0) -> PreTrainedModel:
    """A tiny random-weight float32 model of the entry's architecture (:func:`tiny_overrides`), in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM

    cfg = hub_config(entry, **tiny_overrides(_spec(entry)))
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()


def meta_parameter_count(config: PretrainedConfig) -> int:
    """Number of parameters of ``AutoModelForCausalLM.from_config(config)``, built on the ``meta`` device
    (no memory; tied embeddings counted once)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())
