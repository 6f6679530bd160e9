"""One resident base model answering with any adapter, chosen per request.

PEFT's `generate(adapter_names=...)` installs temporary hooks on the shared LoRA layers for the
duration of a call; two concurrent calls stack their hooks and the last one wins, so each user could
get the other's adapter. Here every LoRA layer carries one permanent hook that reads the adapter
chosen by the calling thread, so concurrent generations with different adapters stay independent,
and no request ever switches the adapter for everybody (`set_adapter`).
"""

import contextlib
import functools
import threading
import types
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch.nn.functional as F
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TextStreamer,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from core import errors
from core.errors import UserError
from engine import catalogue, devices, formats, loading, models
from engine.adapters import WEIGHTS_FILE, AdapterRecord, ResidentAdapter, check_loadable
from engine.roles import Decoding, Role

BASE = "__base__"  # PEFT's name for "no adapter" in a mixed batch
IN_TRAINING = "__in_training__"  # the adapter a training process is changing, scored as it goes
STOP_TEXT_TOKENS = 8  # how many of a reply's last tokens are decoded to look for a stop text

_thread_choice = threading.local()


def _select_adapter_for_thread(module, args, kwargs):
    adapter = getattr(_thread_choice, "adapter", None)
    if adapter is None:
        return None
    if isinstance(adapter, list):  # one adapter per row of a mixed batch (the API server's)
        kwargs["adapter_names"] = adapter
        return args, kwargs
    batch = args[0] if args else kwargs["x"]
    size = batch.shape[0]
    names = getattr(_thread_choice, "names", None)
    if names is None or len(names) != size or names[0] != adapter:  # one list object per pass
        names = _thread_choice.names = [adapter] * size
    kwargs["adapter_names"] = names
    return args, kwargs


def _mixed_batch_forward(self, x, *args, adapter_names, **kwargs):
    """PEFT's mixed-batch LoRA (each row with its own adapter), with the rows of each adapter found
    once per forward pass instead of once per layer, and the LoRA product computed without module
    calls: the same arithmetic, less Python per token. Anything but plain LoRA in eval mode (DoRA
    and other variants, dropout while training, a LoRA bias) takes PEFT's own path."""
    plain = not self.training and not self.lora_variant
    if not plain or any(self.lora_B[name].bias is not None for name in self.lora_B):
        return type(self)._mixed_batch_forward(self, x, *args, adapter_names=adapter_names, **kwargs)
    for key in _variant_keys():  # for LoRA variants only; the base layer does not take them
        kwargs.pop(key, None)
    result = self.base_layer(x, *args, **kwargs)
    for name, rows in _row_groups(adapter_names, x.device):
        if name == BASE or name not in self.lora_A:
            continue
        lora_a, lora_b = self.lora_A[name].weight, self.lora_B[name].weight
        part = x if rows is None else x.index_select(0, rows)
        delta = F.linear(F.linear(part.to(lora_a.dtype), lora_a), lora_b) * self.scaling[name]
        if rows is None:
            result += delta.to(result.dtype)
        else:
            result.index_add_(0, rows, delta.to(result.dtype))
    return result


@functools.cache
def _variant_keys() -> tuple[str, ...]:
    from peft.tuners.lora.layer import VARIANT_KWARG_KEYS

    return tuple(VARIANT_KWARG_KEYS)


def _row_groups(adapter_names: list, device) -> list:
    """(adapter, its rows as an index tensor; None: every row) for one forward pass: every layer
    gets the same list object, so the grouping is computed once per pass and thread."""
    cached = getattr(_thread_choice, "groups", None)
    if cached is not None and cached[0] is adapter_names:
        return cached[1]
    import torch

    order = list(dict.fromkeys(adapter_names))
    if len(order) == 1:
        groups = [(order[0], None)]
    else:
        groups = [
            (name, torch.tensor([i for i, n in enumerate(adapter_names) if n == name], device=device))
            for name in order
        ]
    _thread_choice.groups = (adapter_names, groups)
    return groups


