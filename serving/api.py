"""An OpenAI-compatible HTTP API over one base model and every ready adapter of it (Starlette).

    GET  /v1/models             the base model and each adapter registered for it
    POST /v1/chat/completions   messages → reply; streaming (SSE) or not
    POST /v1/completions        raw prompt text → continuation; streaming or not

`model` names the base model id or an adapter; each request answers with its own adapter, and
requests in flight are batched together whatever their adapters (`serving.scheduler`). Decoding
starts from the adapter role's preset (greedy for the translator); `temperature` (0: greedy),
`top_p`, `max_tokens`, `stop`, `seed` and (as vLLM) `repetition_penalty` change it per request.
Errors have OpenAI's shape:
`{"error": {"message", "type", "param", "code"}}`, in English, as the clients that read them expect.
"""

import asyncio
import contextlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass, replace

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from core.errors import UserError
from engine import formats
from engine.generation import ChatEngine
from engine.roles import ASSISTANT, DECODING_LIMITS, Decoding, Role
from registry import adapters as adapter_rows
from registry import connect
from registry.adapters import Adapter
from serving import openapi
from serving.openapi import MAX_STOP_TEXTS, SEEDS
from serving.scheduler import Generation, Scheduler
from studio.roles import get_role


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, kind="invalid_request_error", param=None, code=None):
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = status, message, kind, param, code

    def response(self) -> JSONResponse:
        body = {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}
        return JSONResponse({"error": body}, status_code=self.status)


@dataclass
class Plan:
    """What one request asks the scheduler for."""

    model: str
    prompt: list[int]
    adapter: Adapter | None
    decoding: Decoding
    max_tokens: int
    stop_texts: tuple[str, ...]
    stop_ids: frozenset[int]
    seed: int | None
    stream: bool
    include_usage: bool


class Service:
    """The engine, its scheduler and the registry lookups behind the routes."""

    def __init__(self, engine: ChatEngine, *, api_key: str | None = None, max_batch: int = 16):
        self.engine = engine
        self.api_key = api_key
        self.scheduler = Scheduler(engine, max_batch=max_batch)

    def model_ids(self) -> list[str]:
        db = connect()
        mine = [a for a in adapter_rows.list_all(db) if a.base_model == self.engine.base_model_id]
        return [
            self.engine.base_model_id,
            *sorted(a.name for a in mine if adapter_rows.folder_is_present(a)),
        ]

    def resolve(self, model) -> tuple[dict | None, Role]:
        """The adapter (None: the base model) and role behind a request's `model`."""
        if not isinstance(model, str) or not model:
            raise ApiError(400, "`model` is required: the base model id or an adapter name.", param="model")
        db = connect()
        if model == self.engine.base_model_id:
            return None, ASSISTANT
        adapter = adapter_rows.get(db, model)
        if adapter is None or adapter.base_model != self.engine.base_model_id:
            served = ", ".join(self.model_ids())
            raise ApiError(
                404,
                f"The model `{model}` does not exist here. Models served: {served}.",
                param="model",
                code="model_not_found",
            )
        try:
            self.engine.ensure_adapter(adapter)
        except UserError as error:
            raise ApiError(400, str(error), param="model", code="adapter_unusable") from error
        return adapter, get_role(db, adapter.role)

    def prompt_format(self, adapter: Adapter | None) -> str:
        return (adapter.prompt_format if adapter else None) or self.engine.prompt_format

    def chat_prompt(self, messages, adapter: Adapter | None, role: Role) -> tuple[list[int], Role]:
        role, history, text = _conversation(messages, role)
        text = formats.user_text(role, "", text)
        try:
            return self.engine.prompt_ids(role, text, history, adapter), role
        except UserError as error:
            raise ApiError(400, str(error), param="messages") from error

    def text_prompt(self, prompt) -> list[int]:
        if isinstance(prompt, list) and len(prompt) == 1:
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise ApiError(400, "`prompt` must be a string (one prompt per request).", param="prompt")
        with self.engine.tokenizer_lock:
            ids = self.engine.tokenizer(prompt)["input_ids"]
        if not ids:
            raise ApiError(400, "`prompt` is empty: give the text to continue.", param="prompt")
        return ids


