"""Continuous batching for the API server: every request in flight advances by one token per model
step, whatever adapter it asked for and however it decodes.

One worker thread owns the model's compute. A new request is prefilled alone (on a CPU a left-padded
batch would compute its padding for nothing) and joins the running batch at the next step: its KV
cache is stacked onto the batch's, left-padded to a common length (sliding-window layers, as
Gemma-3's, keep each row's own tail). A greedy or sampled request is one row; a beam request is one
row per beam (`engine.beam_steps`: transformers' beam search stepped beside its peers, its settled
tokens streamed as they settle). Each row answers with its request's adapter through PEFT's
mixed-batch LoRA (`ChatEngine.answering_rows`), and a request's rows leave the batch as soon as it
ends. An MBR request is one row per candidate, sampled from its own generator; its reply, chosen
once every candidate has ended, goes out whole. Caches that cannot be stacked make new requests
wait until the running batch is done, and then start together.
"""

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from engine.beam_steps import BeamSteps
from engine.decoding import mbr_choice, select_rows, stack_left_padded, token_chooser
from engine.generation import ChatEngine
from engine.reply_text import ReplyText, TextPieces
from engine.roles import Decoding

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Generation:
    """One request: its prompt tokens, who answers, how, and where the text goes.

    `on_text(piece)` receives the reply as it grows, `on_end(finish_reason, tokens)` once at the end
    ("stop" or "length"), `on_error(message)` instead of `on_end` when the model fails. They are
    called from the worker thread."""

    prompt: list[int]
    adapter: dict | None
    decoding: Decoding
    max_tokens: int
    stop_ids: frozenset[int]
    on_text: Callable[[str], None]
    on_end: Callable[[str, int], None]
    on_error: Callable[[str], None]
    stop_texts: tuple[str, ...] = ()
    seed: int | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)


class _Reply:
    """A generation's text side: its tokens so far, its unsent text, and how it finished."""

    def __init__(self, engine: ChatEngine, generation: Generation):
        self.generation = generation
        self.pieces = TextPieces(engine.tokenizer, engine.tokenizer_lock)
        self.tokens = 0
        self.reply = ReplyText(generation.stop_texts)
        self.finish: str | None = None

    def add(self, token: int) -> None:
        """Take the next token, or end on a stop token, a stop text or the length limit."""
        generation = self.generation
        if token in generation.stop_ids:
            self.end("stop", self.pieces.finish())
            return
        self.tokens += 1
        piece = self.pieces.add(token)
        if self.tokens >= generation.max_tokens:
            self.end("length", piece + self.pieces.finish())
            return
        self._send(self.reply.add(piece))
        if self.reply.stopped:
            self.finish = "stop"

    def end(self, reason: str, piece: str) -> None:
        self._send(self.reply.finish(piece))
        self.finish = "stop" if self.reply.stopped else reason

    def _send(self, text: str) -> None:
        if text:
            self.generation.on_text(text)


class _Row(_Reply):
    """A greedy or sampled generation in the running batch: one row, its token chosen with its own
    decoding settings and seed."""

    rows = 1

    def __init__(self, engine: ChatEngine, generation: Generation):
        import torch

        super().__init__(engine, generation)
        generator = None
        if generation.decoding.do_sample and generation.seed is not None:
            generator = torch.Generator(device=engine.model.device).manual_seed(generation.seed)
        self.choose = token_chooser(engine.model, generation.decoding, generator)
        self.sequence = torch.tensor([generation.prompt], device=engine.model.device)

    def add(self, token: int) -> None:
        import torch

        super().add(token)
        if self.finish is None:  # the repetition penalty reads the tokens so far
            self.sequence = torch.cat((self.sequence, self.sequence.new_tensor([[token]])), dim=1)

    def advance(self, logits) -> tuple[list[int], list[int]] | None:
        """This step's token from the last position's logits: (the row it continues, its token),
        or None once the generation has ended."""
        token = int(self.choose(self.sequence, logits)[0])
        self.add(token)
        return None if self.finish is not None else ([0], [token])