class _SharedExclusiveLock:
    """Many generations at once; loading an adapter (which edits the model) waits for them all."""

    def __init__(self):
        self._condition = threading.Condition()
        self._readers = 0
        self._writer = False

    def shared(self):
        return _Held(self._acquire_shared, self._release_shared)

    def exclusive(self):
        return _Held(self._acquire_exclusive, self._release_exclusive)

    def _acquire_shared(self):
        with self._condition:
            self._condition.wait_for(lambda: not self._writer)
            self._readers += 1

    def _release_shared(self):
        with self._condition:
            self._readers -= 1
            self._condition.notify_all()

    def _acquire_exclusive(self):
        with self._condition:
            self._condition.wait_for(lambda: not self._writer)
            self._writer = True
            self._condition.wait_for(lambda: self._readers == 0)

    def _release_exclusive(self):
        with self._condition:
            self._writer = False
            self._condition.notify_all()


class _Held:
    def __init__(self, acquire, release):
        self._acquire, self._release = acquire, release

    def __enter__(self):
        self._acquire()

    def __exit__(self, *exc):
        self._release()


class ChatEngine:
    """A base model held once per (model, dtype, device), shared by every session and thread."""

    def __init__(
        self,
        base_model: str = "builtin",
        *,
        device: str | None = None,
        dtype: str | None = None,
        trust_remote_code: bool = False,
        progress: models.Progress | None = None,
    ):
        self.spec = catalogue.parse_model_id(base_model)
        self.device = device or devices.chat_device()
        self._gpu_mark = devices.mark_chat(self.device)  # jobs take other GPUs first while it lives
        self.dtype = loading.parse_dtype(dtype, self.device)
        self.model_dir = models.resolve_model_dir(self.spec, progress)
        self.tokenizer = loading.load_tokenizer(self.model_dir, self.spec, trust_remote_code)
        self.model = loading.load_model(
            self.model_dir,
            self.spec,
            device=self.device,
            dtype=self.dtype,
            trust_remote_code=trust_remote_code,
        ).eval()
        self.prompt_format = loading.default_prompt_format(self.spec, self.model_dir, self.tokenizer)
        self._setup_adapters()

    def _setup_adapters(self, peft_model=None) -> None:
        self._peft_model = peft_model
        self._loaded: dict[str, tuple] = {}  # name -> weights version
        self._peft_names: dict[str, str] = {}  # registry name -> PEFT's name, where they differ
        self._resident: set[str] = set()  # adapters that live in the model only, with no folder
        self._lock = _SharedExclusiveLock()
        # Fast tokenizers are not safe to call from several threads at once ("Already borrowed").
        self._tokenizer_lock = threading.Lock()

    @classmethod
    def around_trained(
        cls, peft_model, tokenizer, spec, model_dir, prompt_format: str, adapter: AdapterRecord
    ):
        """An engine over a model that training has just adapted, without loading a second copy:
        the registered `adapter` is the one training produced (PEFT's "default"), and the base model
        answers through PEFT's "__base__" as usual. Used for the held-out evaluation inside a job."""
        engine = cls._around(peft_model, tokenizer, spec, model_dir, prompt_format)
        folder = check_loadable(adapter, spec.model_id)
        engine._peft_names[adapter.name] = peft_model.active_adapter
        engine._loaded[adapter.name] = _weights_version(folder)
        return engine

    @classmethod
    def around_training(cls, peft_model, tokenizer, spec, model_dir, prompt_format: str):
        """An engine over a model in the middle of training, and the adapter (not yet saved
        anywhere) that answers with its current weights: to score a checkpoint as it is saved.
        The caller puts the model back in training mode afterwards."""
        engine = cls._around(peft_model, tokenizer, spec, model_dir, prompt_format)
        adapter = ResidentAdapter(IN_TRAINING, prompt_format, spec.model_id)
        engine._peft_names[IN_TRAINING] = peft_model.active_adapter
        engine._loaded[IN_TRAINING] = None
        engine._resident.add(IN_TRAINING)
        return engine, adapter

    @classmethod
    def _around(cls, peft_model, tokenizer, spec, model_dir, prompt_format: str):
        engine = cls.__new__(cls)
        engine.spec, engine.model_dir, engine.tokenizer = spec, Path(model_dir), tokenizer
        engine.model = peft_model.get_base_model().eval()
        engine.device, engine.dtype = str(engine.model.device.type), engine.model.dtype
        engine.prompt_format = prompt_format
        engine._setup_adapters(peft_model.eval())
        engine._hook_lora_layers()
        return engine

    @property
    def base_model_id(self) -> str:
        return self.spec.model_id

    @property
    def tokenizer_lock(self) -> threading.Lock:
        """Held around every use of the tokenizer: fast tokenizers are not thread-safe."""
        return self._tokenizer_lock

    @property
    def context_length(self) -> int:
        """The longest sequence (prompt + reply) the model was built for."""
        config = getattr(self.model.config, "get_text_config", lambda: self.model.config)()
        return int(getattr(config, "max_position_embeddings", None) or 2048)

    @property
    def loaded_adapters(self) -> list[str]:
        return list(self._loaded)

    def ensure_adapter(self, adapter: AdapterRecord) -> None:
        """Load a registered adapter once; later requests only name it. A retrained adapter with
        the same name and folder has new weights, so the weights file's version is part of the key."""
        name = adapter.name
        if name in self._resident:
            return
        current = _weights_version(Path(adapter.path))
        if (
            current is not None
            and adapter.base_model == self.base_model_id
            and self._loaded.get(name) == current
        ):
            return  # checked when it was loaded, and unchanged since
        folder = check_loadable(adapter, self.base_model_id)
        version = _weights_version(folder)
        with self._lock.exclusive():
            if self._loaded.get(name) == version:
                return
            if name in self._loaded:
                self._peft_model.delete_adapter(name)
                del self._loaded[name]
            self._load(name, folder)
            self._loaded[name] = version

    def unload_adapter(self, name: str) -> None:
        with self._lock.exclusive():
            if name in self._loaded:
                self._peft_model.delete_adapter(name)
                del self._loaded[name]

    def _load(self, name: str, folder: Path) -> None:
        from peft import PeftModel
        from safetensors import SafetensorError

        try:
            if self._peft_model is None:
                self._peft_model = PeftModel.from_pretrained(
                    self.model, folder, adapter_name=name, is_trainable=False
                )
            else:
                self._peft_model.load_adapter(folder, adapter_name=name, is_trainable=False)
        except (SafetensorError, OSError, ValueError, RuntimeError, KeyError) as error:
            raise UserError(
                "ERR_ADAPTER_LOAD", name=name, folder=folder, error=errors.message_of(error)
            ) from error
        self._peft_model.eval()
        self._hook_lora_layers()

    def _hook_lora_layers(self) -> None:
        from peft.tuners.lora import Linear as LoraLinear
        from peft.tuners.lora import LoraLayer

        for module in self.model.modules():
            if isinstance(module, LoraLayer) and not getattr(module, "_translator_hooked", False):
                module.register_forward_pre_hook(_select_adapter_for_thread, with_kwargs=True)
                if isinstance(module, LoraLinear):
                    module._mixed_batch_forward = types.MethodType(_mixed_batch_forward, module)
                module._translator_hooked = True

    def prompt_ids(
        self,
        role: Role,
        text: str,
        history: Sequence[formats.Turn] = (),
        adapter: AdapterRecord | None = None,
    ) -> list[int]:
        prompt_format = (adapter.prompt_format if adapter else None) or self.prompt_format
        with self._tokenizer_lock:
            return formats.prompt_ids(self.tokenizer, prompt_format, role, text, history)

    def stream(
        self,
        text: str,
        *,
        role: Role,
        adapter: AdapterRecord | None = None,
        history: Sequence[formats.Turn] = (),
        decoding: Decoding | None = None,
    ) -> Iterator[str]:
        """Yield the reply piece by piece, computed one token at a time in the reader's thread.

        No worker thread: a reader that stops reading stops the computation, and on a small CPU no
        second thread competes with torch's compute threads (a generation thread plus its reader
        cost 10-16% of tokens/s on 2 cores). The shared lock is taken per token, so loading an
        adapter waits for one step of a reply, not for the whole reply."""

        if adapter is not None:
            self.ensure_adapter(adapter)
        decoding = decoding or role.decoding
        prompt_format = (adapter.prompt_format if adapter else None) or self.prompt_format
        stops = set(formats.stop_token_ids(self.tokenizer, prompt_format, self.model))
        pieces = TextPieces(self.tokenizer, self._tokenizer_lock)
        reply = ReplyText(formats.stop_texts(prompt_format, tuned=adapter is not None))
        prompt = self.prompt_ids(role, text, history, adapter)
        if decoding.beams:  # the best beam is known only at the end: it comes as one piece
            (tokens,) = self.beam_search([prompt], adapter=adapter, decoding=decoding, stop_ids=stops)
            whole = "".join(pieces.add(token) for token in tokens) + pieces.finish()
            if piece := reply.finish(whole):
                yield piece
            return
        for token in self.token_ids(prompt, adapter=adapter, decoding=decoding, stops=stops):
            if piece := reply.add(pieces.add(token)):
                yield piece
            if reply.stopped:
                return
        if piece := reply.finish(pieces.finish()):
            yield piece

    def token_ids(
        self,
        prompt: list[int],
        *,
        adapter: AdapterRecord | None = None,
        decoding: Decoding,
        stops: set[int],
    ) -> Iterator[int]:
        """The reply's token ids one at a time, the stop token left out: what `stream` turns into
        text (sampled or greedy; beams go through `beam_search`)."""
        import torch

        if adapter is not None:
            self.ensure_adapter(adapter)
        choose = token_chooser(self.model, decoding)
        sequence = torch.tensor([prompt], device=self.model.device)
        step_input, cache = sequence, None
        for _ in range(decoding.max_new_tokens):
            with self._answering_as(adapter):
                output = self.model(
                    input_ids=step_input, past_key_values=cache, use_cache=True, logits_to_keep=1
                )
            cache = output.past_key_values
            token = int(choose(sequence, output.logits[:, -1].float())[0])
            if token in stops:
                return
            step_input = torch.tensor([[token]], device=sequence.device)
            sequence = torch.cat((sequence, step_input), dim=1)
            yield token

    @contextlib.contextmanager
    def _answering_as(self, adapter: AdapterRecord | None):
        """Compute with `adapter` (None: the base model) on this thread only, under the shared lock,
        so loading an adapter waits for the block and no other thread's choice changes."""
        import torch

        with self._lock.shared(), torch.inference_mode():
            _thread_choice.adapter = self._choice_for(adapter)
            try:
                yield
            finally:
                _thread_choice.adapter = None

    @contextlib.contextmanager
    def answering_rows(self, adapters: Sequence[dict | None]):
        """Compute a batch whose row i answers with `adapters[i]` (None: the base model), on this
        thread only: PEFT's mixed-batch LoRA, for requests with different adapters batched together.
        Every adapter must have been loaded (`ensure_adapter`) before."""
        import torch

        with self._lock.shared(), torch.inference_mode():
            choices = [self._choice_for(adapter) for adapter in adapters]
            _thread_choice.adapter = choices if self._peft_model is not None else None
            try:
                yield
            finally:
                _thread_choice.adapter = None

    def _choice_for(self, adapter: AdapterRecord | None) -> str | None:
        """Called under the shared lock, so the set of loaded adapters cannot change meanwhile."""
        if adapter is None:
            return BASE if self._peft_model is not None else None
        if adapter.name not in self._loaded:
            raise UserError("ERR_ADAPTER_UNLOADED", name=adapter.name)
        return self._peft_names.get(adapter.name, adapter.name)

    def next_token_logits(self, ids: list[int], adapter: AdapterRecord | None = None):
        """Logits for the token after `ids`, with the adapter chosen exactly as generation does."""
        import torch

        if adapter is not None:
            self.ensure_adapter(adapter)
        with self._answering_as(adapter):
            input_ids = torch.tensor([ids], device=self.model.device)
            return self.model(input_ids=input_ids).logits[0, -1].float().cpu()

    def generate_batch(
        self,
        texts: Sequence[str],
        *,
        role: Role,
        adapter: AdapterRecord | None = None,
        decoding: Decoding | None = None,
        batch_size: int = 8,
        max_new_tokens: Sequence[int] | None = None,
        progress=None,
    ) -> list[str]:
        """Replies to many single-turn prompts, a batch per forward pass (left padding).

        `max_new_tokens` may give a limit per text (a batch uses its largest); `progress(done)`
        is called after each batch."""
        import torch

        if adapter is not None:
            self.ensure_adapter(adapter)
        decoding = decoding or role.decoding
        prompt_format = (adapter.prompt_format if adapter else None) or self.prompt_format
        stop_ids = formats.stop_token_ids(self.tokenizer, prompt_format, self.model)
        stop_texts = formats.stop_texts(prompt_format, tuned=adapter is not None)
        with self._tokenizer_lock:
            prompts = [formats.prompt_ids(self.tokenizer, prompt_format, role, text) for text in texts]
        limits = list(max_new_tokens) if max_new_tokens else [decoding.max_new_tokens] * len(texts)
        # Similar lengths together: a batch pads to its longest prompt and runs to its largest limit.
        order = sorted(range(len(texts)), key=lambda i: (limits[i], len(prompts[i])))
        replies: list[str] = [""] * len(texts)
        done = 0
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            width = max(len(prompts[i]) for i in rows)
            pad = self.tokenizer.pad_token_id
            ids = [[pad] * (width - len(prompts[i])) + prompts[i] for i in rows]
            mask = [[0] * (width - len(prompts[i])) + [1] * len(prompts[i]) for i in rows]
            if decoding.beams:
                output = self.beam_search(
                    [prompts[i] for i in rows],
                    adapter=adapter,
                    decoding=decoding,
                    stop_ids=stop_ids,
                    limits=[limits[i] for i in rows],
                )
            else:
                with self._answering_as(adapter):
                    output = _shrinking_batch(
                        self.model,
                        torch.tensor(ids, device=self.model.device),
                        torch.tensor(mask, device=self.model.device),
                        [limits[i] for i in rows],
                        stop_ids,
                        token_chooser(self.model, decoding),
                        self._ends_in(stop_texts),
                    )
            with self._tokenizer_lock:
                decoded = self.tokenizer.batch_decode(output, skip_special_tokens=True)
            for i, text in zip(rows, decoded, strict=True):
                replies[i] = ReplyText(stop_texts).finish(text)
            done += len(rows)
            if progress is not None:
                progress(done)
        return [reply.strip() for reply in replies]

    def beam_search(
        self,
        prompts: Sequence[list[int]],
        *,
        adapter: AdapterRecord | None,
        decoding: Decoding,
        stop_ids,
        limits: Sequence[int] | None = None,
    ) -> list[list[int]]:
        """Each prompt's best beam: its tokens after the prompt, up to its first stop token and
        within its own limit (`limits`, else the decoding's max_new_tokens). transformers' beam
        search (`num_beams`, `length_penalty`, early stopping once every beam ended), on a
        left-padded batch: each row keeps its own beams."""
        import torch
        from transformers import GenerationConfig

        if adapter is not None:
            self.ensure_adapter(adapter)
        limits = list(limits) if limits else [decoding.max_new_tokens] * len(prompts)
        stops = sorted(set(stop_ids))
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else stops[0]
        width = max(len(prompt) for prompt in prompts)
        ids = [[pad] * (width - len(prompt)) + list(prompt) for prompt in prompts]
        mask = [[0] * (width - len(prompt)) + [1] * len(prompt) for prompt in prompts]
        config = GenerationConfig(
            do_sample=False,
            num_beams=decoding.num_beams,
            length_penalty=decoding.length_penalty,
            early_stopping=True,
            repetition_penalty=decoding.repetition_penalty,
            max_new_tokens=max(limits),
            eos_token_id=stops,
            pad_token_id=pad,
        )
        with self._answering_as(adapter):
            output = self.model.generate(
                input_ids=torch.tensor(ids, device=self.model.device),
                attention_mask=torch.tensor(mask, device=self.model.device),
                generation_config=config,
            )
        replies = []
        for row, limit in zip(output[:, width:].tolist(), limits, strict=True):
            ends = [at for at, token in enumerate(row) if token in stops]
            replies.append(row[: min([*ends[:1], limit])])
        return replies

    def _ends_in(self, stop_texts: Sequence[str]):
        """Whether a reply's tokens so far reach one of `stop_texts` (None when there are none).
        Checked on the last few tokens, each step: a stop text spans a token or two."""
        if not stop_texts:
            return None

        def ends(tokens: list[int]) -> bool:
            with self._tokenizer_lock:
                tail = self.tokenizer.decode(tokens[-STOP_TEXT_TOKENS:], skip_special_tokens=True)
            return any(stop in tail for stop in stop_texts)

        return ends

    def reference_loss(
        self, records: Sequence[dict], *, role: Role, adapter: AdapterRecord | None = None
    ) -> tuple[float, int]:
        """Summed cross-entropy of the references' tokens under the model, and their count."""
        import torch

        if adapter is not None:
            self.ensure_adapter(adapter)
        prompt_format = (adapter.prompt_format if adapter else None) or self.prompt_format
        total, count = 0.0, 0
        for record in records:
            with self._tokenizer_lock:
                example = formats.training_example(
                    self.tokenizer, prompt_format, role, record, max_length=10**9
                )
            with self._answering_as(adapter):
                input_ids = torch.tensor([example.input_ids], device=self.model.device)
                logits = self.model(input_ids=input_ids).logits[0, :-1].float()
            labels = torch.tensor(example.labels[1:], device=logits.device)
            total += torch.nn.functional.cross_entropy(
                logits, labels, ignore_index=formats.IGNORE_INDEX, reduction="sum"
            ).item()
            count += int((labels != formats.IGNORE_INDEX).sum())
        return total, count

    def reply(self, text: str, **kwargs) -> str:
        return "".join(self.stream(text, **kwargs))


