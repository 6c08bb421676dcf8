"""Architecture families: the one place that knows where each architecture keeps its parts.

Every intervention in this project reads or writes the residual stream at the same places, whatever the
architecture: the input of every decoder block, the input of the norm through which each block's MLP reads
the mid-block residual, the input of the final norm (all read points), and the token embedding and every
block's attention-output and MLP-output matrices (all write points). A :class:`Family` names those parts for
one architecture, plus the chat quirks that change what a prompt is:

============  ==========================  ======================================  ==========================
family        blocks / final norm          writes (embedding, attention, MLP)      quirks
============  ==========================  ======================================  ==========================
llama         ``model.layers`` / ``norm``  ``embed_tokens``, ``o_proj``, ``down_proj``  Llama 3.x, SmolLM2, Mistral
qwen2, qwen3  same                        same                                    Qwen3: thinking disabled
gemma         same                        same (embedding scaled by sqrt(d))      exact edit still holds
phi3          same                        same (fused ``qkv_proj``/``gate_up_proj``)
gemma2/3      same                        same, but outputs normalized            sandwich norms: no exact edit
qwen (Qwen-1) ``transformer.h`` / ``ln_f``  ``wte``, ``attn.c_proj``, ``mlp.c_proj``    no chat template, no pad
============  ==========================  ======================================  ==========================

A family is found from ``config.model_type`` (:func:`family_of`); an unknown model type whose modules look
like Llama's (``model.layers[i].self_attn.o_proj`` ...) is treated as ``llama`` with a warning, anything
else is an error that says where to add it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from torch import nn

__all__ = [
    "Family",
    "FamilyError",
    "FAMILIES",
    "family_of",
    "decoder",
    "decoder_layers",
    "final_norm",
    "mid_norm",
    "embedding",
    "Writer",
    "residual_writers",
    "read_points",
    "refused_architecture",
    "chat_template_kwargs",
    "prepare_tokenizer",
]

log = logging.getLogger(__name__)

# The chat format Qwen-1's own `make_context` (qwen_generation_utils.py) builds: ChatML with its default system
# prompt. Its tokenizer ships without a chat template, so this is set on it at load time.
QWEN1_CHAT_FORMAT = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class FamilyError(ValueError):
    """A model whose architecture this project does not know how to read or edit."""


@dataclass(frozen=True)
class Family:
    """Where one architecture keeps the parts that read and write the residual stream.

    Attribute paths are relative to the causal LM (``stack``), to the decoder stack (``blocks``,
    ``final_norm``, ``embedding``) and to a block (``attn``/``attn_out``, ``mlp``/``mlp_out``, ``mid_norm``).
    """

    name: str
    model_types: frozenset[str]
    stack: str = "model"  # the decoder (no LM head) inside the causal LM
    blocks: str = "layers"
    final_norm: str = "norm"
    embedding: str = "embed_tokens"
    attn: str = "self_attn"
    attn_out: str = "o_proj"
    mlp: str = "mlp"
    mlp_out: str = "down_proj"
    mid_norm: str = "post_attention_layernorm"  # the MLP reads the mid-block residual through this norm
    sandwich: bool = False  # block outputs are normalized before the residual add (Gemma 2/3)
    thinking: bool = False  # the chat template has a thinking mode; prompts are built with it disabled
    chat_format: str | None = None  # chat template for a tokenizer shipped without one
    pad_token: str | None = None  # pad token for a tokenizer shipped without one (else EOS is used)
    notes: tuple[str, ...] = field(default_factory=tuple)


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("llama", frozenset({"llama", "mistral"})),
    Family("qwen2", frozenset({"qwen2"})),
    Family("qwen3", frozenset({"qwen3"}), thinking=True),
    Family("gemma", frozenset({"gemma"}), notes=("embeddings scaled by sqrt(d_model): projection commutes with it",)),
    Family("phi3", frozenset({"phi3"})),
    Family("gemma2", frozenset({"gemma2", "gemma3", "gemma3_text"}), mid_norm="pre_feedforward_layernorm",
           sandwich=True),
    Family("qwen", frozenset({"qwen"}), stack="transformer", blocks="h", final_norm="ln_f", embedding="wte",
           attn="attn", attn_out="c_proj", mlp="mlp", mlp_out="c_proj", mid_norm="ln_2",
           chat_format=QWEN1_CHAT_FORMAT, pad_token="<|endoftext|>"),
)}
_BY_TYPE = {t: f for f in FAMILIES.values() for t in f.model_types}


def _model_type(obj: Any) -> str | None:
    cfg = getattr(obj, "config", obj)
    return getattr(cfg, "model_type", None)


def _looks_like_llama(model: nn.Module) -> bool:
    inner = getattr(model, "model", None)
    blocks = getattr(inner, "layers", None)
    if not isinstance(blocks, nn.ModuleList) or not len(blocks):
        return False
    b = blocks[0]
    return all(hasattr(x, y) for x, y in ((inner, "norm"), (inner, "embed_tokens"), (b, "self_attn"), (b, "mlp"))) and \
        hasattr(b.self_attn, "o_proj") and hasattr(b.mlp, "down_proj")


def family_of(obj: Any) -> Family:
    """The :class:`Family` of a model, a config, or a ``model_type`` string.

    Raises:
        FamilyError: an unknown model type (for a model: one whose modules do not look like Llama's).
    """
    mt = obj if isinstance(obj, str) else _model_type(obj)
    if mt in _BY_TYPE:
        return _BY_TYPE[mt]
    if isinstance(obj, nn.Module) and _looks_like_llama(obj):
        log.warning("model_type %r is not in refusal.families; its modules look like Llama's: using that layout", mt)
        return FAMILIES["llama"]
    raise FamilyError(f"model_type {mt!r} is not a known architecture family (known: "
                      f"{', '.join(sorted(_BY_TYPE))}); add its layout to refusal.families.FAMILIES")


def _get(obj: Any, path: str, what: str, model: nn.Module) -> Any:
    cur = obj
    for part in path.split("."):
        if not hasattr(cur, part):
            raise FamilyError(f"{type(model).__name__} (model_type {_model_type(model)!r}) has no {what} "
                              f"'{path}' where its family expects one")
        cur = getattr(cur, part)
    return cur


def decoder(model: nn.Module) -> nn.Module:
    """The decoder stack without the LM head (``model.model`` for Llama-like models, ``model.transformer`` for Qwen-1).

    A decoder stack passed in directly is returned as it is.
    """
    fam = family_of(model)
    if hasattr(model, fam.blocks) and hasattr(model, fam.final_norm):
        return model
    return _get(model, fam.stack, "decoder stack", model)


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder blocks, in order."""
    return _get(decoder(model), family_of(model).blocks, "decoder blocks", model)


def final_norm(model: nn.Module) -> nn.Module:
    """The norm applied to the residual stream before the unembedding."""
    return _get(decoder(model), family_of(model).final_norm, "final norm", model)


def embedding(model: nn.Module) -> nn.Embedding:
    """The token embedding ``[vocab, d_model]``."""
    return _get(decoder(model), family_of(model).embedding, "token embedding", model)


def mid_norm(model: nn.Module, block: nn.Module) -> nn.Module:
    """The norm through which ``block``'s MLP reads the mid-block residual (after attention's write)."""
    return _get(block, family_of(model).mid_norm, "pre-MLP norm", model)


def read_points(model: nn.Module, layers: Any = None, final: bool = True) -> list[nn.Module]:
    """Modules whose first input is the residual stream: the blocks in ``layers`` (default all), their pre-MLP
    norms and (with ``final``) the final norm. A pre-hook on all of them sees every read of the stream."""
    blocks = decoder_layers(model)
    idx = range(len(blocks)) if layers is None else layers
    points = [blocks[i] for i in idx] + [mid_norm(model, blocks[i]) for i in idx]
    return points + ([final_norm(model)] if final else [])


@dataclass
class Writer:
    """One weight that writes into the residual stream: ``kind`` ``"embedding"`` (rows are residual vectors,
    ``[vocab, d_model]``) or ``"linear"`` (columns are residual vectors, ``[d_model, in]``)."""

    name: str
    kind: str
    module: nn.Module


def residual_writers(model: nn.Module) -> list[Writer]:
    """The embedding and every block's attention-output and MLP-output projection, in order."""
    fam = family_of(model)
    out = [Writer(fam.embedding, "embedding", embedding(model))]
    for i, blk in enumerate(decoder_layers(model)):
        for sub, proj in ((fam.attn, fam.attn_out), (fam.mlp, fam.mlp_out)):
            m = _get(blk, f"{sub}.{proj}", "output projection", model)
            if not isinstance(m, nn.Linear):
                raise FamilyError(f"{type(model).__name__}: {fam.blocks}.{i}.{sub}.{proj} is not a Linear layer")
            out.append(Writer(f"{fam.blocks}.{i}.{sub}.{proj}", "linear", m))
    return out


def refused_architecture(architecture: str) -> str | None:
    """Why exact weight orthogonalization is refused for a registry ``architecture`` (``model_type``), else None."""
    fam = _BY_TYPE.get(architecture)
    if fam is not None and fam.sandwich:
        return (f"model_type '{architecture}' normalizes block outputs before the residual add (sandwich norms): "
                "weight orthogonalization cannot equal runtime ablation; runtime ablation (stage 04) applies")
    return None


def chat_template_kwargs(obj: Any) -> dict[str, Any]:
    """Extra arguments for ``apply_chat_template``: ``enable_thinking=False`` for families with a thinking mode
    (Qwen3: otherwise the first generated token is ``<think>`` and a first-token refusal score measures nothing)."""
    try:
        fam = family_of(obj)
    except FamilyError:
        return {}
    return {"enable_thinking": False} if fam.thinking else {}


def prepare_tokenizer(tok: Any, model_type: str | None) -> Any:
    """Make a tokenizer usable for batched chat prompts: left padding, a pad token, a chat template.

    A family's ``chat_format`` is set only when the tokenizer has no chat template; the pad token is the
    family's ``pad_token`` when it has one, else EOS.
    """
    fam = _BY_TYPE.get(model_type or "")
    if fam is not None and fam.chat_format and getattr(tok, "chat_template", None) is None:
        tok.chat_template = fam.chat_format
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = (fam.pad_token if fam is not None and fam.pad_token else None) or tok.eos_token
    if tok.pad_token is None:
        raise FamilyError(f"tokenizer of model_type {model_type!r} has neither a pad nor an EOS token")
    return tok