def create_app(engine: ChatEngine, *, api_key: str | None = None, max_batch: int = 16) -> Starlette:
    service = Service(engine, api_key=api_key, max_batch=max_batch)

    async def models(request: Request):
        _authorise(service, request)
        created = int(time.time())
        ids = await run_in_threadpool(service.model_ids)
        data = [{"id": i, "object": "model", "created": created, "owned_by": "translator"} for i in ids]
        return JSONResponse({"object": "list", "data": data})

    async def chat_completions(request: Request):
        _authorise(service, request)
        body = await _json_body(request)
        adapter, role = await run_in_threadpool(service.resolve, body.get("model"))
        prompt, role = await run_in_threadpool(service.chat_prompt, body.get("messages"), adapter, role)
        turn_end = formats.stop_texts(service.prompt_format(adapter), tuned=adapter is not None)
        plan = _plan(service, body, prompt, adapter, role, turn_end)
        return await _answer(service, plan, chat=True)

    async def completions(request: Request):
        _authorise(service, request)
        body = await _json_body(request)
        adapter, role = await run_in_threadpool(service.resolve, body.get("model"))
        prompt = await run_in_threadpool(service.text_prompt, body.get("prompt"))
        plan = _plan(service, body, prompt, adapter, role)
        return await _answer(service, plan, chat=False)

    async def health(request: Request):
        return JSONResponse({"status": "ok", "model": engine.base_model_id})

    async def description(request: Request):
        ids = await run_in_threadpool(service.model_ids)
        return JSONResponse(openapi.document(ids, secured=service.api_key is not None))

    app = Starlette(
        routes=[
            Route("/health", health),
            Route("/openapi.json", description),
            Route("/v1/models", models),
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
        ],
        exception_handlers={
            ApiError: lambda request, error: error.response(),
            HTTPException: _http_error,
            UserError: lambda request, error: ApiError(400, str(error)).response(),
        },
        lifespan=_closing(service),
    )
    app.state.service = service
    return app


def _closing(service: Service):
    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        service.scheduler.close()

    return lifespan


def _http_error(request: Request, error: HTTPException) -> JSONResponse:
    """Starlette's own 404 and 405, in OpenAI's error shape as every other answer."""
    message = f"{request.method} {request.url.path}: {error.detail}."
    if error.status_code == 405:
        message += f" Allowed: {error.headers.get('Allow', '')}."
    response = ApiError(error.status_code, message).response()
    response.headers.update(error.headers or {})
    return response


def _authorise(service: Service, request: Request) -> None:
    if service.api_key is None:
        return
    given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    if not hmac.compare_digest(given.encode(), service.api_key.encode()):
        raise ApiError(
            401, "Incorrect API key provided.", kind="invalid_request_error", code="invalid_api_key"
        )


async def _json_body(request: Request) -> dict:
    try:
        body = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ApiError(400, f"The body is not valid JSON: {error}.") from error
    if not isinstance(body, dict):
        raise ApiError(400, "The body must be a JSON object.")
    return body


def _conversation(messages, role: Role) -> tuple[Role, list[tuple[str, str]], str]:
    """OpenAI messages as our (role with its system prompt, past turns, last user text)."""
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "`messages` must be a non-empty list.", param="messages")
    turns: list[list[str]] = []  # [user, assistant]
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise ApiError(400, f"messages[{index}] needs a string `content`.", param=f"messages[{index}]")
        speaker, content = message.get("role"), message["content"]
        if speaker in ("system", "developer"):
            role = replace(role, system_prompt=content)
        elif speaker == "user":
            if turns and turns[-1][1] is None:
                turns[-1][0] += "\n" + content
            else:
                turns.append([content, None])
        elif speaker == "assistant":
            if not turns or turns[-1][1] is not None:
                turns.append(["", content])
            else:
                turns[-1][1] = content
        else:
            raise ApiError(
                400, f"messages[{index}] has an unknown role {speaker!r}.", param=f"messages[{index}]"
            )
    if not turns or turns[-1][1] is not None:
        raise ApiError(400, "The last message must come from the user.", param="messages")
    return role, [(q, a) for q, a in turns[:-1]], turns[-1][0]