def _shrinking_batch(model, input_ids, attention_mask, limits, stop_ids, choose, ends=None):
    """Decoding of a left-padded batch in which each row leaves as soon as it is done (a stop
    token, its own limit, or `ends(tokens)` saying its text reached a stop text): the KV cache
    drops the row, so the remaining steps only compute the rows still writing. `generate()` would
    run every row until the last one finishes."""
    import torch

    stops = set(stop_ids)
    replies: list[list[int]] = [[] for _ in limits]
    active = list(range(len(limits)))  # original row of each row still in the batch
    sequences = input_ids
    positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    logits, cache = _prefill(model, input_ids, attention_mask, positions)
    positions = positions[:, -1:]
    while True:
        tokens = choose(sequences, logits)
        keep = []
        for slot, (row, token) in enumerate(zip(active, tokens.tolist(), strict=True)):
            if token in stops:
                continue
            replies[row].append(token)
            if len(replies[row]) < limits[row] and not (ends and ends(replies[row])):
                keep.append(slot)
        if not keep:
            return replies
        if len(keep) < len(active):
            selected = torch.tensor(keep, device=tokens.device)
            cache.batch_select_indices(selected)
            active = [active[slot] for slot in keep]
            tokens, sequences = tokens[selected], sequences[selected]
            attention_mask, positions = attention_mask[selected], positions[selected]
        sequences = torch.cat((sequences, tokens[:, None]), dim=1)
        attention_mask = torch.cat((attention_mask, attention_mask.new_ones(len(active), 1)), dim=1)
        positions = positions + 1
        output = model(
            input_ids=tokens[:, None],
            attention_mask=attention_mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
        )
        logits, cache = output.logits[:, -1].float(), output.past_key_values


