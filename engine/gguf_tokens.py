"""Which tokens of a GGUF file are markers, not text, carried into the tokenizer converted from it.

A GGUF records a type per token (llama.cpp's `LLAMA_TOKEN_TYPE_*`). Control tokens (type 3: turn
markers, begin/end, Gemma's `<unused…>`) are never part of a reply. Some models also have markers
their own tokenizer declares special while the GGUF, copying the SentencePiece model, types them
user-defined: Gemma 3's image markers (`boi_token`, `eoi_token` and `image_token` in its
tokenizer_config). A text-only model that writes one writes noise, and a reply must not show it.
Marked special, decoding with `skip_special_tokens` leaves them out; encoding is unchanged (the
tokenizer already matched them whole as added tokens).
"""

from pathlib import Path

CONTROL = 3  # llama.cpp's LLAMA_TOKEN_TYPE_CONTROL
# Markers a model's own tokenizer declares special that its GGUF types as user-defined.
MARKERS_BY_ARCHITECTURE = {"gemma3": ("<start_of_image>", "<end_of_image>", "<image_soft_token>")}


def special_tokens(gguf_path: Path) -> list[str]:
    """The tokens that a decoded reply must never contain: the file's control tokens and its
    architecture's known markers (which its vocabulary may lack)."""
    import gguf
    import numpy as np

    fields = gguf.GGUFReader(gguf_path).fields
    tokens = fields["tokenizer.ggml.tokens"]
    types = fields["tokenizer.ggml.token_type"]
    # Read as one array: the reader's per-item decoding takes ~12 s for Gemma's 262k tokens.
    token_types = np.concatenate([types.parts[index] for index in types.data])
    controls = np.flatnonzero(token_types == CONTROL)
    names = [bytes(tokens.parts[tokens.data[i]]).decode("utf-8") for i in controls]
    architecture = bytes(fields["general.architecture"].parts[-1]).decode("utf-8")
    return names + list(MARKERS_BY_ARCHITECTURE.get(architecture, ()))


def mark_special(tokenizer, names: list[str]) -> None:
    """Make each named token of the vocabulary special (the ids stay as they are); names the
    vocabulary lacks (a Gemma 3 size without an image token) are left out, not added, and tokens
    already special keep their settings."""
    from tokenizers import AddedToken

    vocabulary = tokenizer.get_vocab()
    already = {token.content for token in tokenizer.added_tokens_decoder.values() if token.special}
    known = [name for name in names if name in vocabulary and name not in already]
    marked = [AddedToken(name, special=True, normalized=False) for name in known]
    tokenizer.add_tokens(marked, special_tokens=True)
