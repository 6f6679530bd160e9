"""Prompt formats: the exact token ids a model is trained on are the ids chat sends it.

One function renders the prompt for both paths (`prompt_ids`); training appends the target and
masks the prompt with -100. Families:
    yuan           `{user}<sep>` then `{output}<eod>` (Yuan 2.0 tutorial)
    chat_template  the tokenizer's own chat template; the role's system prompt becomes the system turn
    plain          base models without a template: `{system}\n\n{user}\n\n` then `{output}<eos>`
"""

import functools
from collections.abc import Sequence
from dataclasses import dataclass, replace

from core.errors import UserError
from engine.roles import Role

FORMATS = ("yuan", "chat_template", "plain")
IGNORE_INDEX = -100
MAX_LENGTH = 384
# Llama-3 templates print today's date into the system turn; a fixed date keeps the prompt a model
# was trained on identical to the one chat sends on any later day.
TEMPLATE_DATE = "26 Jul 2024"

Turn = tuple[str, str]  # (user text, assistant reply)
PLAIN_TURN_END = "\n\n"


@dataclass(frozen=True)
class TrainingExample:
    input_ids: list[int]
    labels: list[int]
    prompt_length: int
    full_length: int  # before truncation

    @property
    def truncated(self) -> bool:
        return self.full_length > len(self.input_ids)


def user_text(role: Role, instruction: str = "", input_text: str = "") -> str:
    """The user's turn: the record's instruction (else the role's) followed by its input."""
    lead = instruction or role.instruction
    if lead and input_text:
        return f"{lead}\n{input_text}"
    return lead or input_text


def prompt_ids(
    tokenizer, prompt_format: str, role: Role, text: str, history: Sequence[Turn] = ()
) -> list[int]:
    rendered = prompt_text(tokenizer, prompt_format, role, text, history)
    return (_bos(tokenizer) if prompt_format == "plain" else []) + _encode(tokenizer, rendered)


def prompt_text(tokenizer, prompt_format: str, role: Role, text: str, history: Sequence[Turn] = ()) -> str:
    """The prompt as text, before tokenisation (the plain format's begin token, which the tokenizer
    itself would add, is not part of it): what an exported Modelfile's template must reproduce."""
    history = history if role.uses_history else ()
    if prompt_format == "yuan":
        past = "".join(f"{q}<sep>{a}<eod>" for q, a in history)
        return f"{past}{text}<sep>"
    if prompt_format == "chat_template":
        return _template_text(tokenizer, _messages(role, text, history), add_generation_prompt=True)
    if prompt_format == "plain":
        eos = tokenizer.eos_token or ""
        end = PLAIN_TURN_END
        system = f"{role.system_prompt}{end}" if role.system_prompt else ""
        past = "".join(f"{q}{end}{a}{eos}{end}" for q, a in history)
        return f"{system}{past}{text}{end}"
    raise UserError("ERR_UNKNOWN_FORMAT", value=prompt_format, choices=", ".join(FORMATS))


def target_ids(tokenizer, prompt_format: str, role: Role, text: str, output: str) -> list[int]:
    if prompt_format == "yuan":
        return _encode(tokenizer, f"{output}<eod>")
    if prompt_format == "chat_template":
        messages = _messages(role, text, ())
        prompt_text_ = _template_text(tokenizer, messages, add_generation_prompt=True)
        full_text = _template_text(
            tokenizer, [*messages, {"role": "assistant", "content": output}], add_generation_prompt=False
        )
        if not full_text.startswith(prompt_text_):
            raise UserError("ERR_TEMPLATE_DISAGREES")
        prompt, full = _encode(tokenizer, prompt_text_), _encode(tokenizer, full_text)
        if full[: len(prompt)] == prompt:
            return full[len(prompt) :]
        # The answer's first characters merge with the prompt's last token (an answer starting with
        # blank lines after the template's newline): tokenised after the prompt, as chat generates it.
        return _encode(tokenizer, full_text[len(prompt_text_) :])
    if prompt_format == "plain":
        return _encode(tokenizer, output) + [tokenizer.eos_token_id]
    raise UserError("ERR_UNKNOWN_FORMAT", value=prompt_format, choices=", ".join(FORMATS))


def training_example(
    tokenizer, prompt_format: str, role: Role, record: dict, max_length: int = MAX_LENGTH
) -> TrainingExample | None:
    """Token ids and labels for one record; None when truncation leaves no target token. A record
    from a chat (training.data.datasets.chat_records) brings its own system prompt and earlier turns."""
    if record.get("system") is not None:
        role = replace(role, system_prompt=record["system"])
    history = [tuple(turn) for turn in record.get("history") or ()]
    text = user_text(role, record.get("instruction", ""), record.get("input", ""))
    prompt = prompt_ids(tokenizer, prompt_format, role, text, history)
    target = target_ids(tokenizer, prompt_format, role, text, record["output"])
    input_ids = (prompt + target)[:max_length]
    if len(prompt) >= len(input_ids):
        return None
    labels = [IGNORE_INDEX] * len(prompt) + input_ids[len(prompt) :]
    return TrainingExample(input_ids, labels, len(prompt), len(prompt) + len(target))


