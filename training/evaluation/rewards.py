"""Rewards a GRPO job learns from: numbers people can read, check by hand and weigh.

For a translator the reference checks each completion (the metric is the reward, with no reward
model): chrF and BLEU against the reference, a penalty for English words of the source that the
reference translated but the completion kept, and how close its length is to the reference's.
For a persona or any other role, rules: the answer stays in the reference's script (Chinese or
Latin letters), holds no control tokens, has a length within a range, and ends with the format's
end token rather than being cut off. And, for any role, a judge: an OpenAI-compatible endpoint the
user names (their vLLM, a hosted API, this studio's own server) rating each answer from 1 to 10
with a prompt they can edit.

Each reward is in [0, 1] (the English penalty in [-1, 0]), so a weight says how much it counts.
`parse_weights` reads "chrf=1,english=0.5"; `for_trl` turns weights into TRL's reward functions,
which get the completions and the dataset's `reference` and `source` columns.
"""

import math
import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from core.errors import UserError

TRANSLATION = ("chrf", "bleu", "english", "length")
RULES = ("language", "clean", "length_range", "ends")
JUDGE = "judge"
ALL = (*TRANSLATION, *RULES, JUDGE)
DEFAULTS = {
    "translation": {"chrf": 1.0, "english": 0.5},
    "rules": {"language": 1.0, "clean": 1.0, "ends": 0.5},
}
JUDGE_KEY_VARIABLE = "TRANSLATOR_JUDGE_KEY"  # the judge's API key, read by the trainer, never stored
JUDGE_PROMPT = (
    "You grade answers. Rate how well the ANSWER replies to the QUESTION, compared with the "
    "REFERENCE answer (same meaning, same language, same manner). Reply with one integer from 1 "
    "(wrong or off-role) to 10 (as good as the reference), and nothing else.\n\n"
    "QUESTION:\n{question}\n\nANSWER:\n{answer}\n\nREFERENCE:\n{reference}"
)
JUDGE_WORKERS = 8
_WORD = re.compile(r"[A-Za-z][A-Za-z\-]+")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")


def default_weights(metric: str) -> dict[str, float]:
    """A role's rewards when none are named: the reference's metrics for a translator (the role's
    metric is `translation`), the rules for the others."""
    return dict(DEFAULTS["translation" if metric == "translation" else "rules"])


def parse_weights(text: str) -> dict[str, float]:
    """`chrf=1,english=0.5` (a name alone weighs 1) as {name: weight}; refused with what is accepted."""
    weights = {}
    for part in filter(None, (piece.strip() for piece in text.split(","))):
        name, _, weight = part.partition("=")
        name = name.strip()
        if name not in ALL:
            raise UserError("ERR_REWARD_NAME", name=name, names=", ".join(ALL))
        try:
            value = float(weight) if weight.strip() else 1.0
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or not 0 <= value <= 100:
            raise UserError("ERR_REWARD_WEIGHT", name=name, weight=weight.strip())
        weights[name] = value
    if not any(weights.values()):
        raise UserError("ERR_REWARD_NONE", names=", ".join(ALL))
    return weights


def describe(weights: dict[str, float]) -> str:
    return ",".join(f"{name}={weight:g}" for name, weight in weights.items())


# --- the rewards, one completion at a time --------------------------------------------------------


def chrf(completion: str, reference: str) -> float:
    """sacrebleu's sentence chrF (character 6-grams, β 2) against the reference, over 100."""
    from sacrebleu.metrics import CHRF

    return min(1.0, CHRF().sentence_score(completion, [reference]).score / 100)


def bleu(completion: str, reference: str) -> float:
    """sacrebleu's sentence BLEU with the Chinese tokenizer and effective order, over 100."""
    from sacrebleu.metrics import BLEU

    return min(
        1.0, BLEU(tokenize="zh", effective_order=True).sentence_score(completion, [reference]).score / 100
    )


