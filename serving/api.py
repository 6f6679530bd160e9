"""An OpenAI-compatible HTTP API over one base model and every ready adapter of it (Starlette).

    GET  /v1/models             the base model and each adapter registered for it
    POST /v1/chat/completions   messages → reply; streaming (SSE) or not
    POST /v1/completions        raw prompt text → continuation; streaming or not
    /v1/files, /v1/fine_tuning/jobs, DELETE /v1/models/{name}   OpenAI's Files and Fine-tuning APIs
                                over the studio's own training jobs (serving.fine_tuning)

`model` names the base model id or an adapter; each request answers with its own adapter, and
requests in flight are batched together whatever their adapters (`serving.scheduler`). Decoding
starts from the adapter role's preset (greedy for the translator); `temperature` (0: greedy),
`top_p`, `max_tokens`, `stop`, `seed` and (as vLLM) `repetition_penalty` change it per request.
Every body is read through serving/protocol.py's models, which `/openapi.json` is generated from.
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
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from core.errors import UserError
from engine import formats
from engine.generation import ChatEngine
from engine.roles import ASSISTANT, Decoding, Role
from registry import adapters as adapter_rows
from registry import connect
from registry.adapters import Adapter
from serving import fine_tuning, openapi, protocol
from serving.protocol import ChatRequest, CompletionRequest, Sampling
from serving.scheduler import Generation, Scheduler
from studio import accounts
from studio.accounts import LOCAL, Asker, visible_adapters
from studio.roles import get_role
from training.data.datasets import MAX_UPLOAD_BYTES


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, kind="invalid_request_error", param=None, code=None):
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = status, message, kind, param, code

    def response(self) -> JSONResponse:
        detail = protocol.ErrorDetail(message=self.message, type=self.kind, param=self.param, code=self.code)
        return JSONResponse(protocol.ErrorReply(error=detail).model_dump(), status_code=self.status)


@dataclass
class ScheduledRequest:
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

    def __init__(self, engine: ChatEngine, *, api_key: str | None = None, max_batch: int = 16, team=False):
        self.engine = engine
        self.api_key = api_key
        self.team = team  # each request carries a personal key and sees what its account may see
        self.scheduler = Scheduler(engine, max_batch=max_batch)

    def model_ids(self, asker: Asker = LOCAL) -> list[str]:
        db = connect()
        mine = [a for a in visible_adapters(db, asker) if a.base_model == self.engine.base_model_id]
        return [
            self.engine.base_model_id,
            *sorted(a.name for a in mine if adapter_rows.folder_is_present(a)),
        ]

    def resolve(self, model: str, asker: Asker = LOCAL) -> tuple[dict | None, Role]:
        """The adapter (None: the base model) and role behind a request's `model`; an adapter the
        asker may not use is answered exactly as one that does not exist."""
        db = connect()
        if model == self.engine.base_model_id:
            return None, ASSISTANT
        adapter = adapter_rows.get(db, model)
        if (
            adapter is None
            or adapter.base_model != self.engine.base_model_id
            or not asker.may_see_adapter(adapter)
        ):
            served = ", ".join(self.model_ids(asker))
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

    def chat_prompt(
        self, messages: list[protocol.Message], adapter: Adapter | None, role: Role
    ) -> tuple[list[int], Role]:
        role, history, text = _conversation(messages, role)
        text = formats.user_text(role, "", text)
        try:
            return self.engine.prompt_ids(role, text, history, adapter), role
        except UserError as error:
            raise ApiError(400, str(error), param="messages") from error

    def text_prompt(self, prompt: str) -> list[int]:
        with self.engine.tokenizer_lock:
            ids = self.engine.tokenizer(prompt)["input_ids"]
        if not ids:
            raise ApiError(400, "`prompt` is empty: give the text to continue.", param="prompt")
        return ids


def create_app(
    engine: ChatEngine, *, api_key: str | None = None, max_batch: int = 16, team: bool = False
) -> Starlette:
    service = Service(engine, api_key=api_key, max_batch=max_batch, team=team)

    async def models(request: Request):
        asker = await run_in_threadpool(_authorise, service, request)
        created = int(time.time())
        ids = await run_in_threadpool(service.model_ids, asker)
        listed = protocol.ModelList(data=[protocol.ModelCard(id=i, created=created) for i in ids])
        return JSONResponse(listed.model_dump())

    async def chat_completions(request: Request):
        asker = await run_in_threadpool(_authorise, service, request)
        body = _read(ChatRequest, await _json_body(request))
        adapter, role = await run_in_threadpool(service.resolve, body.model, asker)
        prompt, role = await run_in_threadpool(service.chat_prompt, body.messages, adapter, role)
        turn_end = formats.stop_texts(service.prompt_format(adapter), tuned=adapter is not None)
        plan = _plan(service, body, prompt, adapter, role, turn_end)
        return await _answer(service, plan, chat=True)

    async def completions(request: Request):
        asker = await run_in_threadpool(_authorise, service, request)
        body = _read(CompletionRequest, await _json_body(request))
        adapter, role = await run_in_threadpool(service.resolve, body.model, asker)
        prompt = await run_in_threadpool(service.text_prompt, body.text)
        plan = _plan(service, body, prompt, adapter, role)
        return await _answer(service, plan, chat=False)

    async def health(request: Request):
        return JSONResponse(protocol.Health(model=engine.base_model_id).model_dump())

    async def description(request: Request):
        ids = await run_in_threadpool(service.model_ids)  # in team mode: the shared ones only
        secured = service.api_key is not None or service.team
        return JSONResponse(
            openapi.document(ids if not service.team else [engine.base_model_id], secured=secured)
        )

    app = Starlette(
        routes=[
            Route("/health", health),
            Route("/openapi.json", description),
            Route("/v1/models", models),
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
            *fine_tuning_routes(service),
        ],
        exception_handlers={
            ApiError: lambda request, error: error.response(),
            HTTPException: _http_error,
            UserError: lambda request, error: ApiError(400, _english(error)).response(),
            fine_tuning.NotFound: lambda request, error: ApiError(
                404, error.message, param=error.param, code="not_found"
            ).response(),
            fine_tuning.BadRequest: lambda request, error: ApiError(
                400, error.message, param=error.param, code=error.code
            ).response(),
        },
        lifespan=_closing(service),
    )
    app.state.service = service
    return app


def fine_tuning_routes(service: Service) -> list[Route]:
    """OpenAI's Files and Fine-tuning routes (serving.fine_tuning), each asking who is asking."""

    def asking(work):
        async def route(request: Request):
            asker = await run_in_threadpool(_authorise, service, request)
            return await work(request, asker, **request.path_params)

        return route

    async def upload(request, asker):
        fields = await _form(request)
        given = fields.get("file")
        if given is None or isinstance(given, str):
            raise ApiError(
                400, "`file` is required: the training data, sent as a multipart file.", param="file"
            )
        purpose = fields.get("purpose")
        if not isinstance(purpose, str):
            raise ApiError(400, "`purpose` is required: fine-tune.", param="purpose")
        data = await given.read()
        made = await run_in_threadpool(fine_tuning.upload, given.filename or "", data, purpose, asker)
        return JSONResponse(made.model_dump())

    async def list_files(request, asker):
        purpose = request.query_params.get("purpose")
        page = await run_in_threadpool(
            fine_tuning.list_files, asker, **_paging(request, default=10_000, most=10_000), purpose=purpose
        )
        return JSONResponse(page.model_dump())

    async def file(request, asker, file_id):
        if request.method == "DELETE":
            return JSONResponse(
                (await run_in_threadpool(fine_tuning.delete_file, file_id, asker)).model_dump()
            )
        return JSONResponse((await run_in_threadpool(fine_tuning.get_file, file_id, asker)).model_dump())

    async def file_content(request, asker, file_id):
        data = await run_in_threadpool(fine_tuning.file_content, file_id, asker)
        return Response(data, media_type="application/octet-stream")

    async def jobs(request, asker):
        if request.method == "POST":
            body = _read(protocol.FineTuningJobRequest, await _json_body(request))
            made = await run_in_threadpool(fine_tuning.create_job, body, asker)
            return JSONResponse(made.model_dump())
        page = await run_in_threadpool(fine_tuning.list_jobs, asker, **_paging(request))
        return JSONResponse(page.model_dump())

    async def job(request, asker, job_id):
        return JSONResponse((await run_in_threadpool(fine_tuning.get_job, job_id, asker)).model_dump())

    async def cancel(request, asker, job_id):
        return JSONResponse((await run_in_threadpool(fine_tuning.cancel_job, job_id, asker)).model_dump())

    async def resume(request, asker, job_id):
        return JSONResponse((await run_in_threadpool(fine_tuning.resume_job, job_id, asker)).model_dump())

    async def events(request, asker, job_id):
        page = await run_in_threadpool(fine_tuning.list_events, job_id, asker, **_paging(request))
        return JSONResponse(page.model_dump())

    async def checkpoints(request, asker, job_id):
        page = await run_in_threadpool(
            fine_tuning.list_checkpoints, job_id, asker, **_paging(request, default=10)
        )
        return JSONResponse(page.model_dump())

    async def model(request, asker, model):
        if request.method == "DELETE":
            return JSONResponse(
                (await run_in_threadpool(fine_tuning.delete_model, model, asker)).model_dump()
            )
        served = await run_in_threadpool(service.model_ids, asker)
        return JSONResponse(
            (await run_in_threadpool(fine_tuning.get_model, model, asker, served)).model_dump()
        )

    jobs_path = "/v1/fine_tuning/jobs/{job_id}"
    return [
        Route("/v1/files", asking(upload), methods=["POST"]),
        Route("/v1/files", asking(list_files), methods=["GET"]),
        Route("/v1/files/{file_id}", asking(file), methods=["GET", "DELETE"]),
        Route("/v1/files/{file_id}/content", asking(file_content), methods=["GET"]),
        Route("/v1/fine_tuning/jobs", asking(jobs), methods=["GET", "POST"]),
        Route(jobs_path, asking(job), methods=["GET"]),
        Route(f"{jobs_path}/cancel", asking(cancel), methods=["POST"]),
        Route(f"{jobs_path}/resume", asking(resume), methods=["POST"]),
        Route(f"{jobs_path}/events", asking(events), methods=["GET"]),
        Route(f"{jobs_path}/checkpoints", asking(checkpoints), methods=["GET"]),
        Route("/v1/models/{model:path}", asking(model), methods=["GET", "DELETE"]),
    ]


