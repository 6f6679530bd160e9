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


def refusal(model: type[BaseModel], body: dict, problem: dict) -> Refusal:
    """The first problem Pydantic found, said with the field's own description."""
    location = problem["loc"]
    name = location[0] if location else None
    if name is None or name not in model.model_fields:
        return Refusal(f"The request is not one this server reads: {problem['msg']}.", None)
    field = model.model_fields[name]
    if field.is_required() and name not in body:
        return Refusal(f"`{name}` is required: {field.description}.", name)
    item = _item_model(field.annotation)
    if item is not None and len(location) > 1 and isinstance(location[1], int):
        param = f"{name}[{location[1]}]"
        return Refusal(f"{param} must be {item.__doc__.strip()}.", param)
    value = body.get(name)
    given = "" if isinstance(value, dict | list) else f", not {_short(value)}"
    return Refusal(f"`{name}` must be {field.description}{given}.", name)


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