def _prefill(model, input_ids, attention_mask, positions):
    """The prompts' pass: last-position logits and the batch's KV cache.

    On a CPU, computing the padding of a left-padded batch is pure waste (compute-bound), so each
    prompt runs alone and the row caches are stacked, left-padded with masked zeros. A GPU runs the
    padded batch at once. Caches we cannot stack (e.g. sliding-window layers) take the padded path."""
    import torch

    if input_ids.shape[0] > 1 and input_ids.device.type == "cpu":
        rows, row_logits = [], []
        pads = (attention_mask == 0).sum(-1).tolist()
        for row, pad in enumerate(pads):
            output = model(input_ids=input_ids[row : row + 1, pad:], use_cache=True, logits_to_keep=1)
            rows.append(output.past_key_values)
            row_logits.append(output.logits[:, -1].float())
        cache = stack_left_padded(rows, pads)
        if cache is not None:
            return torch.cat(row_logits), cache
    output = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=positions,
        use_cache=True,
        logits_to_keep=1,  # the prompt's other positions need no vocabulary-sized logits
    )
    return output.logits[:, -1].float(), output.past_key_values


def stack_left_padded(caches, pads):
    """One batch cache from single-row caches (full-attention layers only), else None."""
    import torch
    from transformers.cache_utils import DynamicLayer

    from engine.yuan import YuanCache, YuanCacheLayer

    stackable = (DynamicLayer, YuanCacheLayer)
    if any(type(layer) not in stackable for cache in caches for layer in cache.layers):
        return None
    merged = caches[0]
    for index, layer in enumerate(merged.layers):
        rows = [cache.layers[index] for cache in caches]
        layer.keys = _left_pad([row.keys for row in rows], pads)
        layer.values = _left_pad([row.values for row in rows], pads)
        if isinstance(layer, YuanCacheLayer):
            states = [row.lf_state for row in rows]
            layer.lf_state = tuple(torch.cat(parts) for parts in zip(*states, strict=True))
    if isinstance(merged, YuanCache) and merged.last_eod is not None:
        # positions move right by the padding in front of each row
        eods = [cache.last_eod for cache in caches]
        merged.last_eod = torch.cat([eod + pad * (eod >= 0) for eod, pad in zip(eods, pads, strict=True)])
    return merged