def _plan(
    service: Service, body: dict, prompt: list[int], adapter: Adapter | None, role: Role, turn_end=()
) -> Plan:
    """What to compute for a request; `turn_end` holds the prompt format's own stop texts (a chat
    request only: a completion's raw prompt has no format)."""
    engine = service.engine
    context = engine.context_length
    if len(prompt) >= context:
        raise ApiError(
            400,
            f"This model's maximum context length is {context} tokens; the prompt has {len(prompt)}.",
            param="messages" if "messages" in body else "prompt",
            code="context_length_exceeded",
        )
    decoding = role.decoding
    # The roles' ranges (engine.roles.DECODING_LIMITS); temperature 0 asks for greedy, as in OpenAI's API.
    temperature = _number(body, "temperature", 0, DECODING_LIMITS["temperature"].high)
    if temperature is not None:
        decoding = decoding.with_changes(do_sample=temperature > 0, temperature=temperature or 1.0)
    top_p_limit = DECODING_LIMITS["top_p"]
    top_p = _number(body, "top_p", top_p_limit.low, top_p_limit.high)
    if top_p is not None:
        if not top_p_limit.allows(top_p):
            raise ApiError(
                400,
                f"`top_p` must be above {top_p_limit.low:g} and at most {top_p_limit.high:g}.",
                param="top_p",
            )
        decoding = decoding.with_changes(top_p=top_p)
    penalty_limit = DECODING_LIMITS["repetition_penalty"]  # vLLM's extension, which we share
    penalty = _number(body, "repetition_penalty", penalty_limit.low, penalty_limit.high)
    if penalty is not None:
        decoding = decoding.with_changes(repetition_penalty=penalty)
    n = body.get("n")
    if n is not None and (type(n) is not int or n != 1):
        raise ApiError(400, "Only n = 1 is supported.", param="n")
    limits = {name: body.get(name) for name in ("max_completion_tokens", "max_tokens")}
    for name, value in limits.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise ApiError(400, f"`{name}` must be a positive integer, not {value!r}.", param=name)
    name = "max_completion_tokens" if limits["max_completion_tokens"] is not None else "max_tokens"
    limit = limits[name]
    room = context - len(prompt)
    if limit is None:
        limit = min(decoding.max_new_tokens, room)
    elif limit > room:
        raise ApiError(
            400,
            f"This model's maximum context length is {context} tokens; the prompt has {len(prompt)} and "
            f"{name} asks for {limit}. Ask for at most {room}.",
            param=name,
            code="context_length_exceeded",
        )
    stop = body.get("stop")
    stop = [] if stop is None else [stop] if isinstance(stop, str) else stop
    if (
        not isinstance(stop, list)
        or len(stop) > MAX_STOP_TEXTS
        or not all(isinstance(s, str) and s for s in stop)
    ):
        raise ApiError(400, "`stop` must be a string or a list of up to 4 non-empty strings.", param="stop")
    seed = body.get("seed")
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, int) or not SEEDS[0] <= seed <= SEEDS[1]
    ):
        raise ApiError(400, f"`seed` must be an integer from {SEEDS[0]} to {SEEDS[1]} (int64).", param="seed")
    stream = body.get("stream")
    stream = False if stream is None else stream
    if not isinstance(stream, bool):
        raise ApiError(400, "`stream` must be true or false.", param="stream")
    options = body.get("stream_options")
    options = {} if options is None else options
    include_usage = options.get("include_usage") if isinstance(options, dict) else None
    if not isinstance(options, dict) or not isinstance(include_usage, bool | None):
        raise ApiError(
            400, '`stream_options` must be an object such as {"include_usage": true}.', param="stream_options"
        )
    stop_ids = formats.stop_token_ids(engine.tokenizer, service.prompt_format(adapter), engine.model)
    return Plan(
        model=body["model"],
        prompt=prompt,
        adapter=adapter,
        decoding=decoding.with_changes(max_new_tokens=limit),
        max_tokens=limit,
        stop_texts=(*stop, *(end for end in turn_end if end not in stop)),
        stop_ids=frozenset(stop_ids),
        seed=seed,
        stream=stream,
        include_usage=bool(include_usage),
    )


