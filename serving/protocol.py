"""Every request and reply of the API server, as Pydantic models: the one place its rules are written.

The server validates each body with these models (`parse`), answers with them, and `/openapi.json`
is generated from them (serving/openapi.py), so the description cannot drift from what the server
enforces. Each field's description says what it must be; a refusal quotes it: "`seed` must be an
integer from ... (int64), not ...". Fields we do not read are allowed, as OpenAI's clients send many.
Numbers, booleans and strings are strict (JSON's `true` is not 1, `1.0` is not an integer). Two rules
no schema can say stay in serving/api.py: the last message comes from the user, and the prompt plus
`max_tokens` fits in the model's context (both answered with a 400 in OpenAI's shape).
"""

import json
import types
import typing
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.roles import DECODING_LIMITS

MAX_STOP_TEXTS = 4  # as OpenAI's API
SEEDS = (-(2**63), 2**63 - 1)  # int64, as OpenAI's API documents `seed`
_TEMPERATURE, _TOP_P, _PENALTY = (DECODING_LIMITS[k] for k in ("temperature", "top_p", "repetition_penalty"))

StopText = Annotated[str, Field(min_length=1)]


class Request(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class Message(Request):
    """an object with a `role` (system, developer, user or assistant) and a string `content`"""

    role: Literal["system", "developer", "user", "assistant"] = Field(
        description="system, developer, user or assistant"
    )
    content: str = Field(description="a string")


class StreamOptions(Request):
    include_usage: bool | None = Field(None, description="true or false")


class Sampling(Request):
    """The fields both completion routes share, with the ranges engine.roles.DECODING_LIMITS sets."""

    model: str = Field(min_length=1, description="the base model id or an adapter name")
    temperature: float | None = Field(
        None, ge=0, le=_TEMPERATURE.high, description=f"a number from 0 to {_TEMPERATURE.high:g} (0: greedy)"
    )
    top_p: float | None = Field(
        None,
        gt=_TOP_P.low,
        le=_TOP_P.high,
        description=f"a number above {_TOP_P.low:g} and at most {_TOP_P.high:g}",
    )
    repetition_penalty: float | None = Field(
        None,
        ge=_PENALTY.low,
        le=_PENALTY.high,
        description=f"a number from {_PENALTY.low:g} to {_PENALTY.high:g} (as vLLM's)",
    )
    mbr_samples: int | None = Field(
        None,
        ge=2,
        le=32,
        description="null or 2 to 32: minimum-Bayes-risk decoding, that many sampled candidates of "
        "which the one agreeing most with the others under chrF is the reply (our extension; "
        "translator adapters only)",
    )
    max_tokens: int | None = Field(None, ge=1, description="a positive integer")
    max_completion_tokens: int | None = Field(
        None, ge=1, description="a positive integer (it takes the place of `max_tokens` when given)"
    )
    n: int | None = Field(None, ge=1, le=1, description="1 (one choice per request)")
    stop: StopText | Annotated[list[StopText], Field(max_length=MAX_STOP_TEXTS)] | None = Field(
        None, description=f"a string or a list of up to {MAX_STOP_TEXTS} non-empty strings"
    )
    seed: int | None = Field(
        None, ge=SEEDS[0], le=SEEDS[1], description=f"an integer from {SEEDS[0]} to {SEEDS[1]} (int64)"
    )
    stream: bool | None = Field(None, description="true or false")
    stream_options: StreamOptions | None = Field(
        None, description='an object such as {"include_usage": true}'
    )

    @property
    def limit_name(self) -> str:
        """Which field limits the reply's length: `max_completion_tokens` when given."""
        return "max_completion_tokens" if self.max_completion_tokens is not None else "max_tokens"


class ChatRequest(Sampling):
    """The prompt and `max_tokens` together fit in the model's context."""

    messages: list[Message] = Field(
        min_length=1, description="a non-empty list of messages; the last one comes from the user"
    )


class CompletionRequest(Sampling):
    prompt: str | Annotated[list[str], Field(min_length=1, max_length=1)] = Field(
        description="a string (one prompt per request)"
    )

    @property
    def text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


class Reply(BaseModel):
    """What the server answers: every field is in every answer, defaults included."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=True)


class Usage(Reply):
    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(ge=0)
    total_tokens: int = Field(ge=0)


FinishReason = Literal["stop", "length"]


class ReplyMessage(Reply):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(Reply):
    index: Literal[0] = 0
    message: ReplyMessage
    finish_reason: FinishReason


class Answer(Reply):
    """What both completion routes answer besides their choices."""

    id: str
    created: int
    model: str
    usage: Usage


class ChatCompletion(Answer):
    object: Literal["chat.completion"] = "chat.completion"
    choices: list[ChatChoice] = Field(min_length=1, max_length=1)


class TextChoice(Reply):
    index: Literal[0] = 0
    text: str
    logprobs: None = None
    finish_reason: FinishReason


class Completion(Answer):
    object: Literal["text_completion"] = "text_completion"
    choices: list[TextChoice] = Field(min_length=1, max_length=1)


class ModelCard(Reply):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "translator"


class ModelList(Reply):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class Health(Reply):
    status: Literal["ok"] = "ok"
    model: str


class ErrorDetail(Reply):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorReply(Reply):
    error: ErrorDetail


class Refusal(Exception):
    """A request the models refuse: the message and the field it names (OpenAI's `param`)."""

    def __init__(self, message: str, param: str | None):
        super().__init__(message)
        self.message, self.param = message, param


def parse(model: type[Request], body: dict) -> Request:
    """`body` as `model`, or a Refusal naming the first field that breaks its rule."""
    try:
        return model.model_validate(body)
    except ValidationError as error:
        raise refusal(model, body, error.errors()[0]) from None


def refusal(model: type[BaseModel], body: dict, problem: dict, prefix: str = "") -> Refusal:
    """The first problem Pydantic found, said with the field's own description; a field of an
    object inside the body is named by its path (`hyperparameters.n_epochs`)."""
    location = problem["loc"]
    name = location[0] if location else None
    if name is None or name not in model.model_fields:
        return Refusal(f"The request is not one this server reads: {problem['msg']}.", prefix[:-1] or None)
    field = model.model_fields[name]
    param = f"{prefix}{name}"
    if field.is_required() and name not in body:
        return Refusal(f"`{param}` is required: {field.description}.", param)
    value = body.get(name)
    inner = _object_model(field.annotation)
    if (
        inner is not None
        and isinstance(value, dict)
        and len(location) > 1
        and location[1] in inner.model_fields
    ):
        return refusal(inner, value, {**problem, "loc": location[1:]}, f"{param}.")
    item = _item_model(field.annotation)
    if item is not None and len(location) > 1 and isinstance(location[1], int):
        param = f"{param}[{location[1]}]"
        return Refusal(f"{param} must be {item.__doc__.strip()}.", param)
    given = "" if isinstance(value, dict | list) else f", not {_short(value)}"
    return Refusal(f"`{param}` must be {field.description}{given}.", param)


def _object_model(annotation: Any) -> type[BaseModel] | None:
    """M for a field of type M or M | None (M a model), else None."""
    candidates = (
        typing.get_args(annotation)
        if typing.get_origin(annotation) in (typing.Union, types.UnionType)
        else (annotation,)
    )
    models = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
    return models[0] if len(models) == 1 else None


def _item_model(annotation: Any) -> type[BaseModel] | None:
    """M for a field of type list[M] (M a model), else None."""
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation)
        if isinstance(item, type) and issubclass(item, BaseModel):
            return item
    return None


def _short(value: Any) -> str:
    """`value` as JSON writes it (null, true, 1.0), cut to a line's length."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


# --- files and fine-tuning jobs (OpenAI's Files and Fine-tuning APIs) ------------------------------

AUTO = Literal["auto"]
EPOCHS, BATCH, LR_SCALE, BETA = (1, 50), (1, 256), (0.0, 10.0), (0.0, 2.0)


class SupervisedHyperparameters(Request):
    """an object with `n_epochs`, `batch_size` and `learning_rate_multiplier`, each a number or "auto\""""

    n_epochs: AUTO | Annotated[int, Field(ge=EPOCHS[0], le=EPOCHS[1])] | None = Field(
        None, description=f'"auto" or an integer from {EPOCHS[0]} to {EPOCHS[1]}'
    )
    batch_size: AUTO | Annotated[int, Field(ge=BATCH[0], le=BATCH[1])] | None = Field(
        None, description=f'"auto" or an integer from {BATCH[0]} to {BATCH[1]} (examples per step)'
    )
    learning_rate_multiplier: AUTO | Annotated[float, Field(gt=LR_SCALE[0], le=LR_SCALE[1])] | None = Field(
        None,
        description=f'"auto" or a number above {LR_SCALE[0]:g} and at most {LR_SCALE[1]:g} '
        "(it multiplies the learning rate chosen by the model's size)",
    )


class DpoHyperparameters(SupervisedHyperparameters):
    """an object with `beta`, `n_epochs`, `batch_size` and `learning_rate_multiplier`, each a number
    or "auto\""""

    beta: AUTO | Annotated[float, Field(gt=BETA[0], le=BETA[1])] | None = Field(
        None, description=f'"auto" or a number above {BETA[0]:g} and at most {BETA[1]:g}'
    )


class SupervisedMethod(Request):
    hyperparameters: SupervisedHyperparameters | None = Field(
        None, description=SupervisedHyperparameters.__doc__
    )


class DpoMethod(Request):
    hyperparameters: DpoHyperparameters | None = Field(None, description=DpoHyperparameters.__doc__)


class FineTuningMethod(Request):
    """an object such as {"type": "supervised"} or {"type": "dpo", "dpo": {"hyperparameters": {...}}}"""

    type: Literal["supervised", "dpo"] = Field(
        description='"supervised" or "dpo" (reinforcement fine-tuning is not offered here)'
    )
    supervised: SupervisedMethod | None = Field(None, description='an object with "hyperparameters"')
    dpo: DpoMethod | None = Field(None, description='an object with "hyperparameters"')


class FineTuningJobRequest(Request):
    """A job: `model` and `training_file` are needed; the rest has the studio's defaults."""

    model: str = Field(
        min_length=1, description="a base model id the studio knows, or an adapter to continue"
    )
    training_file: str = Field(min_length=1, description="the id of a file uploaded with purpose fine-tune")
    validation_file: str | None = Field(
        None, description="null or the id of a file uploaded with purpose fine-tune"
    )
    suffix: str | None = Field(
        None, min_length=1, max_length=64, description="null or 1 to 64 characters for the model's name"
    )
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="null or an integer from 0 to 4294967295")
    hyperparameters: SupervisedHyperparameters | None = Field(
        None, description=SupervisedHyperparameters.__doc__
    )
    method: FineTuningMethod | None = Field(None, description=FineTuningMethod.__doc__)
    metadata: dict[str, Annotated[str, Field(max_length=512)]] | None = Field(
        None, max_length=16, description="null or up to 16 string values"
    )
    role: str | None = Field(
        None,
        min_length=1,
        description="null or the studio's role for the adapter (translator, persona, assistant or a "
        "custom one); default: the adapter's it continues, else assistant",
    )


