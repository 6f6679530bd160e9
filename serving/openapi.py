"""The OpenAPI 3.1 description of our OpenAI-compatible server, as served at `/openapi.json`.

It states what the server really enforces (ranges, types, the models served right now), so that a
tool we did not write can generate requests from it and check the answers (tests/test_openapi.py
runs Schemathesis on it). Fields we do not read are allowed, as OpenAI's clients send many.
Two rules no schema can say are in the descriptions: the last message comes from the user, and the
prompt plus `max_tokens` fits in the model's context (both answered with a 400 in OpenAI's shape).
"""

from engine.roles import DECODING_LIMITS

MAX_STOP_TEXTS = 4  # as OpenAI's API
SEEDS = (-(2**63), 2**63 - 1)  # int64, as OpenAI's API documents `seed`
ERRORS = {
    "400": "The request is not one this server can answer; `error.message` says what to change.",
    "401": "The API key is missing or wrong (only when the server was started with a key).",
    "404": "The model named in `model` is not served here; `error.message` lists those that are.",
}


def _nullable(schema: dict) -> dict:
    return {**schema, "type": [schema["type"], "null"]}


def _error() -> dict:
    return {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "type", "param", "code"],
                "properties": {
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                    "param": {"type": ["string", "null"]},
                    "code": {"type": ["string", "null"]},
                },
            }
        },
    }


def _sampling() -> dict:
    """The request fields both completion routes share, with the ranges `serving.api` enforces."""
    temperature, top_p, penalty = (DECODING_LIMITS[k] for k in ("temperature", "top_p", "repetition_penalty"))
    stop_text = {"type": "string", "minLength": 1}
    return {
        "temperature": _nullable(
            {"type": "number", "minimum": 0, "maximum": temperature.high, "description": "0: greedy."}
        ),
        "top_p": _nullable({"type": "number", "exclusiveMinimum": top_p.low, "maximum": top_p.high}),
        "repetition_penalty": _nullable(
            {"type": "number", "minimum": penalty.low, "maximum": penalty.high, "description": "As vLLM's."}
        ),
        "max_tokens": _nullable({"type": "integer", "minimum": 1}),
        "max_completion_tokens": _nullable(
            {"type": "integer", "minimum": 1, "description": "Takes the place of `max_tokens` when given."}
        ),
        "n": _nullable({"type": "integer", "minimum": 1, "maximum": 1}),
        "stop": {
            "anyOf": [
                stop_text,
                {"type": "array", "items": stop_text, "maxItems": MAX_STOP_TEXTS},
                {"type": "null"},
            ]
        },
        "seed": _nullable({"type": "integer", "minimum": SEEDS[0], "maximum": SEEDS[1]}),
        "stream": _nullable({"type": "boolean"}),
        "stream_options": {
            "anyOf": [
                {"type": "object", "properties": {"include_usage": {"type": ["boolean", "null"]}}},
                {"type": "null"},
            ]
        },
    }


def _usage() -> dict:
    count = {"type": "integer", "minimum": 0}
    return {
        "type": "object",
        "required": ["prompt_tokens", "completion_tokens", "total_tokens"],
        "properties": {"prompt_tokens": count, "completion_tokens": count, "total_tokens": count},
    }


def _reply(kind: str, choice: dict) -> dict:
    return {
        "type": "object",
        "required": ["id", "object", "created", "model", "choices", "usage"],
        "properties": {
            "id": {"type": "string"},
            "object": {"const": kind},
            "created": {"type": "integer"},
            "model": {"type": "string"},
            "choices": {"type": "array", "minItems": 1, "maxItems": 1, "items": choice},
            "usage": _usage(),
        },
    }


def _finish_reason() -> dict:
    return {"enum": ["stop", "length"]}


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
    model = {"type": "string", "enum": model_ids, "description": "The base model id or an adapter name."}
    message = {
        "type": "object",
        "required": ["role", "content"],
        "properties": {
            "role": {"enum": ["system", "developer", "user", "assistant"]},
            "content": {"type": "string"},
        },
    }
    chat_request = {
        "type": "object",
        "required": ["model", "messages"],
        "properties": {
            "model": model,
            "messages": {
                "type": "array",
                "minItems": 1,
                "items": message,
                "description": "The last message comes from the user.",
            },
            **_sampling(),
        },
        "description": "The prompt and `max_tokens` together fit in the model's context.",
    }
    completion_request = {
        "type": "object",
        "required": ["model", "prompt"],
        "properties": {
            "model": model,
            "prompt": {
                "anyOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 1},
                ],
                "description": "One prompt per request.",
            },
            **_sampling(),
        },
    }
    chat_choice = {
        "type": "object",
        "required": ["index", "message", "finish_reason"],
        "properties": {
            "index": {"const": 0},
            "message": {
                "type": "object",
                "required": ["role", "content"],
                "properties": {"role": {"const": "assistant"}, "content": {"type": "string"}},
            },
            "finish_reason": _finish_reason(),
        },
    }
    text_choice = {
        "type": "object",
        "required": ["index", "text", "finish_reason"],
        "properties": {"index": {"const": 0}, "text": {"type": "string"}, "finish_reason": _finish_reason()},
    }
    model_list = {
        "type": "object",
        "required": ["object", "data"],
        "properties": {
            "object": {"const": "list"},
            "data": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id", "object", "created", "owned_by"],
                    "properties": {
                        "id": {"type": "string"},
                        "object": {"const": "model"},
                        "created": {"type": "integer"},
                        "owned_by": {"type": "string"},
                    },
                },
            },
        },
    }
    health = {
        "type": "object",
        "required": ["status", "model"],
        "properties": {"status": {"const": "ok"}, "model": {"type": "string"}},
    }
    paths = {
        "/health": {
            "get": _operation(
                "Is the server up, and which base model", None, health, streams=False, secured=False
            )
        },
        "/v1/models": {
            "get": _operation(
                "The base model and its ready adapters", None, model_list, streams=False, secured=secured
            )
        },
        "/v1/chat/completions": {
            "post": _operation(
                "A reply to a conversation",
                chat_request,
                _reply("chat.completion", chat_choice),
                streams=True,
                secured=secured,
            )
        },
        "/v1/completions": {
            "post": _operation(
                "A continuation of a raw prompt",
                completion_request,
                _reply("text_completion", text_choice),
                streams=True,
                secured=secured,
            )
        },
    }
    components = {"schemas": {"Error": _error()}}
    if secured:
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "翻译机器人 OpenAI-compatible API",
            "version": "1",
            "description": "Chat and text completions with the base model or any of its ready LoRA adapters.",
        },
        "paths": paths,
        "components": components,
    }