async def _form(request: Request) -> dict:
    """A multipart body's fields (a file as an UploadFile), refused in OpenAI's shape when it is not one."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise ApiError(400, "Send the file as multipart/form-data with the fields `file` and `purpose`.")
    try:
        form = await request.form(max_files=1, max_fields=8, max_part_size=MAX_UPLOAD_BYTES)
    except Exception as error:  # the multipart parser's own refusals (malformed body, too large)
        raise ApiError(400, f"The multipart body cannot be read: {error}.", param="file") from None
    return dict(form)


def _paging(request: Request, *, default: int = 20, most: int = fine_tuning.MAX_LIMIT) -> dict:
    """`after` and `limit` from the query, as OpenAI's list routes take them."""
    text = request.query_params.get("limit")
    limit = default
    if text is not None:
        if not text.isdigit() or not 1 <= int(text) <= most:
            raise ApiError(400, f"`limit` must be an integer from 1 to {most}, not {text!r}.", param="limit")
        limit = int(text)
    return {"after": request.query_params.get("after") or None, "limit": limit}


def _english(error: UserError) -> str:
    return error.message.render("en") if error.message is not None else str(error)


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


def _authorise(service: Service, request: Request) -> Asker:
    """Who asks: in team mode the account of the request's personal key; otherwise the one person
    of the studio, after the server's own key if it has one."""
    given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    refused = ApiError(
        401, "Incorrect API key provided.", kind="invalid_request_error", code="invalid_api_key"
    )
    if service.team:
        account = accounts.key_account(connect(), given)
        if account is None:
            raise refused
        return Asker(account, address=request.client.host if request.client else "")
    if service.api_key is not None and not hmac.compare_digest(given.encode(), service.api_key.encode()):
        raise refused
    return LOCAL