class FileObject(Reply):
    id: str
    object: Literal["file"] = "file"
    bytes: int = Field(ge=0)
    created_at: int
    filename: str
    purpose: Literal["fine-tune"] = "fine-tune"
    status: Literal["processed"] = "processed"
    status_details: None = None
    expires_at: None = None


class Page(Reply):
    """A page of a list, newest first; `after` the last id of one page asks for the next."""

    object: Literal["list"] = "list"
    has_more: bool
    first_id: str | None
    last_id: str | None


class FileList(Page):
    data: list[FileObject]


class Deleted(Reply):
    id: str
    object: str
    deleted: bool


class JobError(Reply):
    code: str
    message: str
    param: str | None


class JobHyperparameters(Reply):
    n_epochs: float
    batch_size: int
    learning_rate_multiplier: float
    beta: float | None


class JobMethod(Reply):
    type: Literal["supervised", "dpo", "orpo", "kto"]


class FineTuningJob(Reply):
    id: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    created_at: int
    finished_at: int | None
    model: str
    fine_tuned_model: str | None
    organization_id: str = "translator"
    status: Literal["validating_files", "queued", "running", "succeeded", "failed", "cancelled"]
    error: JobError | None
    hyperparameters: JobHyperparameters
    method: JobMethod
    training_file: str
    validation_file: str | None
    result_files: list[str]
    seed: int
    trained_tokens: int | None
    estimated_finish: int | None
    user_provided_suffix: str | None
    metadata: dict[str, str] | None
    integrations: list[dict] = Field(default_factory=list)


class JobList(Page):
    data: list[FineTuningJob]


class JobEvent(Reply):
    id: str
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    created_at: int
    level: Literal["info", "warn", "error"]
    message: str
    data: dict | None
    type: Literal["message", "metrics"]


class EventList(Page):
    data: list[JobEvent]


class JobCheckpoint(Reply):
    id: str
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    created_at: int
    fine_tuned_model_checkpoint: str
    fine_tuning_job_id: str
    step_number: int
    metrics: dict[str, float]


class CheckpointList(Page):
    data: list[JobCheckpoint]
