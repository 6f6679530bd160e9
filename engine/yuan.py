"""Yuan 2.0 (`model_type: "yuan"`, e.g. IEITYuan/Yuan2-2B-Mars-hf) for current transformers.

The checkpoint's own modelling code is remote code for transformers 4.3x that no longer builds; this
port loads the published weights unchanged, never runs remote code, and is checked number for number
against golden vectors from the reference (`../shared/yuan2/`, tests/test_yuan.py).

What differs from Llama, and why the code below looks the way it does:
- Localized filtering (LF): before the query/key projections, two causal convolutions (kernel 2)
  along the sequence, then RMSNorm(conv + input). Each position mixes in the two previous ones, so
  incremental decoding keeps, per layer, the last attention input and the last first-convolution
  output next to the keys and values (`YuanCache`).
- q_proj and k_proj outputs are concatenated and split per head: head h takes its query and its key
  from the same slice of `[q | k]`, not "q_proj is the query".
- MLP is `down(gate(x) * silu(up(x)))`: the activation sits on the up projection.
- With `reset_attention_mask`/`reset_position_ids` (training; eval too when `reset_position_ids`),
  a token after an `<eod>` cannot see anything up to and including that `<eod>`. Positions are not
  reset. Unlike the reference, the padding mask is honoured on that path too, and LF ignores padded
  positions, so a left-padded row in a batch gives the same result as the row alone.
- The LF convolution does cross `<eod>` boundaries, so packing two examples into one row changes the
  second one's logits: never pack Yuan batches (`training.data.batching`).
"""

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, GenerationMixin, PreTrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicLayer
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast

MODEL_TYPE = "yuan"  # engine.loading.YUAN_MODEL_TYPE names it without importing torch

LF_NORM_EPS = 1e-6  # fixed in the reference, independent of rms_norm_eps

# Tokens the tutorials add to the Yuan tokenizer as special (never split) tokens.
SPECIAL_TOKENS = (
    "<sep>",
    "<pad>",
    "<mask>",
    "<predict>",
    "<FIM_SUFFIX>",
    "<FIM_PREFIX>",
    "<FIM_MIDDLE>",
    "<commit_before>",
    "<commit_msg>",
    "<commit_after>",
    "<jupyter_start>",
    "<jupyter_text>",
    "<jupyter_code>",
    "<jupyter_output>",
    "<empty_output>",
)
EOD = "<eod>"


class YuanConfig(PreTrainedConfig):
    model_type = MODEL_TYPE
    keys_to_ignore_at_inference = ["past_key_values"]

    def __init__(
        self,
        vocab_size: int = 135040,
        hidden_size: int = 2048,
        intermediate_size: int = 8192,
        num_hidden_layers: int = 24,
        num_attention_heads: int = 32,
        hidden_act: str = "silu",
        max_position_embeddings: int = 8192,
        initializer_range: float = 0.02,
        rms_norm_eps: float = 1e-6,
        rope_theta: float = 10000.0,
        use_cache: bool = True,
        tie_word_embeddings: bool = True,
        reset_attention_mask: bool = True,
        reset_position_ids: bool = True,
        eod_token: int | None = None,
        sep_token: int | None = None,
        use_loss_mask: bool = False,
        causal_mask: bool = True,
        use_flash_attention: bool = False,
        dropout: float = 0.0,
        **kwargs,
    ):
        kwargs.pop("auto_map", None)  # the checkpoint's remote code is never used
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.hidden_act = hidden_act
        self.max_position_embeddings = max_position_embeddings
        self.initializer_range = initializer_range
        self.rms_norm_eps = rms_norm_eps
        self.rope_theta = rope_theta
        self.use_cache = use_cache
        self.reset_attention_mask = reset_attention_mask
        self.reset_position_ids = reset_position_ids
        self.eod_token = eod_token
        self.sep_token = sep_token
        self.use_loss_mask = use_loss_mask  # labels carry the mask here (-100 over the prompt)
        self.causal_mask = causal_mask
        self.use_flash_attention = use_flash_attention  # a speed switch in the reference; SDPA here
        self.dropout = dropout
        super().__init__(tie_word_embeddings=tie_word_embeddings, **kwargs)
        if hidden_size % num_attention_heads:
            raise ValueError(f"hidden_size {hidden_size} is not a multiple of {num_attention_heads} heads.")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


# --- cache -----------------------------------------------------------------------------------------