def token_chooser(model, decoding: Decoding, generator=None):
    """The next token as `generate()` picks it: repetition penalty, then (when sampling)
    temperature, the model's top-k (50 unless its generation config says otherwise) and top-p.
    A `generator` makes sampling reproducible for one request, whatever else runs beside it."""
    import torch

    steps = LogitsProcessorList()
    if decoding.repetition_penalty != 1.0:
        steps.append(RepetitionPenaltyLogitsProcessor(decoding.repetition_penalty))
    if decoding.do_sample:
        top_k = getattr(model.generation_config, "top_k", None) or 50
        if decoding.temperature != 1.0:
            steps.append(_HighestAtZero())
            # float32 holds no temperature below its smallest normal number (5e-324 becomes 0: NaN)
            steps.append(TemperatureLogitsWarper(max(decoding.temperature, torch.finfo(torch.float32).tiny)))
        steps.append(TopKLogitsWarper(top_k))
        if decoding.top_p < 1.0:
            steps.append(TopPLogitsWarper(decoding.top_p))

    def choose(sequences, logits):
        """One next token per row of `sequences`, from the last position's `logits`."""
        scores = steps(sequences, logits)
        if decoding.do_sample:
            return torch.multinomial(scores.softmax(-1), num_samples=1, generator=generator)[:, 0]
        return scores.argmax(-1)

    return choose