class _Searched:
    """A generation whose rows are searched (beams, candidates): its text goes out through its
    `_Reply`, which keeps the pieces, the stop texts and the finish reason."""

    out: _Reply

    @property
    def finish(self) -> str | None:
        return self.out.finish

    @finish.setter
    def finish(self, reason: str) -> None:
        self.out.finish = reason

    @property
    def tokens(self) -> int:
        return self.out.tokens

    def _send(self, tokens: list[int], ended: bool) -> None:
        """Send the reply's tokens beyond those already sent; `ended`: they are the whole reply."""
        for token in tokens[self.out.tokens :]:
            self.out.add(token)
            if self.out.finish is not None:
                return
        if ended:  # ended on a stop token, which the search leaves out
            self.out.end("stop", self.out.pieces.finish())


class _Beams(_Searched):
    """A beam-search generation in the running batch: one row per beam. The reply's text goes out
    as its tokens settle (shared by every beam and kept hypothesis), the rest when the search ends."""

    def __init__(self, engine: ChatEngine, generation: Generation):
        decoding = generation.decoding
        self.generation = generation
        self.rows = decoding.num_beams
        self.search = BeamSteps.for_decoding(
            generation.prompt, decoding, generation.stop_ids, generation.max_tokens, engine.model.device
        )
        self.out = _Reply(engine, generation)

    def advance(self, logits) -> tuple[list[int], list[int]] | None:
        going_on = self.search.advance(logits)
        if going_on is None:
            self._send(self.search.best(), ended=True)
            return None
        self._send(self.search.settled(), ended=False)
        return None if self.out.finish is not None else going_on


class _Candidates(_Searched):
    """A minimum-Bayes-risk generation in the running batch: one row per candidate, sampled as
    `ChatEngine.mbr_search` samples them (temperature, top_p, no top-k, the repetition penalty) from
    the request's own generator (its seed, else 0: the same request gets the same reply whatever
    runs beside it). A candidate's row leaves when it ends; when all have ended, the one agreeing
    most with the others under chrF is the reply, sent whole."""

    def __init__(self, engine: ChatEngine, generation: Generation):
        import torch

        decoding = generation.decoding
        self.generation, self.engine = generation, engine
        self.rows = decoding.mbr_samples
        seed = generation.seed if generation.seed is not None else 0
        generator = torch.Generator(device=engine.model.device).manual_seed(seed)
        sampled = decoding.with_changes(do_sample=True, num_beams=1, mbr_samples=0)
        self.choose = token_chooser(engine.model, sampled, generator, top_k=0)
        self.sequences = torch.tensor([generation.prompt] * self.rows, device=engine.model.device)
        self.drawn: list[list[int]] = [[] for _ in range(self.rows)]
        self.going = list(range(self.rows))  # the candidates still drawing, in their batch rows' order
        self.out = _Reply(engine, generation)

    def advance(self, logits) -> tuple[list[int], list[int]] | None:
        import torch

        drawn = self.choose(self.sequences, logits).tolist()
        parents, tokens = [], []
        for row, token in enumerate(drawn):
            candidate = self.drawn[self.going[row]]
            if token in self.generation.stop_ids:
                continue
            candidate.append(token)
            if len(candidate) < self.generation.max_tokens:
                parents.append(row)
                tokens.append(token)
        if parents:
            self.going = [self.going[row] for row in parents]
            kept = torch.tensor(parents, device=self.sequences.device)
            drawn_now = torch.tensor(tokens, device=kept.device)[:, None]
            self.sequences = torch.cat((self.sequences[kept], drawn_now), dim=1)
            self.rows = len(parents)
            return parents, tokens
        with self.engine.tokenizer_lock:
            texts = self.engine.tokenizer.batch_decode(self.drawn, skip_special_tokens=True)
        self._send(self.drawn[mbr_choice([text.strip() for text in texts])], ended=True)
        return None