async def _json_body(request: Request) -> dict:
    try:
        body = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ApiError(400, f"The body is not valid JSON: {error}.") from error
    if not isinstance(body, dict):
        raise ApiError(400, "The body must be a JSON object.")
    return body


def _read(model: type[Sampling], body: dict) -> Sampling:
    try:
        return protocol.parse(model, body)
    except protocol.Refusal as refusal:
        raise ApiError(400, refusal.message, param=refusal.param) from None


def _conversation(messages: list[protocol.Message], role: Role) -> tuple[Role, list[tuple[str, str]], str]:
    """OpenAI messages as our (role with its system prompt, past turns, last user text)."""
    turns: list[list[str]] = []  # [user, assistant]
    for message in messages:
        speaker, content = message.role, message.content
        if speaker in ("system", "developer"):
            role = replace(role, system_prompt=content)
        elif speaker == "user":
            if turns and turns[-1][1] is None:
                turns[-1][0] += "\n" + content
            else:
                turns.append([content, None])
        elif not turns or turns[-1][1] is not None:  # the assistant
            turns.append(["", content])
        else:
            turns[-1][1] = content
    if not turns or turns[-1][1] is not None:
        raise ApiError(400, "The last message must come from the user.", param="messages")
    return role, [(q, a) for q, a in turns[:-1]], turns[-1][0]