class _HighestAtZero(LogitsProcessor):
    """Shifts each row so its best score is 0 (softmax, top-k and top-p ignore a shift): a tiny
    temperature then makes the others -inf, a near-greedy choice, instead of dividing large
    scores into inf and NaN."""

    def __call__(self, input_ids, scores):
        return scores - scores.max(dim=-1, keepdim=True).values


class ReplyText:
    """A reply as it grows, cut at the first of its stop texts. What could still be the start of a
    stop text waits until the next piece tells; everything else can go out at once."""

    def __init__(self, stops: Sequence[str]):
        self.stops = tuple(stops)
        self.text = ""
        self.sent = 0  # how much of the text went out
        self.stopped = False

    def add(self, piece: str) -> str:
        """Take the next piece; return what can go out now."""
        if self.stopped:
            return ""
        self.text += piece
        found = [self.text.find(stop) for stop in self.stops if stop in self.text]
        if found:
            self.text = self.text[: min(found)]
            self.stopped = True
            return self._release(len(self.text))
        return self._release(len(self.text) - self._held())

    def finish(self, piece: str = "") -> str:
        """The reply ended (a stop token or the limit): the rest goes out."""
        return self.add(piece) + self._release(len(self.text))

    def _held(self) -> int:
        """The longest end of the text that begins a stop text."""
        held = 0
        for stop in self.stops:
            for size in range(len(stop) - 1, held, -1):
                if self.text.endswith(stop[:size]):
                    held = size
                    break
        return held

    def _release(self, upto: int) -> str:
        if upto <= self.sent:
            return ""
        out, self.sent = self.text[self.sent : upto], upto
        return out