class YuanCacheLayer(DynamicLayer):
    """Keys and values, plus the localized-filtering state: last attention input, last conv1 output."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.lf_state: tuple[torch.Tensor, torch.Tensor] | None = None

    def reset(self) -> None:
        super().reset()
        self.lf_state = None

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove:
            raise NotImplementedError("A Yuan cache cannot be cropped: its filtering state only looks back.")

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        super().reorder_cache(beam_idx)
        self._map_lf_state(lambda state: state.index_select(0, beam_idx.to(state.device)))

    def batch_repeat_interleave(self, repeats: int) -> None:
        super().batch_repeat_interleave(repeats)
        self._map_lf_state(lambda state: state.repeat_interleave(repeats, dim=0))

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        super().batch_select_indices(indices)
        self._map_lf_state(lambda state: state[indices, ...])

    def _map_lf_state(self, change) -> None:
        if self.lf_state is not None:
            self.lf_state = tuple(change(state) for state in self.lf_state)


class YuanCache(Cache):
    """Per-layer KV + LF state, and per row the position of the last `<eod>` seen (for the eod mask)."""

    def __init__(self, num_layers: int):
        super().__init__(layers=[YuanCacheLayer() for _ in range(num_layers)])
        self.last_eod: torch.Tensor | None = None

    def reset(self):
        super().reset()
        self.last_eod = None

    def reorder_cache(self, beam_idx: torch.LongTensor):
        super().reorder_cache(beam_idx)
        if self.last_eod is not None:
            self.last_eod = self.last_eod.index_select(0, beam_idx.to(self.last_eod.device))

    def batch_repeat_interleave(self, repeats: int):
        super().batch_repeat_interleave(repeats)
        if self.last_eod is not None:
            self.last_eod = self.last_eod.repeat_interleave(repeats, dim=0)

    def batch_select_indices(self, indices: torch.Tensor):
        super().batch_select_indices(indices)
        if self.last_eod is not None:
            self.last_eod = self.last_eod[indices, ...]


# --- layers ----------------------------------------------------------------------------------------


class YuanRMSNorm(nn.Module):
    def __init__(self, hidden_size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(torch.float32)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * hidden_states.to(input_dtype)


class YuanRotaryEmbedding(nn.Module):
    def __init__(self, config: YuanConfig):
        super().__init__()
        self.dim = config.head_dim
        self.base = config.rope_theta
        self.register_buffer("inv_freq", self.inverse_frequencies(), persistent=False)

    def inverse_frequencies(self) -> torch.Tensor:
        return 1.0 / (self.base ** (torch.arange(0, self.dim, 2, dtype=torch.float32) / self.dim))

    @torch.no_grad()
    def forward(self, like: torch.Tensor, position_ids: torch.Tensor):
        freqs = position_ids[..., None].float() * self.inv_freq.to(like.device)
        angles = torch.cat((freqs, freqs), dim=-1)
        return angles.cos().to(like.dtype), angles.sin().to(like.dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def _apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # (batch, 1, seq, head_dim) against (batch, heads, ...)
    return x * cos + _rotate_half(x) * sin


class YuanLocalizedFiltering(nn.Module):
    """Two causal kernel-2 convolutions along the sequence, then RMSNorm(conv + input).

    Written as two matmuls per convolution (kernel tap 0 sees the previous position, tap 1 the
    current one); the parameters keep the checkpoint's Conv2d names and shapes.
    """

    def __init__(self, hidden_size: int):
        super().__init__()
        self.conv1 = nn.Conv2d(hidden_size, hidden_size // 2, (2, 1))
        self.conv2 = nn.Conv2d(hidden_size // 2, hidden_size, (2, 1))
        self.output_layernorm = YuanRMSNorm(hidden_size, eps=LF_NORM_EPS)

    def forward(self, inputs: torch.Tensor, keep: torch.Tensor | None, cache_layer: YuanCacheLayer | None):
        batch, _, hidden = inputs.shape
        x = inputs if keep is None else inputs.masked_fill(~keep[..., None], 0.0)
        if cache_layer is not None and cache_layer.lf_state is not None:
            previous_x, previous_conv1 = cache_layer.lf_state
        else:  # the reference zero-pads both convolutions at the start of the sequence
            previous_x = x.new_zeros(batch, 1, hidden)
            previous_conv1 = x.new_zeros(batch, 1, hidden // 2)
        conv1 = _causal_conv(self.conv1, torch.cat((previous_x, x), dim=1))
        if keep is not None:
            conv1 = conv1.masked_fill(~keep[..., None], 0.0)
        conv2 = _causal_conv(self.conv2, torch.cat((previous_conv1, conv1), dim=1))
        if cache_layer is not None:
            cache_layer.lf_state = (x[:, -1:].detach(), conv1[:, -1:].detach())
        return self.output_layernorm(conv2 + inputs)


def _causal_conv(conv: nn.Conv2d, padded: torch.Tensor) -> torch.Tensor:
    """Kernel-2 convolution over (batch, 1 + seq, channels) -> (batch, seq, channels)."""
    weight = conv.weight[..., 0]  # (out, in, 2)
    return F.linear(padded[:, :-1], weight[..., 0]) + F.linear(padded[:, 1:], weight[..., 1], conv.bias)


class YuanAttention(nn.Module):
    def __init__(self, config: YuanConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.dropout = config.dropout
        hidden = config.hidden_size
        self.q_proj = nn.Linear(hidden, hidden, bias=False)
        self.k_proj = nn.Linear(hidden, hidden, bias=False)
        self.v_proj = nn.Linear(hidden, hidden, bias=False)
        self.o_proj = nn.Linear(hidden, hidden, bias=False)
        self.lf_gate = YuanLocalizedFiltering(hidden)

    def forward(self, hidden_states, attention_mask, keep, position_embeddings, past_key_values):
        batch, length, _ = hidden_states.shape
        cache_layer = past_key_values.layers[self.layer_idx] if past_key_values is not None else None
        value = self.v_proj(hidden_states)  # values see the unfiltered input
        filtered = self.lf_gate(hidden_states, keep, cache_layer)
        query_key = torch.cat((self.q_proj(filtered), self.k_proj(filtered)), dim=-1)
        query_key = query_key.view(batch, length, self.num_heads, 2 * self.head_dim)
        query, key = query_key.split(self.head_dim, dim=-1)
        query, key = query.transpose(1, 2), key.transpose(1, 2)
        value = value.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)
        cos, sin = position_embeddings
        query, key = _apply_rotary(query, cos, sin), _apply_rotary(key, cos, sin)
        if cache_layer is not None:
            key, value = cache_layer.update(key, value)
        output = F.scaled_dot_product_attention(
            query,
            key,
            value,
            attn_mask=attention_mask,
            dropout_p=self.dropout if self.training else 0.0,
            scale=self.head_dim**-0.5,
        )
        return self.o_proj(output.transpose(1, 2).reshape(batch, length, -1))


class YuanMLP(nn.Module):
    def __init__(self, config: YuanConfig):
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)
        self.act_fn = ACT2FN[config.hidden_act]

    def forward(self, x):
        return self.down_proj(self.gate_proj(x) * self.act_fn(self.up_proj(x)))


class YuanDecoderLayer(GradientCheckpointingLayer):
    def __init__(self, config: YuanConfig, layer_idx: int):
        super().__init__()
        self.self_attn = YuanAttention(config, layer_idx)
        self.mlp = YuanMLP(config)
        self.input_layernorm = YuanRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = YuanRMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(self, hidden_states, attention_mask, keep, position_embeddings, past_key_values=None):
        attended = self.self_attn(
            self.input_layernorm(hidden_states), attention_mask, keep, position_embeddings, past_key_values
        )
        hidden_states = hidden_states + attended
        return hidden_states + self.mlp(self.post_attention_layernorm(hidden_states))


# --- models ----------------------------------------------------------------------------------------


class YuanPreTrainedModel(PreTrainedModel):
    config_class = YuanConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["YuanDecoderLayer"]
    _skip_keys_device_placement = ["past_key_values"]
    _supports_sdpa = True

    def _init_weights(self, module):
        super()._init_weights(module)
        # Models are built on the meta device: a non-persistent buffer must be filled in here.
        if isinstance(module, YuanRotaryEmbedding):
            init.copy_(module.inv_freq, module.inverse_frequencies())


class YuanModel(YuanPreTrainedModel):
    def __init__(self, config: YuanConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(YuanDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = YuanRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = YuanRotaryEmbedding(config)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self):
        return self.embed_tokens

    def set_input_embeddings(self, value):
        self.embed_tokens = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: YuanCache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPast:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Give exactly one of input_ids or inputs_embeds.")
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        if use_cache is None:
            use_cache = self.config.use_cache and not self.training
        if past_key_values is not None and not isinstance(past_key_values, YuanCache):
            raise TypeError("Yuan models need a YuanCache (it also carries the localized-filtering state).")
        if use_cache and past_key_values is None:
            past_key_values = YuanCache(self.config.num_hidden_layers)

        batch, length, _ = inputs_embeds.shape
        device = inputs_embeds.device
        past_length = past_key_values.get_seq_length() if past_key_values is not None else 0
        absolute = torch.arange(past_length, past_length + length, device=device)
        if position_ids is None:
            position_ids = absolute.unsqueeze(0).expand(batch, -1)
        padding = attention_mask if attention_mask is not None and attention_mask.dim() == 2 else None
        keep = padding[:, -length:].bool() if padding is not None else None
        mask = self._attention_mask(input_ids, padding, absolute, past_length, past_key_values, batch)

        hidden_states = inputs_embeds
        position_embeddings = self.rotary_emb(hidden_states, position_ids)
        for layer in self.layers:
            hidden_states = layer(hidden_states, mask, keep, position_embeddings, past_key_values)
        return BaseModelOutputWithPast(
            last_hidden_state=self.norm(hidden_states),
            past_key_values=past_key_values if use_cache else None,
        )

    def _uses_eod_mask(self) -> bool:
        config = self.config
        if config.eod_token is None:
            return False
        if self.training:
            return config.reset_attention_mask or config.reset_position_ids
        return config.reset_position_ids

    def _attention_mask(self, input_ids, padding, absolute, past_length, cache, batch) -> torch.Tensor:
        """Boolean (batch, 1, query, key): causal, padding, and the eod mask when the config asks."""
        keys = torch.arange(past_length + absolute.numel(), device=absolute.device)
        allowed = keys[None, :] <= absolute[:, None]
        allowed = allowed.unsqueeze(0).expand(batch, -1, -1)
        if padding is not None:
            allowed = allowed & padding.bool()[:, None, :]
        if input_ids is not None and self._uses_eod_mask():
            start = self._segment_starts(input_ids, absolute, cache)
            allowed = allowed & (keys[None, None, :] >= start[..., None])
        # Each position may always see itself, so fully masked (padded) rows never turn into NaN.
        allowed = allowed | (keys[None, None, :] == absolute[None, :, None])
        return allowed.unsqueeze(1)

    def _segment_starts(self, input_ids, absolute, cache) -> torch.Tensor:
        """Per query, the first key after the last `<eod>` strictly before it."""
        batch = input_ids.shape[0]
        before = torch.full((batch,), -1, dtype=torch.long, device=input_ids.device)
        if cache is not None and cache.last_eod is not None:
            before = cache.last_eod
        eod_at = torch.where(input_ids == self.config.eod_token, absolute[None, :], -1)
        latest = torch.maximum(eod_at.cummax(dim=1).values, before[:, None])
        if cache is not None:
            cache.last_eod = latest[:, -1]
        previous = torch.cat((before[:, None], latest[:, :-1]), dim=1)
        return previous + 1


class YuanForCausalLM(YuanPreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: YuanConfig):
        super().__init__(config)
        self.model = YuanModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.embed_tokens

    def set_input_embeddings(self, value):
        self.model.embed_tokens = value

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, value):
        self.lm_head = value

    def _prepare_cache_for_generation(self, generation_config, model_kwargs, *args, **kwargs):
        # generate() would start a DynamicCache, which has no room for the filtering state.
        if model_kwargs.get("past_key_values") is None and generation_config.use_cache is not False:
            model_kwargs["past_key_values"] = YuanCache(self.config.num_hidden_layers)
            return
        super()._prepare_cache_for_generation(generation_config, model_kwargs, *args, **kwargs)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: YuanCache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
        )
        hidden_states = outputs.last_hidden_state
        if isinstance(logits_to_keep, int) and logits_to_keep:
            hidden_states = hidden_states[:, -logits_to_keep:]
        elif not isinstance(logits_to_keep, int):
            hidden_states = hidden_states[:, logits_to_keep]
        logits = self.lm_head(hidden_states)
        loss = None
        if labels is not None:
            loss = self.loss_function(logits, labels, vocab_size=self.config.vocab_size, **kwargs)
        return CausalLMOutputWithPast(loss=loss, logits=logits, past_key_values=outputs.past_key_values)


def prepare_tokenizer(tokenizer):
    """The tutorials' set-up: `<eod>` ends a text, the markup tokens stay whole, no automatic bos/eos."""
    tokenizer.add_tokens([EOD, *SPECIAL_TOKENS], special_tokens=True)
    tokenizer.eos_token = EOD
    tokenizer.pad_token = EOD
    for flag in ("add_bos_token", "add_eos_token"):
        if hasattr(tokenizer, flag):
            setattr(tokenizer, flag, False)
    return tokenizer


def register() -> None:
    """Make the Auto classes build Yuan checkpoints with this module (idempotent)."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    if MODEL_TYPE in CONFIG_MAPPING:
        return
    AutoConfig.register(MODEL_TYPE, YuanConfig)
    AutoModelForCausalLM.register(YuanConfig, YuanForCausalLM)


register()
