"""The OpenAPI 3.1 description of our OpenAI-compatible server, as served at `/openapi.json`.

Generated from the models the server validates and answers with (serving/protocol.py), so it states
what the server really enforces; only the models served right now are added, as `model`'s choices.
A tool we did not write generates requests from it and checks the answers (tests/test_openapi.py runs
Schemathesis on it).
"""

from pydantic import BaseModel

from serving import protocol

ERRORS = {
    "400": "The request is not one this server can answer; `error.message` says what to change.",
    "401": "The API key is missing or wrong (only when the server was started with a key).",
    "404": "What the request names (a model, a file, a job) does not exist here for this key.",
}
REF = "#/components/schemas/{model}"


def schema(model: type[BaseModel], components: dict, *, reply: bool = False) -> dict:
    """The JSON schema of `model`, inline; the models it holds go to `components`."""
    document = model.model_json_schema(ref_template=REF, mode="serialization" if reply else "validation")
    components.update(document.pop("$defs", {}))
    return document


def _operation(
    summary: str,
    request: dict | None,
    reply: dict,
    *,
    streams: bool,
    secured: bool,
    errors: tuple[str, ...] = ("400", "401", "404"),
    parameters: tuple[dict, ...] = (),
    form: bool = False,
    reply_type: str = "application/json",
) -> dict:
    ok = {reply_type: {"schema": reply}}
    if streams:
        # each server-sent event: a JSON chunk as OpenAI's, or the closing `[DONE]`
        event = {"type": "object", "required": ["data"], "properties": {"data": {"type": "string"}}}
        ok["text/event-stream"] = {"schema": event}
    responses = {
        "200": {"description": "The answer, or its server-sent events when `stream` is true.", "content": ok}
    }
    shown = {k: v for k, v in ERRORS.items() if k in errors and (secured or k != "401")}
    if request is None and not parameters:
        shown = {k: v for k, v in shown.items() if k == "401"}
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    responses.update({status: {"description": text, "content": error} for status, text in shown.items()})
    operation = {"summary": summary, "responses": responses}
    if parameters:
        operation["parameters"] = list(parameters)
    if request is not None:
        kind = "multipart/form-data" if form else "application/json"
        operation["requestBody"] = {"required": True, "content": {kind: {"schema": request}}}
    if secured:
        operation["security"] = [{"bearer": []}]
    return operation


def _in_path(name: str, description: str) -> dict:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


