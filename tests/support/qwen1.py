"""A small, offline stand-in for Qwen-1 (``Qwen/Qwen-1_8B-chat``) with its exact module layout.

Qwen-1 (Alibaba, 2023; 1.8B/7B/14B/72B, base and chat) is not a Transformers architecture: the
checkpoints ship their own ``modeling_qwen.py``, ``configuration_qwen.py`` and
``tokenization_qwen.py`` and are loaded with ``trust_remote_code=True``. That remote code cannot be
fetched here, and Qwen-1's layout differs from the Llama-style one (``model.model.layers``) that
most of our models share, so this module rebuilds it, small and randomly initialized, for offline
tests of code that must find Qwen-1's parts by name.

Reproduced from public knowledge of Qwen-1's ``modeling_qwen.py``:

- configuration (``model_type = "qwen"``) with Qwen-1's field names: ``vocab_size``, ``hidden_size``,
  ``num_hidden_layers``, ``num_attention_heads``, ``kv_channels`` (head width),
  ``intermediate_size`` (the MLP's inner width is ``intermediate_size // 2``),
  ``layer_norm_epsilon``, ``seq_length``, ``max_position_embeddings``, ``rotary_emb_base``,
  ``rotary_pct``, ``emb_dropout_prob``, ``attn_dropout_prob``, ``initializer_range``,
  ``scale_attn_weights``, ``use_cache``, ``no_bias``, ``tie_word_embeddings=False``; the defaults
  are Qwen-1_8B's shape (24 layers of width 2048, 16 heads of 128, intermediate 11008, vocabulary
  151936);
- module tree and parameter names, hence the checkpoint keys::

      transformer.wte                      Embedding(vocab, hidden)
      transformer.drop                     Dropout(emb_dropout_prob)
      transformer.rotary_emb               RotaryEmbedding (non-persistent buffer inv_freq)
      transformer.h.{i}                    QWenBlock
      transformer.h.{i}.ln_1               RMSNorm (weight, eps)
      transformer.h.{i}.attn               QWenAttention
      transformer.h.{i}.attn.c_attn        Linear(hidden, 3 * hidden), bias: fused q | k | v
      transformer.h.{i}.attn.c_proj        Linear(hidden, hidden), no bias
      transformer.h.{i}.attn.attn_dropout  Dropout(attn_dropout_prob)
      transformer.h.{i}.ln_2               RMSNorm
      transformer.h.{i}.mlp                QWenMLP
      transformer.h.{i}.mlp.w1, .w2        Linear(hidden, intermediate_size // 2), no bias
      transformer.h.{i}.mlp.c_proj         Linear(intermediate_size // 2, hidden), no bias
      transformer.ln_f                     RMSNorm
      lm_head                              Linear(hidden, vocab), no bias, untied

- forward semantics: RMSNorm ``x * rsqrt(mean(x^2) + eps)`` computed in float32, cast back, times
  ``weight``; the block is pre-norm,
  ``x_mid = x + attn(ln_1(x))`` then ``out = x_mid + mlp(ln_2(x_mid))``, its first positional
  argument is ``hidden_states`` (the other arguments are keywords with Qwen-1's names:
  ``rotary_pos_emb_list``, ``layer_past``, ``attention_mask``, ``use_cache``, ``output_attentions``)
  and it returns a tuple whose first element is the new hidden states; the MLP is
  ``c_proj(w1(x) * silu(w2(x)))`` (the gate is ``w2``); attention splits ``c_attn``'s output into
  q, k, v (in that order, ``hidden`` each), applies rotary embeddings (GPT-NeoX "rotate half" on
  the first ``kv_channels * rotary_pct`` dims, float32, ``inv_freq = base^(-2i/dim)``) to q and k,
  caches the rotated keys, scores ``q k^T / sqrt(kv_channels)``, causal plus padding mask, softmax
  in float32; ``ln_f`` then ``lm_head``; ``output_hidden_states`` gives the embedding output and
  each block's input, then ``ln_f``'s output in place of the last block's output (as Qwen-1 does);
  the loss shifts labels by one. The initialization follows Qwen-1's ``_init_weights`` (normal with
  ``initializer_range``, ``c_proj`` weights with ``initializer_range / sqrt(2 * num_hidden_layers)``,
  norms at one).

Not reproduced (none of it changes the function computed by a float32 forward pass on CPU within
``seq_length`` tokens):

- flash attention, the fused CUDA RMSNorm and rotary kernels, the quantized KV cache;
- dynamic NTK rotary scaling and logn attention scaling: both act only beyond ``seq_length``
  tokens, so a longer input is refused here instead of being computed differently;
- the cache format: Qwen-1 passes ``past_key_values`` as a tuple of ``(key, value)`` per layer laid
  out ``[batch, seq, heads, head_dim]``; the stand-in keeps the argument name but takes and returns
  a Transformers ``Cache`` (``DynamicCache``), which is what ``generate`` of Transformers 5.24
  creates and hands to the model (see :meth:`QWenLMHeadModel.prepare_inputs_for_generation`);
- rotary positions: Qwen-1 rotates by cache slot (``0 .. kv_len - 1``, padding included) and
  ignores ``position_ids``; the stand-in rotates by ``position_ids`` (from the mask when not
  given). Rotary scores depend on position differences only, and padding is masked, so both give
  the same result up to float rounding;
- its tiktoken tokenizer class (``QWenTokenizer``: see :func:`qwen1_tokenizer`), its ``chat()`` /
  ``chat_stream()`` helpers, its ``generation_config.json`` and its stop-word logits processor.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import Cache, DynamicCache
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast

__all__ = [
    "QWenConfig",
    "RMSNorm",
    "RotaryEmbedding",
    "QWenAttention",
    "QWenMLP",
    "QWenBlock",
    "QWenPreTrainedModel",
    "QWenModel",
    "QWenLMHeadModel",
    "register",
    "tiny_qwen1",
    "qwen1_tokenizer",
    "ENDOFTEXT_ID",
    "IM_START_ID",
    "IM_END_ID",
]

# Qwen-1's special tokens follow its 151643 byte-level BPE tokens (the same vocabulary as Qwen2/2.5).
ENDOFTEXT_ID = 151643
IM_START_ID = 151644
IM_END_ID = 151645


class QWenConfig(PretrainedConfig):
    """Qwen-1's configuration; the defaults are Qwen-1_8B's shape."""

    model_type = "qwen"
    keys_to_ignore_at_inference = ["past_key_values"]

    def __init__(
        self,
        vocab_size: int = 151936,
        hidden_size: int = 2048,
        num_hidden_layers: int = 24,
        num_attention_heads: int = 16,
        kv_channels: int = 128,
        intermediate_size: int = 11008,
        layer_norm_epsilon: float = 1e-6,
        seq_length: int = 8192,
        max_position_embeddings: int = 8192,
        rotary_emb_base: float = 10000.0,
        rotary_pct: float = 1.0,
        emb_dropout_prob: float = 0.0,
        attn_dropout_prob: float = 0.0,
        initializer_range: float = 0.02,
        scale_attn_weights: bool = True,
        use_cache: bool = True,
        no_bias: bool = True,
        tie_word_embeddings: bool = False,
        **kwargs: Any,
    ) -> None:
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.kv_channels = kv_channels
        self.intermediate_size = intermediate_size
        self.layer_norm_epsilon = layer_norm_epsilon
        self.seq_length = seq_length
        self.max_position_embeddings = max_position_embeddings
        self.rotary_emb_base = rotary_emb_base
        self.rotary_pct = rotary_pct
        self.emb_dropout_prob = emb_dropout_prob
        self.attn_dropout_prob = attn_dropout_prob
        self.initializer_range = initializer_range
        self.scale_attn_weights = scale_attn_weights
        self.use_cache = use_cache
        self.no_bias = no_bias
        super().__init__(tie_word_embeddings=tie_word_embeddings, **kwargs)
        if kv_channels * num_attention_heads != hidden_size:
            # Qwen-1's c_proj is Linear(hidden_size, kv_channels * num_attention_heads) fed with the heads' output
            raise ValueError(f"QWenConfig: kv_channels * num_attention_heads ({kv_channels} * {num_attention_heads}) "
                             f"must equal hidden_size ({hidden_size}), as in every Qwen-1 model")
        if not 0.0 < rotary_pct <= 1.0 or int(kv_channels * rotary_pct) % 2:
            raise ValueError(f"QWenConfig: rotary_pct={rotary_pct} must give an even number of rotary dims "
                             f"out of kv_channels={kv_channels}")
        if intermediate_size % 2:
            raise ValueError(f"QWenConfig: intermediate_size={intermediate_size} must be even (the MLP is half of it)")


class RMSNorm(nn.Module):
    """Qwen-1's RMSNorm: ``x * rsqrt(mean(x^2) + eps)`` in float32, cast back, times ``weight [dim]``."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [..., dim]`` -> ``[..., dim]``."""
        xf = x.float()
        out = (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x)
        return out * self.weight

    def extra_repr(self) -> str:
        return f"{tuple(self.weight.shape)}, eps={self.eps}"