def _number(body: dict, name: str, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ApiError(400, f"`{name}` must be a number from {low} to {high}, not {value!r}.", param=name)
    return float(value)


async def _answer(service: Service, plan: Plan, *, chat: bool):
    """Submit the plan and answer as one JSON body, or as server-sent events while it grows."""
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()

    def put(kind, *values):
        loop.call_soon_threadsafe(events.put_nowait, (kind, *values))

    generation = Generation(
        prompt=plan.prompt,
        adapter=plan.adapter,
        decoding=plan.decoding,
        max_tokens=plan.max_tokens,
        stop_ids=plan.stop_ids,
        stop_texts=plan.stop_texts,
        seed=plan.seed,
        on_text=lambda piece: put("text", piece),
        on_end=lambda reason, tokens: put("end", reason, tokens),
        on_error=lambda message: put("error", message),
    )
    service.scheduler.submit(generation)
    reply_id = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
    created = int(time.time())
    if not plan.stream:
        try:
            pieces = []
            while True:
                kind, *values = await events.get()
                if kind == "text":
                    pieces.append(values[0])
                elif kind == "error":
                    raise ApiError(500, f"Generation failed: {values[0]}", kind="server_error")
                else:
                    reason, tokens = values
                    break
        finally:
            generation.cancelled.set()  # a client gone mid-reply frees its row at the next step
        usage = _usage(plan, tokens)
        text = "".join(pieces)
        if chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": reason}
            body = {"object": "chat.completion", "choices": [choice]}
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": reason}
            body = {"object": "text_completion", "choices": [choice]}
        return JSONResponse({"id": reply_id, "created": created, "model": plan.model, **body, "usage": usage})

    def chunk(delta_or_text, reason=None, usage=None, choices=True):
        body = {
            "id": reply_id,
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": created,
            "model": plan.model,
        }
        if choices:
            if chat:
                body["choices"] = [{"index": 0, "delta": delta_or_text, "finish_reason": reason}]
            else:
                body["choices"] = [
                    {"index": 0, "text": delta_or_text, "logprobs": None, "finish_reason": reason}
                ]
        else:
            body["choices"] = []
        if usage is not None:
            body["usage"] = usage
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    async def sse():
        try:
            if chat:
                yield chunk({"role": "assistant", "content": ""})
            while True:
                kind, *values = await events.get()
                if kind == "text":
                    yield chunk({"content": values[0]} if chat else values[0])
                elif kind == "error":
                    error = {"message": f"Generation failed: {values[0]}", "type": "server_error"}
                    yield f"data: {json.dumps({'error': error})}\n\n"
                    break
                else:
                    reason, tokens = values
                    yield chunk({} if chat else "", reason)
                    if plan.include_usage:
                        yield chunk(None, usage=_usage(plan, tokens), choices=False)
                    break
            yield "data: [DONE]\n\n"
        finally:
            generation.cancelled.set()

    return StreamingResponse(sse(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def _usage(plan: Plan, tokens: int) -> dict:
    return {
        "prompt_tokens": len(plan.prompt),
        "completion_tokens": tokens,
        "total_tokens": len(plan.prompt) + tokens,
    }