PAGING = (
    {"name": "after", "in": "query", "required": False, "description": "the last id of the page before",
     "schema": {"type": "string"}},
    {"name": "limit", "in": "query", "required": False, "description": "how many to list (1 to 100)",
     "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
)  # fmt: skip
UPLOAD = {
    "type": "object",
    "required": ["file", "purpose"],
    "properties": {
        "file": {"type": "string", "format": "binary", "description": "JSONL, JSON or CSV training data"},
        "purpose": {"type": "string", "enum": ["fine-tune"]},
    },
}


def _fine_tuning_paths(components: dict, secured: bool) -> dict:
    """The routes of serving.fine_tuning: files and jobs as OpenAI's."""

    def reply(model):
        return schema(model, components, reply=True)

    def op(summary, answer, *, request=None, parameters=(), errors=("400", "401", "404"), **kw):
        return _operation(
            summary,
            request,
            answer,
            streams=False,
            secured=secured,
            errors=errors,
            parameters=parameters,
            **kw,
        )

    file_id = _in_path("file_id", "a file's id (file-...)")
    job_id = _in_path("job_id", "a fine-tuning job's id (ftjob-...)")
    model = _in_path("model", "the base model's id or an adapter's name")
    job = reply(protocol.FineTuningJob)
    page_of = {name: reply(model) for name, model in [
        ("files", protocol.FileList), ("jobs", protocol.JobList), ("events", protocol.EventList),
        ("checkpoints", protocol.CheckpointList),
    ]}  # fmt: skip
    deleted = reply(protocol.Deleted)
    return {
        "/v1/files": {
            "post": op(
                "Upload training data",
                reply(protocol.FileObject),
                request=UPLOAD,
                form=True,
                errors=("400", "401"),
            ),
            "get": op("The files uploaded", page_of["files"], parameters=PAGING[:1], errors=("400", "401")),
        },
        "/v1/files/{file_id}": {
            "get": op("A file", reply(protocol.FileObject), parameters=(file_id,)),
            "delete": op("Delete a file", deleted, parameters=(file_id,)),
        },
        "/v1/files/{file_id}/content": {
            "get": op(
                "A file's bytes",
                {"type": "string", "format": "binary"},
                parameters=(file_id,),
                reply_type="application/octet-stream",
            ),
        },
        "/v1/fine_tuning/jobs": {
            "post": op(
                "Start a fine-tuning job", job, request=schema(protocol.FineTuningJobRequest, components)
            ),
            "get": op(
                "The fine-tuning jobs, newest first",
                page_of["jobs"],
                parameters=PAGING,
                errors=("400", "401"),
            ),
        },
        "/v1/fine_tuning/jobs/{job_id}": {"get": op("A fine-tuning job", job, parameters=(job_id,))},
        "/v1/fine_tuning/jobs/{job_id}/cancel": {"post": op("Cancel a job", job, parameters=(job_id,))},
        "/v1/fine_tuning/jobs/{job_id}/resume": {
            "post": op(
                "Resume a cancelled or interrupted job from its last checkpoint", job, parameters=(job_id,)
            )
        },
        "/v1/fine_tuning/jobs/{job_id}/events": {
            "get": op("What happened to a job, newest first", page_of["events"], parameters=(job_id, *PAGING))
        },
        "/v1/fine_tuning/jobs/{job_id}/checkpoints": {
            "get": op("A job's scored checkpoints", page_of["checkpoints"], parameters=(job_id, *PAGING))
        },
        "/v1/models/{model}": {
            "get": op("A model served here", reply(protocol.ModelCard), parameters=(model,)),
            "delete": op("Delete an adapter", deleted, parameters=(model,)),
        },
    }


def document(model_ids: list[str], *, secured: bool) -> dict:
    """The description of the server as it is now: `model_ids` are the models it serves."""
    components: dict = {}
    chat_request = schema(protocol.ChatRequest, components)
    completion_request = schema(protocol.CompletionRequest, components)
    for request in (chat_request, completion_request):
        request["properties"]["model"]["enum"] = model_ids
    paths = {
        "/health": {
            "get": _operation(
                "Is the server up, and which base model",
                None,
                schema(protocol.Health, components, reply=True),
                streams=False,
                secured=False,
            )
        },
        "/v1/models": {
            "get": _operation(
                "The base model and its ready adapters",
                None,
                schema(protocol.ModelList, components, reply=True),
                streams=False,
                secured=secured,
            )
        },
        "/v1/chat/completions": {
            "post": _operation(
                "A reply to a conversation",
                chat_request,
                schema(protocol.ChatCompletion, components, reply=True),
                streams=True,
                secured=secured,
            )
        },
        "/v1/completions": {
            "post": _operation(
                "A continuation of a raw prompt",
                completion_request,
                schema(protocol.Completion, components, reply=True),
                streams=True,
                secured=secured,
            )
        },
    }
    paths.update(_fine_tuning_paths(components, secured))
    components["Error"] = schema(protocol.ErrorReply, components, reply=True)
    document = {
        "openapi": "3.1.0",
        "info": {
            "title": "翻译机器人 OpenAI-compatible API",
            "version": "1",
            "description": "Chat and text completions with the base model or any of its ready LoRA adapters.",
        },
        "paths": paths,
        "components": {"schemas": components},
    }
    if secured:
        document["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    return document
