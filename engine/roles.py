"""Roles: a system prompt, an instruction, a decoding preset, whether history matters, the prompt
format to train and chat with (empty: the base model's own), and the metric that scores it.

Built-in roles mirror the two tutorials; users add their own (studio/roles.py keeps them).
"""

from dataclasses import asdict, dataclass, field, replace

from core import texts
from core.errors import UserError


@dataclass(frozen=True)
class Decoding:
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    max_new_tokens: int = 256
    # beam search, without sampling: how many candidates are kept, and how their scores weigh
    # length (HF's exponent: a beam's log-probability divided by length ** penalty)
    num_beams: int = 1
    length_penalty: float = 1.0
    # minimum-Bayes-risk decoding: this many candidates sampled (temperature, top_p) and the one that
    # agrees most with the others under chrF kept (engine.decoding.mbr_choice); 0 or 1: off
    mbr_samples: int = 0

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def mbr(self) -> bool:
        return self.mbr_samples > 1

    @property
    def beams(self) -> bool:
        return self.num_beams > 1 and not self.do_sample and not self.mbr

    @property
    def whole(self) -> bool:
        """The reply is a search's outcome (beams, MBR): batches are searched with `generate()`; a
        stream sends what has settled (beams) or the whole reply at the end (MBR)."""
        return self.beams or self.mbr

    @property
    def key(self) -> str:
        """How deterministic predictions were decoded, as evaluations store it: scores are compared
        only between equal keys."""
        if self.mbr:
            return f"mbr={self.mbr_samples},temperature={self.temperature:g},top_p={self.top_p:g}"
        if not self.beams:
            return "greedy"
        return f"beams={self.num_beams},length_penalty={self.length_penalty:g}"

    def describe(self) -> str:
        if self.mbr:
            how = texts.MBR_SEARCH.format(
                samples=self.mbr_samples, temperature=f"{self.temperature:g}", top_p=f"{self.top_p:g}"
            )
        elif self.do_sample:
            how = f"T={self.temperature:g} top_p={self.top_p:g}"
        elif self.beams:
            how = texts.BEAM_SEARCH.format(beams=self.num_beams, penalty=f"{self.length_penalty:g}")
        else:
            how = texts.GREEDY
        return texts.DECODING_SUMMARY.format(
            how=how, rep=f"{self.repetition_penalty:g}", max=self.max_new_tokens
        )

    def with_changes(self, **changes) -> "Decoding":
        known = {k: v for k, v in changes.items() if k in self.__dataclass_fields__ and v is not None}
        return replace(self, **known)


@dataclass(frozen=True)
class Limit:
    """A decoding setting's range, written once: a role is checked against it, each widget takes its
    bounds and step from it, and the API refuses a request outside it."""

    low: float
    high: float
    step: float
    low_allowed: bool = True  # temperature and top_p must be above their low end

    def allows(self, value: float) -> bool:
        above_low = self.low <= value if self.low_allowed else self.low < value
        return above_low and value <= self.high

    @property
    def smallest(self) -> float:
        """The smallest value a widget offers."""
        return self.low if self.low_allowed else self.low + self.step

    def problem(self, setting: str) -> str:
        """What is wrong with a value outside the range, in the reader's language."""
        return texts.DECODING_LIMITS[setting].format(low=f"{self.low:g}", high=f"{self.high:g}")


DECODING_LIMITS = {
    "temperature": Limit(0.0, 5.0, 0.05, low_allowed=False),
    "top_p": Limit(0.0, 1.0, 0.05, low_allowed=False),
    "repetition_penalty": Limit(1.0, 5.0, 0.05),
    "max_new_tokens": Limit(1, 8192, 1),
    "num_beams": Limit(1, 8, 1),
    "length_penalty": Limit(0.0, 3.0, 0.1),
    "mbr_samples": Limit(0, 32, 1),
}


def check_decoding(decoding: Decoding) -> None:
    for setting, limit in DECODING_LIMITS.items():
        value = getattr(decoding, setting)
        if not limit.allows(value) or (setting in ("num_beams", "mbr_samples") and value != int(value)):
            raise UserError("ERR_ROLE_DECODING", problem=limit.problem(setting))
    if decoding.do_sample and decoding.num_beams > 1:
        raise UserError("ERR_BEAMS_WITH_SAMPLING", beams=decoding.num_beams)


@dataclass(frozen=True)
class Role:
    name: str
    title: str
    system_prompt: str = ""
    # Put before the user's text when a training example has no instruction of its own.
    instruction: str = ""
    decoding: Decoding = field(default_factory=Decoding)
    uses_history: bool = True
    builtin: bool = False
    prompt_format: str = ""  # yuan, chat_template or plain; empty: the base model's own
    metric: str = "loss"  # see METRICS

    @property
    def label(self) -> str:
        """The name people see: a built-in role's speaks the chosen language."""
        return texts.ROLE_TITLES[self.name] if self.builtin else self.title

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "Role":
        return cls(**{**values, "decoding": Decoding(**values["decoding"])})


TRANSLATOR = Role(
    name="translator",
    title="Translator (EN→ZH)",
    system_prompt="你是一名专业的医学翻译。请把用户给出的英文翻译成简体中文，只输出译文。",
    # two beams: +2.1 BLEU [+0.7, +3.7] over greedy on ParaMed dev at 1.3x the time; four and six
    # beams gained less and cost 1.9x and 2.5x (bench/beam_search.py, figures in bench/README.md)
    decoding=Decoding(do_sample=False, max_new_tokens=256, num_beams=2),
    uses_history=False,  # every message is a new text to translate
    builtin=True,
    metric="translation",
)
PERSONA = Role(
    name="persona",
    title="Zhen Huan persona",
    system_prompt="现在你要扮演皇帝身边的女人--甄嬛",
    decoding=Decoding(do_sample=True, temperature=0.5, top_p=0.9, repetition_penalty=1.1, max_new_tokens=256),
    builtin=True,
)
ASSISTANT = Role(
    name="assistant",
    title="Assistant",
    decoding=Decoding(do_sample=True, temperature=0.7, top_p=0.9, repetition_penalty=1.1),
    builtin=True,
)
BUILTIN_ROLES = {role.name: role for role in (TRANSLATOR, PERSONA, ASSISTANT)}
# How evaluation scores a role: sacrebleu BLEU (zh) and chrF of greedy outputs, or the mean loss and
# perplexity of the references.
METRICS = ("translation", "loss")
