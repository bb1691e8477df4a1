"""Reading request bodies: size and depth limits, JSON, and cheap shape checks.

The OpenAI fast path never builds pydantic models: `check_chat` looks at the fields a
backend would choke on (required ones, and the types of the common ones) and names the
field in its 400, the way pydantic's messages do; unknown fields pass through untouched.
"""

from __future__ import annotations

from typing import Any

import orjson

from app.kernel.gateway import web
from app.kernel.gateway.errors import RequestError

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
_ROLES_TEXT = ", ".join(f"'{r}'" for r in ROLES[:-1]) + f" or '{ROLES[-1]}'"
_NUMBERS = ("temperature", "top_p", "presence_penalty", "frequency_penalty")
_INTEGERS = ("max_tokens", "max_completion_tokens", "n", "seed", "top_logprobs")
_OBJECTS = ("response_format", "stream_options", "logit_bias", "metadata")
MAX_DEPTH_KEY = web.AppKey("max_json_depth", int)
MAX_BODY_KEY = web.AppKey("max_body_bytes", int)


async def read_json(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object, or a RequestError naming what is wrong with it."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        limit = request.app.get(MAX_BODY_KEY, 0)
        raise RequestError(
            f"request body too large (the limit is {limit:,} bytes; gateway.max_body_mb in the settings "
            "raises it)",
            code="body_too_large",
            status=413,
        ) from None
    return parse_json(raw, request.app.get(MAX_DEPTH_KEY, 64))


def parse_json(raw: bytes, limit: int) -> dict[str, Any]:
    """A whole body as a JSON object nested at most `limit` deep, or a RequestError."""
    if not raw:
        raise RequestError("request body is empty; send a JSON object", code="invalid_json")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise RequestError(f"request body is not valid JSON: {e}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise RequestError("request body must be a JSON object", code="invalid_json")
    # Counting brackets is a C-speed scan; only a body with more of them than the limit can
    # be nested that deep, so only such a body is walked.
    if raw.count(b"{") + raw.count(b"[") > limit and _deeper_than(body, limit):
        raise RequestError(f"request body is nested deeper than {limit} levels", code="json_too_deep")
    return body


def _deeper_than(obj: Any, limit: int) -> bool:
    stack = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def _fail(param: str, message: str) -> RequestError:
    return RequestError(f"{param}: {message}", param=param)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def require_model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if model is None:
        raise _fail("model", "Field required")
    if not isinstance(model, str) or not model:
        raise _fail(
            "model", "Input should be a non-empty string (a model id, a name or an alias like 'default')"
        )
    return model


_MINIMUM = {"max_tokens": 0, "max_completion_tokens": 0, "n": 1}
_KIND = {
    "stream": "bool",
    "stop": "stop",
    "user": "str",
    **dict.fromkeys(_NUMBERS, "number"),
    **dict.fromkeys(_INTEGERS, "int"),
    **dict.fromkeys(_OBJECTS, "object"),
}


def check_common(body: dict[str, Any]) -> None:
    """Types of the sampling options every generation endpoint shares."""
    # Walks the fields the body has (a handful) rather than every field it could have.
    for key, value in body.items():
        kind = _KIND.get(key)
        if kind is None:
            continue
        if kind == "bool":
            if not isinstance(value, bool):
                raise _fail(key, "Input should be a valid boolean")
        elif value is None:
            continue
        elif kind == "int":
            if not _is_int(value):
                raise _fail(key, "Input should be a valid integer")
            if key in _MINIMUM and value < _MINIMUM[key]:
                raise _fail(key, f"Input should be greater than or equal to {_MINIMUM[key]}")
        elif kind == "number":
            if not _is_number(value):
                raise _fail(key, "Input should be a valid number")
        elif kind == "object":
            if not isinstance(value, dict):
                raise _fail(key, "Input should be a valid object")
        elif kind == "stop":
            if not isinstance(value, str) and not (isinstance(value, list) and all(isinstance(s, str) for s in value)):
                raise _fail("stop", "Input should be a string or a list of strings")
        elif not isinstance(value, str):  # "str"
            raise _fail(key, "Input should be a valid string")


def check_chat(body: dict[str, Any]) -> str:
    """Validate an OpenAI chat request in place; return its model."""
    model = require_model(body)
    messages = body.get("messages")
    if messages is None:
        raise _fail("messages", "Field required")
    if not isinstance(messages, list):
        raise _fail("messages", "Input should be a valid list")
    if not messages:
        raise RequestError("messages must contain at least one message", param="messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _fail(f"messages.{i}", "Input should be a valid object")
        if message.get("role") not in ROLES:
            raise _fail(f"messages.{i}.role", f"Input should be {_ROLES_TEXT}")
        content = message.get("content")
        if (
            content is not None
            and not isinstance(content, str)
            and not (
                isinstance(content, list)
                and all(isinstance(p, dict) and isinstance(p.get("type"), str) for p in content)
            )
        ):
            raise _fail(f"messages.{i}.content", "Input should be a string, a list of content parts or null")
        calls = message.get("tool_calls")
        if calls is not None and not (isinstance(calls, list) and all(isinstance(c, dict) for c in calls)):
            raise _fail(f"messages.{i}.tool_calls", "Input should be a list of tool calls")
        name, call_id = message.get("name"), message.get("tool_call_id")
        if name is not None and not isinstance(name, str):
            raise _fail(f"messages.{i}.name", "Input should be a valid string")
        if call_id is not None and not isinstance(call_id, str):
            raise _fail(f"messages.{i}.tool_call_id", "Input should be a valid string")
    check_common(body)
    tools = body.get("tools")
    if tools is not None and not (isinstance(tools, list) and all(isinstance(t, dict) for t in tools)):
        raise _fail("tools", "Input should be a list of tool objects")
    choice = body.get("tool_choice")
    if choice is not None and not isinstance(choice, str | dict):
        raise _fail("tool_choice", "Input should be 'none', 'auto', 'required' or a tool object")
    return model


def check_completion(body: dict[str, Any]) -> str:
    model = require_model(body)
    prompt = body.get("prompt")
    if prompt is None:
        raise _fail("prompt", "Field required")
    if not isinstance(prompt, str) and not (
        isinstance(prompt, list)
        and prompt
        and (
            all(isinstance(p, str) for p in prompt)
            or all(_is_int(p) for p in prompt)
            or all(isinstance(p, list) and all(_is_int(t) for t in p) for p in prompt)
        )
    ):
        raise _fail("prompt", "Input should be a string, a list of strings or token arrays")
    check_common(body)
    return model


def check_embedding(body: dict[str, Any]) -> tuple[str, list[str]]:
    model = require_model(body)
    texts = body.get("input")
    if texts is None:
        raise _fail("input", "Field required")
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        if isinstance(texts, list) and texts and all(_is_int(t) or isinstance(t, list) for t in texts):
            raise _fail("input", "token arrays are not supported; send the text")
        raise _fail("input", "Input should be a non-empty string or list of strings")
    fmt = body.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        raise _fail("encoding_format", "Input should be 'float' or 'base64'")
    if body.get("dimensions") is not None and not (_is_int(body["dimensions"]) and body["dimensions"] > 0):
        raise _fail("dimensions", "Input should be a positive integer")
    return model, texts


def check_anthropic(body: dict[str, Any]) -> None:
    """Types of the optional Anthropic Messages fields the translation would otherwise read loosely
    (`stream: "yes"` as true, a falsy `system: 0` as none, `temperature: "1"` as 1.0); null is
    taken as absent, as the SDKs send it. Required fields are checked by the translation."""
    if body.get("stream") is not None and not isinstance(body["stream"], bool):
        raise _fail("stream", "Input should be a valid boolean")
    for key in ("temperature", "top_p"):
        if body.get(key) is not None and not _is_number(body[key]):
            raise _fail(key, "Input should be a valid number")
    if body.get("top_k") is not None and not _is_int(body["top_k"]):
        raise _fail("top_k", "Input should be a valid integer")
    system = body.get("system")
    if system is not None and not isinstance(system, str) and not _is_list_of(system, dict):
        raise _fail("system", "Input should be a string or a list of text blocks")
    stops = body.get("stop_sequences")
    if stops is not None and not _is_list_of(stops, str):
        raise _fail("stop_sequences", "Input should be a list of strings")
    if body.get("tools") is not None and not _is_list_of(body["tools"], dict):
        raise _fail("tools", "Input should be a list of tool objects")
    for key in ("tool_choice", "metadata"):
        if body.get(key) is not None and not isinstance(body[key], dict):
            raise _fail(key, "Input should be a valid object")


def _is_list_of(value: Any, kind: type) -> bool:
    return isinstance(value, list) and all(isinstance(v, kind) for v in value)