class Scheduler:
    """Runs generations submitted from any thread, batched together on one worker thread."""

    def __init__(self, engine: ChatEngine, max_batch: int = 16):
        self.engine = engine
        self.max_batch = max_batch
        self._waiting: queue.Queue[Generation | None] = queue.Queue()
        self._deferred: Generation | None = None  # taken from the queue, waiting for room in the batch
        self._rows: list[_Row | _Beams | _Candidates] = []  # each on `rows` batch rows
        self._cache = self._mask = self._positions = self._logits = None
        self._joinable: bool | None = None  # known after the first prefill
        self.widest = 0  # the most rows that ever ran in one step: whether batching happens
        self._padded = False  # whether any row of the batch has padding in front
        self._worker = threading.Thread(target=self._run, name="api-scheduler", daemon=True)
        self._worker.start()

    def submit(self, generation: Generation) -> None:
        self._waiting.put(generation)

    def close(self) -> None:
        self._waiting.put(None)
        self._worker.join(timeout=30)

    @property
    def running(self) -> int:
        return len(self._rows)

    def _width(self) -> int:
        return sum(row.rows for row in self._rows)

    def _run(self) -> None:
        while True:
            arriving = self._admissible()
            if arriving is None:
                return
            try:
                if arriving:
                    self._admit(arriving)
                if self._rows:
                    self._step()
            except Exception as error:  # a failing model fails its requests, not the server
                log.exception("generation failed")
                failed = {row.generation for row in self._rows} | set(arriving)
                for generation in failed:
                    generation.on_error(f"{type(error).__name__}: {error}")
                self._reset()

    def _admissible(self) -> list[Generation] | None:
        """The requests that join at this step: wait for one when idle, else take what is there while
        their rows fit in `max_batch` (a beam request takes one row per beam; one that does not fit
        waits for the next step; none join while the running batch cannot take new rows).
        None: the scheduler is closing."""
        arriving: list[Generation] = []
        if not self._rows and self._deferred is None:
            first = self._waiting.get()
            if first is None:
                return None
            arriving.append(first)
        elif self._rows and self._joinable is False:
            return arriving
        room = self.max_batch - self._width() - sum(_rows_of(g) for g in arriving)
        while room > 0:
            if self._deferred is not None:
                generation, self._deferred = self._deferred, None
            else:
                try:
                    generation = self._waiting.get_nowait()
                except queue.Empty:
                    break
                if generation is None:
                    self._waiting.put(None)  # finish the running batch first, then close
                    break
            if _rows_of(generation) > room and (arriving or self._rows):
                self._deferred = generation
                break
            arriving.append(generation)
            room -= _rows_of(generation)
        return [g for g in arriving if not g.cancelled.is_set()]

    def _admit(self, arriving: list[Generation]) -> None:
        """Prefill each new request alone and stack its cache onto the batch's (left padding), once
        per row it takes (a beam request's beams start as copies of its prompt)."""
        import torch

        model = self.engine.model
        new_rows = [_member(self.engine, generation) for generation in arriving]
        caches, logits, lengths = [], [], []
        for row in new_rows:
            generation = row.generation
            with self.engine.answering_rows([generation.adapter]):
                output = model(
                    input_ids=torch.tensor([generation.prompt], device=model.device),
                    use_cache=True,
                    logits_to_keep=1,
                )
            caches += [output.past_key_values] * row.rows
            logits += [output.logits[:, -1].float()] * row.rows
            lengths += [len(generation.prompt)] * row.rows
        held = [self._cache] if self._rows else []
        widths = [self._mask.shape[1]] if self._rows else []
        widths += lengths
        width = max(widths)
        cache = stack_left_padded([*held, *caches], [width - w for w in widths])
        self._joinable = cache is not None
        self._padded = self._padded or len(set(widths)) > 1
        if cache is None:  # not stackable: the new requests start together, as one padded batch
            self._padded_prefill(new_rows)
            return
        new_masks = [torch.ones(1, length, dtype=torch.long, device=model.device) for length in lengths]
        masks = ([self._mask] if self._rows else []) + new_masks
        self._mask = torch.cat([torch.nn.functional.pad(mask, (width - mask.shape[1], 0)) for mask in masks])
        new_positions = torch.tensor([[length - 1] for length in lengths], device=model.device)
        self._positions = new_positions if not self._rows else torch.cat((self._positions, new_positions))
        self._logits = torch.cat(([self._logits] if self._rows else []) + logits)
        self._cache = cache
        self._rows += new_rows

    def _padded_prefill(self, new_rows: list) -> None:
        import torch

        model = self.engine.model
        prompts = [row.generation.prompt for row in new_rows for _ in range(row.rows)]
        width = max(len(prompt) for prompt in prompts)
        pad = self.engine.tokenizer.pad_token_id or 0
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=model.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=model.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with self.engine.answering_rows(_row_adapters(new_rows)):
            output = model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=positions,
                use_cache=True,
                logits_to_keep=1,
            )
        self._rows = new_rows
        self._padded = len({len(prompt) for prompt in prompts}) > 1
        self._cache, self._mask = output.past_key_values, mask
        self._positions, self._logits = positions[:, -1:], output.logits[:, -1].float()

    def _step(self) -> None:
        """Choose each generation's next tokens (a beam request: its beams' continuations), let the
        finished ones go, reorder the batch's rows to the beams that go on, and run the model once."""
        import torch

        order, tokens, going_on, start = [], [], [], 0
        for row in self._rows:
            width = row.rows  # before it advances: candidates that end give up their rows
            if row.generation.cancelled.is_set():
                row.finish = "cancelled"
            else:
                continued = row.advance(self._logits[start : start + width])
                if continued is not None:
                    parents, next_tokens = continued
                    order += [start + parent for parent in parents]
                    tokens += next_tokens
                    going_on.append(row)
            start += width
        for row in self._rows:
            if row.finish not in (None, "cancelled"):
                row.generation.on_end(row.finish, row.tokens)
        if not going_on:
            self._reset()
            return
        if order != list(range(start)):
            select_rows(self._cache, order)
            selected = torch.tensor(order, device=self._mask.device)
            self._mask, self._positions = self._mask[selected], self._positions[selected]
        self._rows = going_on
        self.widest = max(self.widest, len(order))
        ids = torch.tensor(tokens, device=self._mask.device)[:, None]
        self._mask = torch.cat((self._mask, self._mask.new_ones(len(order), 1)), dim=1)
        self._positions = self._positions + 1
        # Without padding the model needs no mask and finds the positions itself: the same call as
        # the chat page's stream, so one request alone costs and answers exactly the same.
        where = {"attention_mask": self._mask, "position_ids": self._positions} if self._padded else {}
        with self.engine.answering_rows(_row_adapters(self._rows)):
            output = self.engine.model(
                input_ids=ids, past_key_values=self._cache, use_cache=True, logits_to_keep=1, **where
            )
        self._cache, self._logits = output.past_key_values, output.logits[:, -1].float()

    def _reset(self) -> None:
        self._rows, self._padded = [], False
        self._cache = self._mask = self._positions = self._logits = None


def _member(engine: ChatEngine, generation: Generation) -> _Row | _Beams | _Candidates:
    if generation.decoding.mbr:
        return _Candidates(engine, generation)
    return _Beams(engine, generation) if generation.decoding.beams else _Row(engine, generation)


def _rows_of(generation: Generation) -> int:
    decoding = generation.decoding
    return decoding.mbr_samples if decoding.mbr else decoding.num_beams if decoding.beams else 1


def _row_adapters(rows) -> list:
    """Each batch row's adapter: every beam of a request answers with the request's adapter."""
    return [row.generation.adapter for row in rows for _ in range(row.rows)]