def _plan(
    service: Service, body: Sampling, prompt: list[int], adapter: Adapter | None, role: Role, turn_end=()
) -> ScheduledRequest:
    """What to compute for a request whose fields passed serving.protocol; `turn_end` holds the prompt
    format's own stop texts (a chat request only: a completion's raw prompt has no format)."""
    engine = service.engine
    context = engine.context_length
    prompt_field = "messages" if isinstance(body, ChatRequest) else "prompt"
    if len(prompt) >= context:
        raise ApiError(
            400,
            f"This model's maximum context length is {context} tokens; the prompt has {len(prompt)}.",
            param=prompt_field,
            code="context_length_exceeded",
        )
    decoding = role.decoding
    if body.temperature is not None:  # 0 asks for greedy, as in OpenAI's API
        decoding = decoding.with_changes(do_sample=body.temperature > 0, temperature=body.temperature or 1.0)
        if body.mbr_samples is None:  # a temperature asks for one answer, sampled or greedy
            decoding = decoding.with_changes(mbr_samples=0)
    if body.mbr_samples is not None:
        if role.metric != "translation":
            raise ApiError(
                400,
                f"`mbr_samples` applies to translator adapters (their candidates are compared by chrF); "
                f"`{body.model}` answers as {role.name}.",
                param="mbr_samples",
            )
        if body.temperature == 0:
            raise ApiError(
                400,
                "`mbr_samples` samples its candidates: a `temperature` of 0 would make them all the same.",
                param="mbr_samples",
            )
        decoding = decoding.with_changes(mbr_samples=body.mbr_samples)
    if body.top_p is not None:
        decoding = decoding.with_changes(top_p=body.top_p)
    if body.repetition_penalty is not None:  # vLLM's extension, which we share
        decoding = decoding.with_changes(repetition_penalty=body.repetition_penalty)
    name = body.limit_name
    limit = getattr(body, name)
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
    stop = [] if body.stop is None else [body.stop] if isinstance(body.stop, str) else body.stop
    stop_ids = formats.stop_token_ids(engine.tokenizer, service.prompt_format(adapter), engine.model)
    return ScheduledRequest(
        model=body.model,
        prompt=prompt,
        adapter=adapter,
        decoding=decoding.with_changes(max_new_tokens=limit),
        max_tokens=limit,
        stop_texts=(*stop, *(end for end in turn_end if end not in stop)),
        stop_ids=frozenset(stop_ids),
        seed=body.seed,
        stream=bool(body.stream),
        include_usage=bool(body.stream_options and body.stream_options.include_usage),
    )


async def _answer(service: Service, plan: ScheduledRequest, *, chat: bool):
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
        common = {"id": reply_id, "created": created, "model": plan.model, "usage": usage}
        if chat:
            choice = protocol.ChatChoice(message=protocol.ReplyMessage(content=text), finish_reason=reason)
            reply = protocol.ChatCompletion(choices=[choice], **common)
        else:
            choice = protocol.TextChoice(text=text, finish_reason=reason)
            reply = protocol.Completion(choices=[choice], **common)
        return JSONResponse(reply.model_dump())

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
                        yield chunk(None, usage=_usage(plan, tokens).model_dump(), choices=False)
                    break
            yield "data: [DONE]\n\n"
        finally:
            generation.cancelled.set()

    return StreamingResponse(sse(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def _usage(plan: ScheduledRequest, tokens: int) -> protocol.Usage:
    return protocol.Usage(
        prompt_tokens=len(plan.prompt), completion_tokens=tokens, total_tokens=len(plan.prompt) + tokens
    )