class RotaryEmbedding(nn.Module):
    """Rotary angles ``cos, sin [batch, seq, dim]`` (float32) for given positions.

    ``dim`` is the number of rotated dims per head (``kv_channels * rotary_pct``); the angle of
    position ``p`` at pair ``i`` is ``p * base^(-2i/dim)``, repeated over both halves (GPT-NeoX layout).
    """

    def __init__(self, dim: int, base: float = 10000.0) -> None:
        super().__init__()
        self.dim = dim
        self.base = base
        self.register_buffer("inv_freq", self.compute_inv_freq(), persistent=False)

    def compute_inv_freq(self) -> torch.Tensor:
        """``[dim // 2]`` inverse frequencies."""
        return 1.0 / (self.base ** (torch.arange(0, self.dim, 2, dtype=torch.float32) / self.dim))

    def forward(self, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``position_ids [batch, seq]`` -> ``(cos, sin)``, each ``[batch, seq, dim]`` float32."""
        freqs = position_ids[..., None].float() * self.inv_freq.float().to(position_ids.device)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos(), emb.sin()


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(t: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the first ``cos.shape[-1]`` dims of ``t [batch, heads, seq, head_dim]`` (float32 math).

    ``cos``/``sin`` are ``[batch, seq, rot_dim]``; the remaining dims pass through.
    """
    rot = cos.shape[-1]
    cos, sin = cos[:, None], sin[:, None]
    tr, tp = t[..., :rot].float(), t[..., rot:].float()
    tr = tr * cos + _rotate_half(tr) * sin
    return torch.cat((tr, tp), dim=-1).type_as(t)


class QWenAttention(nn.Module):
    """Qwen-1's self-attention: fused ``c_attn`` (with bias), rotary q/k, ``c_proj`` (no bias)."""

    def __init__(self, config: QWenConfig, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx  # index into the Cache (Qwen-1 passes each block its own layer_past)
        self.hidden_size = config.hidden_size
        self.split_size = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.projection_size = config.kv_channels * config.num_attention_heads
        self.scale_attn_weights = config.scale_attn_weights
        self.c_attn = nn.Linear(config.hidden_size, 3 * self.projection_size)
        self.c_proj = nn.Linear(config.hidden_size, self.projection_size, bias=not config.no_bias)
        self.attn_dropout = nn.Dropout(config.attn_dropout_prob)

    def forward(
        self,
        hidden_states: torch.Tensor,
        rotary_pos_emb_list: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
        layer_past: Cache | None = None,
        attention_mask: torch.Tensor | None = None,
        use_cache: bool = False,
        output_attentions: bool = False,
    ) -> tuple:
        """``hidden_states [b, q, hidden]`` -> ``(out [b, q, hidden], present, [weights [b, h, q, kv]])``.

        ``rotary_pos_emb_list``: one ``(cos, sin)`` pair, each ``[b, q, rot_dim]``. ``layer_past``: the
        model's Cache, updated in place with this block's rotated keys and values. ``attention_mask``:
        boolean ``[b, 1, q, kv]``, True where a query may attend (causal and not padding).
        ``present`` is ``(keys, values)`` ``[b, h, kv, head_dim]`` when ``use_cache``, else None.
        """
        b, q, _ = hidden_states.shape
        query, key, value = self.c_attn(hidden_states).split(self.split_size, dim=2)
        query, key, value = (t.view(b, q, self.num_heads, self.head_dim).transpose(1, 2) for t in (query, key, value))
        if rotary_pos_emb_list is not None:
            if len(rotary_pos_emb_list) != 1:
                raise ValueError("QWenAttention: one (cos, sin) pair expected (per-sample NTK scaling is not reproduced)")
            cos, sin = rotary_pos_emb_list[0]
            query = apply_rotary_pos_emb(query, cos, sin)
            key = apply_rotary_pos_emb(key, cos, sin)
        if layer_past is not None:
            key, value = layer_past.update(key, value, self.layer_idx)
        present = (key, value) if use_cache else None

        weights = torch.matmul(query, key.transpose(-1, -2))
        if self.scale_attn_weights:
            weights = weights / math.sqrt(value.size(-1))
        if attention_mask is not None:
            weights = weights.masked_fill(~attention_mask, torch.finfo(weights.dtype).min)
        weights = F.softmax(weights.float(), dim=-1).type(query.dtype)
        weights = self.attn_dropout(weights)
        out = torch.matmul(weights, value).transpose(1, 2).reshape(b, q, self.projection_size)
        out = self.c_proj(out)
        outputs: tuple = (out, present)
        if output_attentions:
            outputs += (weights,)
        return outputs


class QWenMLP(nn.Module):
    """Qwen-1's gated MLP: ``c_proj(w1(x) * silu(w2(x)))``, inner width ``intermediate_size // 2``."""

    def __init__(self, config: QWenConfig) -> None:
        super().__init__()
        ff = config.intermediate_size // 2
        self.w1 = nn.Linear(config.hidden_size, ff, bias=not config.no_bias)
        self.w2 = nn.Linear(config.hidden_size, ff, bias=not config.no_bias)
        self.c_proj = nn.Linear(ff, config.hidden_size, bias=not config.no_bias)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """``[b, q, hidden]`` -> ``[b, q, hidden]``."""
        return self.c_proj(self.w1(hidden_states) * F.silu(self.w2(hidden_states)))


class QWenBlock(nn.Module):
    """Pre-norm block: ``x_mid = x + attn(ln_1(x))``; ``out = x_mid + mlp(ln_2(x_mid))``."""

    def __init__(self, config: QWenConfig, layer_idx: int) -> None:
        super().__init__()
        self.ln_1 = RMSNorm(config.hidden_size, eps=config.layer_norm_epsilon)
        self.attn = QWenAttention(config, layer_idx)
        self.ln_2 = RMSNorm(config.hidden_size, eps=config.layer_norm_epsilon)
        self.mlp = QWenMLP(config)

    def forward(
        self,
        hidden_states: torch.Tensor,
        rotary_pos_emb_list: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
        layer_past: Cache | None = None,
        attention_mask: torch.Tensor | None = None,
        use_cache: bool = False,
        output_attentions: bool = False,
    ) -> tuple:
        """``hidden_states [b, q, hidden]`` -> ``(hidden_states, [present], [attn weights])``, as Qwen-1.

        The tuple holds ``present`` only when ``use_cache`` and the attention weights only when
        ``output_attentions`` (see :meth:`QWenAttention.forward` for the other arguments).
        """
        attn_outputs = self.attn(self.ln_1(hidden_states), rotary_pos_emb_list=rotary_pos_emb_list,
                                 layer_past=layer_past, attention_mask=attention_mask, use_cache=use_cache,
                                 output_attentions=output_attentions)
        mid = hidden_states + attn_outputs[0]
        out = mid + self.mlp(self.ln_2(mid))
        rest = attn_outputs[1:] if use_cache else attn_outputs[2:]
        return (out,) + rest


class QWenPreTrainedModel(PreTrainedModel):
    """Weight initialization and Transformers plumbing shared by :class:`QWenModel` and the LM."""

    config_class = QWenConfig
    config: QWenConfig
    base_model_prefix = "transformer"
    supports_gradient_checkpointing = False
    _no_split_modules = ["QWenBlock"]
    _skip_keys_device_placement = ["past_key_values"]

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, RMSNorm):
            init.ones_(module.weight)
        elif isinstance(module, RotaryEmbedding):
            # non-persistent: not in the checkpoint, so from_pretrained re-creates it here
            init.copy_(module.inv_freq, module.compute_inv_freq())
        if isinstance(module, (QWenAttention, QWenMLP)):
            # Qwen-1 scales down the residual writers (its `c_proj.weight`s), GPT-2 style
            init.normal_(module.c_proj.weight, mean=0.0, std=std / math.sqrt(2 * self.config.num_hidden_layers))


class QWenModel(QWenPreTrainedModel):
    """The decoder: ``wte``, ``drop``, ``rotary_emb``, blocks ``h``, final norm ``ln_f``."""

    def __init__(self, config: QWenConfig) -> None:
        super().__init__(config)
        self.embed_dim = config.hidden_size
        self.wte = nn.Embedding(config.vocab_size, self.embed_dim)
        self.drop = nn.Dropout(config.emb_dropout_prob)
        rot = int(config.kv_channels * config.rotary_pct)
        self.rotary_emb = RotaryEmbedding(rot, base=config.rotary_emb_base)
        self.h = nn.ModuleList([QWenBlock(config, i) for i in range(config.num_hidden_layers)])
        self.ln_f = RMSNorm(self.embed_dim, eps=config.layer_norm_epsilon)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.wte

    def set_input_embeddings(self, new_embeddings: nn.Embedding) -> None:
        self.wte = new_embeddings

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> BaseModelOutputWithPast | tuple:
        """Run the decoder.

        Args:
            input_ids: ``[b, q]`` (or ``inputs_embeds [b, q, hidden]``).
            past_key_values: a Transformers ``Cache`` holding ``p`` earlier positions (or None).
            attention_mask: ``[b, p + q]``, 1 for real tokens, 0 for padding (None: all real).
            token_type_ids: accepted and ignored, as in Qwen-1.
            position_ids: ``[b, q]`` or ``[1, q]`` rotary positions; None: counted from the mask,
                ``cumsum(mask) - 1`` clamped at 0 (``p .. p + q - 1`` without a mask).
            use_cache: return the Cache (created when None and ``use_cache``; default
                ``config.use_cache``).

        Returns:
            ``last_hidden_state [b, q, hidden]`` (after ``ln_f``), ``cache``, and with
            ``output_hidden_states`` ``num_hidden_layers + 1`` tensors ``[b, q, hidden]``: the
            embedding output and each block's input, the last replaced by ``ln_f``'s output.
        """
        use_cache = self.config.use_cache if use_cache is None else use_cache
        output_attentions = bool(output_attentions)
        output_hidden_states = self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        return_dict = self.config.return_dict if return_dict is None else return_dict
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("QWenModel.forward: pass exactly one of input_ids and inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.wte(input_ids)
        b, q = inputs_embeds.shape[:2]
        device = inputs_embeds.device

        if past_key_values is not None and not isinstance(past_key_values, Cache):
            raise TypeError("QWenModel.forward: past_key_values must be a transformers Cache (e.g. DynamicCache), "
                            f"not {type(past_key_values).__name__}; Qwen-1's tuple format is not reproduced")
        if use_cache and past_key_values is None:
            past_key_values = DynamicCache(config=self.config)
        past = past_key_values.get_seq_length() if past_key_values is not None else 0
        kv = past + q
        if kv > self.config.seq_length:
            raise ValueError(f"QWenModel.forward: {kv} positions exceed seq_length={self.config.seq_length}; Qwen-1 "
                             "switches on dynamic-NTK and logn scaling there, which this stand-in does not reproduce")

        if attention_mask is None:
            attention_mask = torch.ones((b, kv), dtype=torch.long, device=device)
        if attention_mask.dim() != 2 or tuple(attention_mask.shape) != (b, kv):
            raise ValueError(f"QWenModel.forward: attention_mask must be [batch, past + new] = [{b}, {kv}], "
                             f"got {tuple(attention_mask.shape)}")
        if position_ids is None:
            position_ids = (attention_mask.long().cumsum(-1) - 1).clamp_min(0)[:, -q:]
        position_ids = position_ids.to(device).view(-1, q).expand(b, q)

        rotary = [self.rotary_emb(position_ids)]
        keys_pos = torch.arange(kv, device=device)
        causal = keys_pos[None, :] <= (past + torch.arange(q, device=device))[:, None]  # [q, kv]
        allowed = causal[None, None] & attention_mask.bool()[:, None, None, :]  # [b, 1, q, kv]

        hidden_states = self.drop(inputs_embeds)
        all_hidden: tuple[torch.Tensor, ...] = ()
        all_attn: tuple[torch.Tensor, ...] = ()
        for block in self.h:
            if output_hidden_states:
                all_hidden += (hidden_states,)
            outputs = block(hidden_states, rotary_pos_emb_list=rotary, layer_past=past_key_values,
                            attention_mask=allowed, use_cache=use_cache, output_attentions=output_attentions)
            hidden_states = outputs[0]
            if output_attentions:
                all_attn += (outputs[-1],)
        hidden_states = self.ln_f(hidden_states)
        if output_hidden_states:
            all_hidden += (hidden_states,)

        cache = past_key_values if use_cache else None
        if not return_dict:
            return tuple(v for v in (hidden_states, cache, all_hidden or None, all_attn or None) if v is not None)
        return BaseModelOutputWithPast(last_hidden_state=hidden_states, cache=cache,
                                       hidden_states=all_hidden or None, attentions=all_attn or None)


class QWenLMHeadModel(QWenPreTrainedModel, GenerationMixin):
    """Qwen-1's causal LM: ``transformer`` (:class:`QWenModel`) and an untied ``lm_head``."""

    def __init__(self, config: QWenConfig) -> None:
        super().__init__(config)
        self.transformer = QWenModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.transformer.wte

    def set_input_embeddings(self, new_embeddings: nn.Embedding) -> None:
        self.transformer.wte = new_embeddings

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.lm_head = new_embeddings

    def prepare_inputs_for_generation(self, input_ids: torch.LongTensor, **kwargs: Any) -> dict[str, Any]:
        """Transformers 5.24's default preparation, with the cache handed over as ``past_key_values``.

        ``generate`` keeps the cache under the name ``cache`` (a ``DynamicCache`` it creates) and
        passes it here as ``cache=``; the default slices ``input_ids`` (and ``position_ids``) to the
        positions the cache does not hold yet. Qwen-1's forward names that argument
        ``past_key_values``; the forward returns the cache as the output's ``cache``, where
        ``generate`` picks it up for the next step.
        """
        inputs = super().prepare_inputs_for_generation(input_ids, **kwargs)
        if "cache" in inputs:
            inputs["past_key_values"] = inputs.pop("cache")
        return inputs

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> CausalLMOutputWithPast | tuple:
        """Logits ``[b, q, vocab]`` (float32 math as the weights) and, with ``labels [b, q]``, the mean
        next-token cross-entropy (labels shifted by one, -100 ignored). Other arguments: :meth:`QWenModel.forward`.
        """
        return_dict = self.config.return_dict if return_dict is None else return_dict
        out = self.transformer(input_ids=input_ids, past_key_values=past_key_values, attention_mask=attention_mask,
                               token_type_ids=token_type_ids, position_ids=position_ids, inputs_embeds=inputs_embeds,
                               use_cache=use_cache, output_attentions=output_attentions,
                               output_hidden_states=output_hidden_states, return_dict=True)
        logits = self.lm_head(out.last_hidden_state)
        loss = None
        if labels is not None:
            shift_logits = logits[..., :-1, :].contiguous()
            shift_labels = labels[..., 1:].contiguous().to(logits.device)
            loss = F.cross_entropy(shift_logits.view(-1, shift_logits.size(-1)).float(), shift_labels.view(-1))
        if not return_dict:
            rest = tuple(v for v in (out.cache, out.hidden_states, out.attentions) if v is not None)
            return ((loss,) if loss is not None else ()) + (logits,) + rest
        return CausalLMOutputWithPast(loss=loss, logits=logits, cache=out.cache, hidden_states=out.hidden_states,
                                      attentions=out.attentions)


def register() -> None:
    """Make ``AutoConfig``/``AutoModelForCausalLM`` load a saved stand-in (``model_type "qwen"``). Idempotent."""
    AutoConfig.register("qwen", QWenConfig, exist_ok=True)
    AutoModelForCausalLM.register(QWenConfig, QWenLMHeadModel, exist_ok=True)


def tiny_qwen1(seed: int = 0, **overrides: Any) -> QWenLMHeadModel:
    """A small random Qwen-1 (float32, eval mode): 3 blocks of width 64, 4 heads of 16, MLP 128 wide.

    The vocabulary is Qwen-1's 151936 rows, so any id of :func:`qwen1_tokenizer` is valid.
    ``initializer_range`` is 0.15 (Qwen-1 uses 0.02) so that attention is far from uniform at this
    width and positions, masks and the cache visibly matter. Every norm gain and ``c_attn`` bias gets
    ``0.3 * randn`` added, so those paths matter too. The same ``seed`` gives the same weights; the
    global RNG state is left as it was. ``overrides`` replace :class:`QWenConfig` fields.
    """
    register()
    fields = dict(vocab_size=151936, hidden_size=64, num_hidden_layers=3, num_attention_heads=4, kv_channels=16,
                  intermediate_size=256, initializer_range=0.15)
    fields.update(overrides)
    config = QWenConfig(**fields)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = QWenLMHeadModel(config)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, RMSNorm):
                module.weight.add_(0.3 * torch.randn(module.weight.shape, generator=gen))
            elif isinstance(module, QWenAttention):
                module.c_attn.bias.add_(0.3 * torch.randn(module.c_attn.bias.shape, generator=gen))
    return model.eval()


def qwen1_tokenizer() -> Any:
    """A tokenizer that behaves like Qwen-1's as shipped, built from the Qwen2.5-Coder-0.5B tokenizer.

    Qwen-1 uses the same byte-level BPE as Qwen2/2.5 (151643 regular tokens) followed by
    ``<|endoftext|>`` (151643), ``<|im_start|>`` (151644) and ``<|im_end|>`` (151645). As shipped,
    Qwen-1's ``QWenTokenizer`` has no chat template and no special-token attributes at all (no
    pad, eos, bos or unk token: its chat format lives in the model's ``chat()``), pads on the right,
    and exposes the ids as ``eod_id``, ``im_start_id`` and ``im_end_id``; this tokenizer is set up
    the same way. Differences that remain: it is a Qwen2 tokenizer class; the ids after 151645 are
    Qwen2.5's extra special tokens (``<|fim_prefix|>`` ...) where Qwen-1 has ``<|extra_0|>`` ...
    ``<|extra_204|>``; ``len()`` is 151936 (Qwen-1: 151851). Loads offline (the first call
    converts a GGUF file, about a minute; later calls read the cache).
    """
    from refusal.models import load_tokenizer

    tok = load_tokenizer("qwen25_coder_05b")  # a fresh object on every call
    tok.chat_template = None
    tok.pad_token = None
    tok.eos_token = None
    tok.bos_token = None
    tok.unk_token = None
    tok.padding_side = "right"
    ids = {name: tok.convert_tokens_to_ids(name) for name in ("<|endoftext|>", "<|im_start|>", "<|im_end|>")}
    want = {"<|endoftext|>": ENDOFTEXT_ID, "<|im_start|>": IM_START_ID, "<|im_end|>": IM_END_ID}
    if ids != want:
        raise ValueError(f"qwen1_tokenizer: special token ids {ids} differ from Qwen-1's {want}")
    tok.eod_id, tok.im_start_id, tok.im_end_id = ENDOFTEXT_ID, IM_START_ID, IM_END_ID
    return tok