def english(completion: str, reference: str, source: str) -> float:
    """Minus the share of the source's English words that the completion kept although the
    reference translated them (a word the reference keeps too, CT or HIV, is no fault)."""
    source_words = {word.lower() for word in _WORD.findall(source)}
    if not source_words:
        return 0.0
    kept_by_reference = {word.lower() for word in _WORD.findall(reference)}
    kept = {word.lower() for word in _WORD.findall(completion)} & source_words - kept_by_reference
    return -len(kept) / len(source_words)


def length(completion: str, reference: str) -> float:
    """How close the completion's length is to the reference's, in characters without spaces:
    the shorter over the longer (1: the same length, 0: empty)."""
    mine, theirs = len("".join(completion.split())), len("".join(reference.split()))
    if not mine or not theirs:
        return float(mine == theirs)
    return min(mine, theirs) / max(mine, theirs)


def language(completion: str, reference: str) -> float:
    """The share of the completion's letters written in the reference's script (Chinese characters,
    or Latin letters): an answer that slips into another language scores less."""
    chinese, latin = len(_CJK.findall(completion)), len(_LATIN.findall(completion))
    if not chinese + latin:
        return 0.0
    wanted = chinese if len(_CJK.findall(reference)) >= len(_LATIN.findall(reference)) else latin
    return wanted / (chinese + latin)


def clean(completion: str, control_texts: Sequence[str]) -> float:
    """1 when the completion shows none of the tokenizer's control tokens (<eod>, <|eot_id|>, ...)."""
    return 0.0 if any(text and text in completion for text in control_texts) else 1.0


def length_range(completion: str, low: int, high: int) -> float:
    """1 within [low, high] characters; outside, the length's ratio to the nearest bound."""
    size = len(completion.strip())
    if low <= size <= high:
        return 1.0
    return size / low if size < low else high / size


def ends(completion_ids: Sequence[int], stop_ids: Sequence[int]) -> float:
    """1 when the completion ended with an end token (it finished), 0 when the length cut it."""
    return 1.0 if completion_ids and completion_ids[-1] in set(stop_ids) else 0.0


def parse_range(text: str) -> tuple[int, int]:
    low, _, high = text.partition(":")
    try:
        bounds = (int(low), int(high))
    except ValueError:
        raise UserError("ERR_LENGTH_RANGE", text=text) from None
    if not 1 <= bounds[0] <= bounds[1]:
        raise UserError("ERR_LENGTH_RANGE", text=text)
    return bounds


# --- the judge ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Judge:
    """An OpenAI-compatible chat endpoint that rates answers from 1 to 10."""

    url: str
    model: str
    prompt: str = JUDGE_PROMPT
    timeout: float = 60.0

    def client(self):
        import openai

        key = os.environ.get(JUDGE_KEY_VARIABLE) or "unused"
        return openai.OpenAI(base_url=self.url, api_key=key, max_retries=1, timeout=self.timeout)

    def check(self) -> None:
        """Refuse, before a job exists, a judge that does not answer or whose prompt lacks a field."""
        missing = [field for field in ("{answer}",) if field not in self.prompt]
        if missing:
            raise UserError("ERR_JUDGE_PROMPT", fields=", ".join(missing))
        try:
            rendered = self.prompt.format(question="2 + 2?", answer="4", reference="4")
        except (KeyError, IndexError, ValueError) as error:
            raise UserError("ERR_JUDGE_PROMPT_FIELD", error=error) from None
        try:
            reply = self.client().chat.completions.create(
                model=self.model,
                messages=[{"role": "user", "content": rendered}],
                max_tokens=8,
                temperature=0,
            )
        except Exception as error:  # any failure to answer: the endpoint, the model or the key
            raise UserError(
                "ERR_JUDGE_UNREACHABLE", url=self.url, model=self.model, error=_first_line(error)
            ) from None
        if not reply.choices or reply.choices[0].message.content is None:
            raise UserError("ERR_JUDGE_UNREACHABLE", url=self.url, model=self.model, error="an empty reply")

    def rate(self, question: str, answer: str, reference: str, client=None) -> float | None:
        """The judge's 1–10 as [0, 1]; None when it answers no number (TRL leaves it out)."""
        text = self.prompt.format(question=question, answer=answer, reference=reference)
        reply = (client or self.client()).chat.completions.create(
            model=self.model, messages=[{"role": "user", "content": text}], max_tokens=8, temperature=0
        )
        return parse_rating(reply.choices[0].message.content or "")

    def rate_all(self, questions, answers, references) -> list[float | None]:
        """Each answer rated, several requests at once through one client (its connections shared)."""
        client = self.client()
        with ThreadPoolExecutor(JUDGE_WORKERS) as pool:
            return list(pool.map(lambda q, a, r: self.rate(q, a, r, client), questions, answers, references))


