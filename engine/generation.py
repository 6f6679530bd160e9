"""One resident base model answering with any adapter, chosen per request: the chat engine
(`ChatEngine`): loading and unloading adapters, prompts, streaming, batches, beams, logits and
reference losses. Which adapter answers, per thread and per row, is engine/routing.py; the decoding
loop and the token chooser engine/decoding.py; the reply's text as tokens arrive
engine/reply_text.py."""

import contextlib
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from core import errors
from core.errors import UserError
from engine import catalogue, devices, formats, head_rows, loading, models
from engine.adapters import WEIGHTS_FILE, AdapterRecord, ResidentAdapter, check_loadable
from engine.decoding import select_rows, shrinking_batch, token_chooser
from engine.reply_text import ReplyText, TextPieces
from engine.roles import Decoding, Role
from engine.routing import BASE, SharedExclusiveLock, hook_lora_layers, thread_choice

IN_TRAINING = "__in_training__"  # the adapter a training process is changing, scored as it goes
STOP_TEXT_TOKENS = 8  # how many of a reply's last tokens are decoded to look for a stop text


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
        head_rows.pad_output_rows(self.model)
        self.prompt_format = loading.default_prompt_format(self.spec, self.model_dir, self.tokenizer)
        self._setup_adapters()

    def _setup_adapters(self, peft_model=None) -> None:
        self._peft_model = peft_model
        self._loaded: dict[str, tuple] = {}  # name -> weights version
        self._peft_names: dict[str, str] = {}  # registry name -> PEFT's name, where they differ
        self._resident: set[str] = set()  # adapters that live in the model only, with no folder
        self._lock = SharedExclusiveLock()
        # Fast tokenizers are not safe to call from several threads at once ("Already borrowed").
        self._tokenizer_lock = threading.Lock()

    @classmethod
    def after_training(
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
    def during_training(cls, peft_model, tokenizer, spec, model_dir, prompt_format: str):
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
        hook_lora_layers(self.model)

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
        if decoding.mbr:  # MBR's choice is known only once every candidate has ended: one piece
            (tokens,) = self.search([prompt], adapter=adapter, decoding=decoding, stop_ids=stops)
            whole = "".join(pieces.add(token) for token in tokens) + pieces.finish()
            if piece := reply.finish(whole):
                yield piece
            return
        steps = self.beam_token_ids if decoding.beams else self.token_ids
        for token in steps(prompt, adapter=adapter, decoding=decoding, stops=stops):
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
        text (sampled or greedy; beams: `beam_token_ids`)."""
        import torch

        if adapter is not None:
            self.ensure_adapter(adapter)
        choose = token_chooser(self.model, decoding)
        sequence = torch.tensor([prompt], device=self.model.device)
        step_input, cache = sequence, None
        for _ in range(decoding.max_new_tokens):
            cache, logits = self._step(step_input, cache, adapter)
            token = int(choose(sequence, logits)[0])
            if token in stops:
                return
            step_input = torch.tensor([[token]], device=sequence.device)
            sequence = torch.cat((sequence, step_input), dim=1)
            yield token

    def beam_token_ids(
        self,
        prompt: list[int],
        *,
        adapter: AdapterRecord | None = None,
        decoding: Decoding,
        stops: set[int],
    ) -> Iterator[int]:
        """The best beam's token ids, the stop token left out, each as soon as it is settled (every
        live beam and kept hypothesis begins with it): transformers' beam search stepped
        (engine.beam_steps), so a reply with beams streams instead of arriving whole."""
        import torch

        from engine.beam_steps import BeamSteps

        if adapter is not None:
            self.ensure_adapter(adapter)
        search = BeamSteps.for_decoding(prompt, decoding, stops, device=self.model.device)
        step_input, cache, sent = torch.tensor([prompt], device=self.model.device), None, 0
        while True:
            prompt_pass = cache is None
            cache, logits = self._step(step_input, cache, adapter)
            if prompt_pass:  # every beam starts from the prompt
                cache.batch_repeat_interleave(decoding.num_beams)
                logits = logits.repeat(decoding.num_beams, 1)
            going_on = search.advance(logits)
            ready = search.best() if going_on is None else search.settled()
            for token in ready[sent:]:
                if token in stops:
                    return
                yield token
            sent = len(ready)
            if going_on is None:
                return
            parents, tokens = going_on
            select_rows(cache, parents)
            step_input = torch.tensor(tokens, device=self.model.device)[:, None]

    def _step(self, step_input, cache, adapter: AdapterRecord | None):
        """One pass of a stream: the cache after `step_input` and the last position's logits."""
        with self._answering_as(adapter):
            output = self.model(input_ids=step_input, past_key_values=cache, use_cache=True, logits_to_keep=1)
        return output.past_key_values, output.logits[:, -1].float()

    @contextlib.contextmanager
    def _answering_as(self, adapter: AdapterRecord | None):
        """Compute with `adapter` (None: the base model) on this thread only, under the shared lock,
        so loading an adapter waits for the block and no other thread's choice changes."""
        import torch

        with self._lock.shared(), torch.inference_mode():
            thread_choice.adapter = self._choice_for(adapter)
            try:
                yield
            finally:
                thread_choice.adapter = None

    @contextlib.contextmanager
    def answering_rows(self, adapters: Sequence[dict | None]):
        """Compute a batch whose row i answers with `adapters[i]` (None: the base model), on this
        thread only: PEFT's mixed-batch LoRA, for requests with different adapters batched together.
        Every adapter must have been loaded (`ensure_adapter`) before."""
        import torch

        with self._lock.shared(), torch.inference_mode():
            choices = [self._choice_for(adapter) for adapter in adapters]
            thread_choice.adapter = choices if self._peft_model is not None else None
            try:
                yield
            finally:
                thread_choice.adapter = None

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
            if decoding.whole:
                output = self.search(
                    [prompts[i] for i in rows],
                    adapter=adapter,
                    decoding=decoding,
                    stop_ids=stop_ids,
                    limits=[limits[i] for i in rows],
                )
            else:
                with self._answering_as(adapter):
                    output = shrinking_batch(
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

    def search(
        self,
        prompts: Sequence[list[int]],
        *,
        adapter: AdapterRecord | None,
        decoding: Decoding,
        stop_ids,
        limits: Sequence[int] | None = None,
        seed: int | None = 0,
    ) -> list[list[int]]:
        """Each prompt's reply by the decoding's search: beam search or MBR (`seed` makes MBR's
        sampling repeatable; None: not seeded)."""
        search = self.mbr_search if decoding.mbr else self.beam_search
        extra = {"seed": seed} if decoding.mbr else {}
        return search(
            prompts,
            adapter=adapter,
            decoding=decoding,
            stop_ids=stop_ids,
            limits=limits,
            **extra,
        )

    def _left_padded(self, prompts: Sequence[list[int]], stop_ids):
        """A search's inputs: the stop ids, the pad id, the width, the left-padded ids and their mask."""
        stops = sorted(set(stop_ids))
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else stops[0]
        width = max(len(prompt) for prompt in prompts)
        ids = [[pad] * (width - len(prompt)) + list(prompt) for prompt in prompts]
        mask = [[0] * (width - len(prompt)) + [1] * len(prompt) for prompt in prompts]
        return stops, pad, width, ids, mask

    def mbr_search(
        self,
        prompts: Sequence[list[int]],
        *,
        adapter: AdapterRecord | None,
        decoding: Decoding,
        stop_ids,
        limits: Sequence[int] | None = None,
        seed: int | None = 0,
    ) -> list[list[int]]:
        """Minimum-Bayes-risk decoding: `mbr_samples` candidates per prompt, sampled together in one
        left-padded batch at the decoding's temperature and top_p, each cut at its first stop token
        and its own limit; the candidate agreeing most with the others under chrF is the reply
        (engine.decoding.mbr_choice)."""
        import torch
        from transformers import GenerationConfig

        from engine.decoding import mbr_choice

        if adapter is not None:
            self.ensure_adapter(adapter)
        samples = decoding.mbr_samples
        limits = list(limits) if limits else [decoding.max_new_tokens] * len(prompts)
        stops, pad, width, ids, mask = self._left_padded(prompts, stop_ids)
        config = GenerationConfig(
            do_sample=True,
            temperature=decoding.temperature,
            top_p=decoding.top_p,
            top_k=0,
            repetition_penalty=decoding.repetition_penalty,
            num_return_sequences=samples,
            max_new_tokens=max(limits),
            eos_token_id=stops,
            pad_token_id=pad,
        )
        with torch.random.fork_rng(devices=[]), self._answering_as(adapter):
            if seed is not None:
                torch.manual_seed(seed)
            output = self.model.generate(
                input_ids=torch.tensor(ids, device=self.model.device),
                attention_mask=torch.tensor(mask, device=self.model.device),
                generation_config=config,
            )
        rows = output[:, width:].tolist()
        replies = []
        for index, limit in enumerate(limits):
            candidates = []
            for row in rows[index * samples : (index + 1) * samples]:
                candidates.append(_cut(row, stops, limit))
            with self._tokenizer_lock:
                texts_ = self.tokenizer.batch_decode(candidates, skip_special_tokens=True)
            replies.append(candidates[mbr_choice([text.strip() for text in texts_])])
        return replies

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
        stops, pad, width, ids, mask = self._left_padded(prompts, stop_ids)
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
            replies.append(_cut(row, stops, limit))
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


def _cut(row: list[int], stops, limit: int) -> list[int]:
    """A searched row's reply: up to its first stop token, within its own limit."""
    ends = [at for at, token in enumerate(row) if token in stops]
    return row[: min([*ends[:1], limit])]


def _weights_version(folder: Path) -> tuple | None:
    try:
        stat = (folder / WEIGHTS_FILE).stat()
    except OSError:
        return None
    return (str(folder), stat.st_mtime_ns, stat.st_size)