class TextPieces(TextStreamer):
    """transformers' incremental detokenisation (whole words, CJK at once), collected instead of
    printed. Fast tokenizers are not thread-safe, so decoding takes the engine's tokenizer lock."""

    def __init__(self, tokenizer, lock: threading.Lock):
        super().__init__(tokenizer, skip_prompt=False, skip_special_tokens=True)
        self._lock = lock
        self._ready: list[str] = []

    def on_finalized_text(self, text: str, stream_end: bool = False):
        self._ready.append(text)

    def add(self, token: int) -> str:
        import torch

        with self._lock:
            self.put(torch.tensor([token]))
        return self._take()

    def finish(self) -> str:
        with self._lock:
            self.end()
        return self._take()

    def _take(self) -> str:
        text, self._ready = "".join(self._ready), []
        return text


def _left_pad(states, pads):
    """Stack (1, heads, length, dim) states into one batch, zeros in front up to a common length."""
    import torch
    import torch.nn.functional as F

    return torch.cat([F.pad(state, (0, 0, pad, 0)) for state, pad in zip(states, pads, strict=True)])


def _weights_version(folder: Path) -> tuple | None:
    try:
        stat = (folder / WEIGHTS_FILE).stat()
    except OSError:
        return None
    return (str(folder), stat.st_mtime_ns, stat.st_size)