def parse_rating(text: str) -> float | None:
    found = re.search(r"\b(10|[1-9])\b", text)
    return (int(found.group(1)) - 1) / 9 if found else None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# --- a job's rewards -----------------------------------------------------------------------------


def weights_for(config, role) -> dict[str, float]:
    """A job's rewards (training.config.TrainConfig): as named, else the role's defaults."""
    return parse_weights(config.rewards) if config.rewards.strip() else default_weights(role.metric)


def judge_for(config) -> Judge | None:
    if not config.judge_url:
        return None
    return Judge(config.judge_url, config.judge_model, config.judge_prompt or JUDGE_PROMPT)


def check_request(config, role) -> None:
    """What a GRPO request needs, refused before a job exists: readable rewards and length range,
    and a judge that answers when the judge reward is weighed."""
    chosen = weights_for(config, role)
    parse_range(config.length_range)
    prompts = config.batch_size * config.grad_accum
    if prompts % max(config.processes, 1):
        raise UserError("ERR_GRPO_BATCH", prompts=prompts, processes=config.processes)
    if chosen.get(JUDGE):
        found = judge_for(config)
        if found is None or not config.judge_model:
            raise UserError("ERR_JUDGE_NEEDS_URL")
        found.check()


# --- TRL's reward functions -----------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    """What some rewards need besides the completion."""

    stop_ids: tuple[int, ...] = ()
    control_texts: tuple[str, ...] = ()
    length_range: tuple[int, int] = (2, 400)
    judge: Judge | None = None


def for_trl(weights: dict[str, float], context: Context) -> tuple[list[Callable], list[float]]:
    """The weighted rewards as TRL's GRPOTrainer calls them (`prompts`, `completions`,
    `completion_ids` and the dataset's columns), named so its logs read rewards/<name>/mean."""
    low, high = context.length_range
    one_by_one = {
        "chrf": lambda c, k, i: chrf(c, k["reference"]),
        "bleu": lambda c, k, i: bleu(c, k["reference"]),
        "english": lambda c, k, i: english(c, k["reference"], k["source"]),
        "length": lambda c, k, i: length(c, k["reference"]),
        "language": lambda c, k, i: language(c, k["reference"]),
        "clean": lambda c, k, i: clean(c, context.control_texts),
        "length_range": lambda c, k, i: length_range(c, low, high),
        "ends": lambda c, k, i: ends(i, context.stop_ids),
    }
    functions, chosen = [], []
    for name, weight in weights.items():
        if not weight:
            continue
        if name == JUDGE:
            function = _judged(context.judge)
        else:
            function = _each(one_by_one[name])
        function.__name__ = name
        functions.append(function)
        chosen.append(weight)
    return functions, chosen


def _each(score: Callable) -> Callable:
    def reward(prompts, completions, completion_ids=None, **columns):
        rows = [
            {key: columns[key][index] for key in ("reference", "source") if key in columns}
            for index in range(len(completions))
        ]
        return [
            score(_text(c), row, ids)
            for c, row, ids in zip(completions, rows, completion_ids or [[]] * len(completions), strict=True)
        ]

    return reward


def _judged(judge: Judge | None) -> Callable:
    if judge is None:
        raise UserError("ERR_JUDGE_NEEDS_URL")

    def reward(prompts, completions, completion_ids=None, **columns):
        sources = columns.get("source") or [""] * len(completions)
        references = columns.get("reference") or [""] * len(completions)
        return judge.rate_all(sources, [_text(c) for c in completions], references)

    return reward


def _text(completion) -> str:
    """A completion as text (a conversational completion is a list of one assistant message)."""
    return completion if isinstance(completion, str) else completion[0]["content"]
