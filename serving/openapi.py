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
    "404": "The model named in `model` is not served here; `error.message` lists those that are.",
}
REF = "#/components/schemas/{model}"


def schema(model: type[BaseModel], components: dict, *, reply: bool = False) -> dict:
    """The JSON schema of `model`, inline; the models it holds go to `components`."""
    document = model.model_json_schema(ref_template=REF, mode="serialization" if reply else "validation")
    components.update(document.pop("$defs", {}))
    return document


def _operation(summary: str, request: dict | None, reply: dict, *, streams: bool, secured: bool) -> dict:
    ok = {"application/json": {"schema": reply}}
    if streams:
        # each server-sent event: a JSON chunk as OpenAI's, or the closing `[DONE]`
        event = {"type": "object", "required": ["data"], "properties": {"data": {"type": "string"}}}
        ok["text/event-stream"] = {"schema": event}
    responses = {
        "200": {"description": "The answer, or its server-sent events when `stream` is true.", "content": ok}
    }
    errors = {**ERRORS} if secured else {k: v for k, v in ERRORS.items() if k != "401"}
    if request is None:
        errors.pop("404")
        errors.pop("400")
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    responses.update({status: {"description": text, "content": error} for status, text in errors.items()})
    operation = {"summary": summary, "responses": responses}
    if request is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": request}}}
    if secured:
        operation["security"] = [{"bearer": []}]
    return operation


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