@dataclass(frozen=True)
class PreferenceExample:
    """Token ids of one preference record: the prompt once, then each answer with its end token
    (`rejected_ids` empty for an unpaired, judged answer, whose verdict is `label`)."""

    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]
    label: bool | None
    full_length: int  # the longest of prompt + answer, before truncation

    @property
    def truncated(self) -> bool:
        return self.full_length > len(self.prompt_ids) + max(len(self.chosen_ids), len(self.rejected_ids))


def preference_example(
    tokenizer, prompt_format: str, role: Role, record: dict, max_length: int = MAX_LENGTH
) -> PreferenceExample | None:
    """The ids of a preference record (training/data/pairs.py): its prompt exactly as chat renders it
    (the record's own system prompt and earlier turns, when it has them), each answer as a training
    target with the format's end token, each prompt + answer cut to `max_length`. None when the
    prompt alone fills it."""
    if record.get("system") is not None:
        role = replace(role, system_prompt=record["system"])
    history = [tuple(turn) for turn in record.get("history") or ()]
    prompt = prompt_ids(tokenizer, prompt_format, role, record["prompt"], history)
    if len(prompt) >= max_length:
        return None
    answers = [record["chosen"], record["rejected"]] if "chosen" in record else [record["completion"]]
    targets = [target_ids(tokenizer, prompt_format, role, record["prompt"], answer) for answer in answers]
    room = max_length - len(prompt)
    chosen, rejected = targets[0][:room], (targets[1][:room] if len(targets) > 1 else [])
    full = len(prompt) + max(len(target) for target in targets)
    return PreferenceExample(prompt, chosen, rejected, record.get("label"), full)


def stop_token_ids(tokenizer, prompt_format: str, model=None) -> list[int]:
    """Tokens that end a reply: the format's end marker plus whatever the model declares."""
    ids = set()
    if prompt_format == "yuan":
        eod = tokenizer.convert_tokens_to_ids("<eod>")
        if isinstance(eod, int) and eod != tokenizer.unk_token_id:
            ids.add(eod)
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    declared = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(declared, int):
        ids.add(declared)
    elif declared:
        ids.update(declared)
    return sorted(ids)


def stop_texts(prompt_format: str, *, tuned: bool) -> tuple[str, ...]:
    """Texts that end a reply besides the stop tokens. The plain format closes every turn with a
    blank line; a base model was never taught the end token, so that blank line is where its
    answer ends (else it writes the next question and runs to the token limit). A model tuned in
    this format learned the end token, and its replies may hold paragraphs."""
    if prompt_format == "plain" and not tuned:
        return (PLAIN_TURN_END,)
    return ()


def _messages(role: Role, text: str, history: Sequence[Turn]) -> list[dict]:
    messages = [{"role": "system", "content": role.system_prompt}] if role.system_prompt else []
    for question, answer in history:
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return [*messages, {"role": "user", "content": text}]


def _template_ids(tokenizer, messages: list[dict], add_generation_prompt: bool) -> list[int]:
    return _encode(tokenizer, _template_text(tokenizer, messages, add_generation_prompt))


def _template_text(tokenizer, messages: list[dict], add_generation_prompt: bool) -> str:
    if not getattr(tokenizer, "chat_template", None):
        raise UserError("ERR_NO_CHAT_TEMPLATE")
    return tokenizer.apply_chat_template(
        messages,
        tokenize=False,
        add_generation_prompt=add_generation_prompt,
        date_string=TEMPLATE_DATE,
    )


def _encode(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _bos(tokenizer) -> list[int]:
    """The begin token, for tokenizers that put it before every text themselves (Gemma, Llama):
    their models expect it. Asked of the tokenizer's own behaviour, since transformers 5 no longer
    exposes `add_bos_token` on every tokenizer."""
    return [tokenizer.bos_token_id] if _adds_bos(tokenizer) else []


@functools.lru_cache(maxsize=16)
def _adds_bos(tokenizer) -> bool:
    """Asked once per tokenizer: prompt_ids runs for every example and every chat message."""
    bos = tokenizer.bos_token_id
    own = tokenizer("a", add_special_tokens=True)["input_ids"] if bos is not None else []
    return bool(own) and own[0] == bos
