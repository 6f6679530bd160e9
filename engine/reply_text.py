"""A reply's text as tokens arrive: detokenised without splitting a character (`TextPieces`) and
cut at the first stop text without ever sending part of one (`ReplyText`)."""

import threading
from collections.abc import Sequence

from transformers import TextStreamer


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
