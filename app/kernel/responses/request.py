"""A Responses API request as the canonical (Chat Completions) request.

`translate(body, history)` checks a `POST /v1/responses` body and returns the `Turn`: the
chat body to route (instructions, then the stored history of the chain, then this input), the
input items as `input_items` lists them (normalised, each with an id), and the canonical
messages this input adds (stored with the response, so a later `previous_response_id`
continues from them). Every refusal names its field (`input[2].call_id`, `tools[0].type`…).

What maps where: `instructions` → a system message (this turn only: OpenAI does not carry it
along a chain); `input_text` → text parts, `input_image` → `image_url` parts; a run of
`function_call` items → one assistant message with its tool calls; `function_call_output` →
a tool message; `developer` → `system` (local servers' chat templates know only system);
function tools and `tool_choice` → their chat shapes; `text.format` → `response_format`;
`max_output_tokens` → `max_tokens`. Reasoning items are accepted and dropped: no backend
behind the socket can read another model's reasoning.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from app.kernel.responses.errors import InvalidFieldError

_ROLES = ("user", "assistant", "system", "developer")
_TOOL_CHOICES = ("auto", "none", "required")
_METADATA_KEYS, _METADATA_KEY_LEN, _METADATA_VALUE_LEN = 16, 64, 512


def new_item_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


@dataclass(slots=True)
class Turn:
    chat: dict[str, Any]  # the canonical chat body (without `stream`)
    items: list[dict[str, Any]]  # this request's input items, normalised, with ids
    messages: list[dict[str, Any]]  # canonical messages this input adds to the chain
    echo: dict[str, Any] = field(default_factory=dict)  # request fields the response object repeats


def head(body: dict[str, Any]) -> tuple[str | None, bool, bool]:
    """(previous_response_id, store, stream): what the gateway needs before translating."""
    previous = body.get("previous_response_id")
    if previous is not None and (not isinstance(previous, str) or not previous):
        raise InvalidFieldError("previous_response_id must be a response id (a string)", param="previous_response_id")
    store = body.get("store", True)
    if not isinstance(store, bool):
        raise InvalidFieldError("store must be true or false", param="store")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidFieldError("stream must be true or false", param="stream")
    if body.get("background"):
        raise InvalidFieldError("background responses are not supported by ByenatOS", param="background")
    if body.get("conversation") is not None:
        raise InvalidFieldError(
            "conversation objects are not supported by ByenatOS; chain responses with previous_response_id",
            param="conversation")
    return previous, store, stream


def translate(body: dict[str, Any], history: list[dict[str, Any]]) -> Turn:
    """The Turn for a Responses request body continuing `history` (canonical messages)."""
    model = body.get("model", "default")
    if not isinstance(model, str) or not model:
        raise InvalidFieldError("model must be a model id or a socket alias such as 'default'", param="model")
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise InvalidFieldError("instructions must be a string", param="instructions")
    items, messages = _input(body.get("input"), history)
    if not messages and not history:
        raise InvalidFieldError("input is empty: send a string or a list of input items", param="input")
    chat: dict[str, Any] = {"model": model, "messages": []}
    if instructions:
        chat["messages"].append({"role": "system", "content": instructions})
    # Copies: the PSP is merged into the first system message in place, and the stored ones must not change.
    chat["messages"] += [dict(m) for m in (*history, *messages)]
    echo: dict[str, Any] = {"instructions": instructions}
    tools = _tools(body.get("tools"))
    if tools:
        chat["tools"] = tools
    echo["tools"] = body.get("tools") or []
    choice = body.get("tool_choice")
    if choice is not None:
        chat["tool_choice"] = _tool_choice(choice)
    echo["tool_choice"] = choice if choice is not None else "auto"
    parallel = body.get("parallel_tool_calls")
    if parallel is not None:
        if not isinstance(parallel, bool):
            raise InvalidFieldError("parallel_tool_calls must be true or false", param="parallel_tool_calls")
        if tools:
            chat["parallel_tool_calls"] = parallel
    echo["parallel_tool_calls"] = True if parallel is None else parallel
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidFieldError(f"{name} must be a number", param=name)
            chat[name] = value
        echo[name] = value
    limit = body.get("max_output_tokens")
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidFieldError("max_output_tokens must be a positive integer", param="max_output_tokens")
        chat["max_tokens"] = limit
    echo["max_output_tokens"] = limit
    text = body.get("text")
    fmt = _text_format(text)
    if fmt is not None:
        chat["response_format"] = fmt
    echo["text"] = text if isinstance(text, dict) and text.get("format") else {"format": {"type": "text"}}
    user = body.get("user") or body.get("safety_identifier")
    if isinstance(user, str) and user:
        chat["user"] = user
    echo["user"] = body.get("user")
    echo["metadata"] = _metadata(body.get("metadata"))
    truncation = body.get("truncation", "disabled")
    if truncation not in ("auto", "disabled"):
        raise InvalidFieldError("truncation must be 'auto' or 'disabled'", param="truncation")
    echo["truncation"] = truncation
    return Turn(chat=chat, items=items, messages=messages, echo=echo)


# -- input --------------------------------------------------------------------------------------
def _input(raw: Any, history: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    if raw is None:
        return [], []
    if isinstance(raw, str):
        item = {"id": new_item_id("msg"), "type": "message", "role": "user", "status": "completed",
                "content": [{"type": "input_text", "text": raw}]}
        return [item], [{"role": "user", "content": raw}]
    if not isinstance(raw, list):
        raise InvalidFieldError("input must be a string or a list of input items", param="input")
    calls = {c.get("id") for m in history if m.get("role") == "assistant" for c in m.get("tool_calls") or ()}
    items: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    for i, item in enumerate(raw):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise InvalidFieldError(f"{where} must be an object (an input item)", param=where)
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            stored, message = _message(item, where)
            items.append(stored)
            messages.append(message)
        elif kind == "function_call":
            stored, call = _function_call(item, where)
            items.append(stored)
            calls.add(call["id"])
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                # An assistant's text and its calls, or parallel calls: one assistant message.
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            call_id = item.get("call_id")
            if not isinstance(call_id, str) or not call_id:
                raise InvalidFieldError(f"{where}.call_id: a function call output needs the call_id of its call",
                                        param=f"{where}.call_id")
            if call_id not in calls:
                raise InvalidFieldError(
                    f"{where}.call_id: no function call {call_id!r} precedes this output "
                    "(in this input or the previous response's chain)", param=f"{where}.call_id")
            output = _output_text(item.get("output"), f"{where}.output")
            items.append({"id": item.get("id") or new_item_id("fco"), "type": "function_call_output",
                          "call_id": call_id, "output": item.get("output"), "status": "completed"})
            messages.append({"role": "tool", "tool_call_id": call_id, "content": output})
        elif kind == "reasoning":
            continue  # another model's reasoning: nothing a backend behind the socket can use
        elif kind == "item_reference":
            raise InvalidFieldError(f"{where}.type: item references are not supported by ByenatOS; "
                                    "send the item itself or use previous_response_id", param=f"{where}.type")
        else:
            raise InvalidFieldError(
                f"{where}.type: unknown input item type {kind!r}; ByenatOS takes 'message', "
                "'function_call', 'function_call_output' and 'reasoning'", param=f"{where}.type")
    return items, messages


def _message(item: dict[str, Any], where: str) -> tuple[dict[str, Any], dict[str, Any]]:
    role = item.get("role")
    if role not in _ROLES:
        raise InvalidFieldError(f"{where}.role must be one of 'user', 'assistant', 'system', 'developer'",
                                param=f"{where}.role")
    content = item.get("content")
    text_kind = "output_text" if role == "assistant" else "input_text"
    if isinstance(content, str):
        parts = [{"type": text_kind, "text": content}]
    elif isinstance(content, list):
        parts = content
    else:
        raise InvalidFieldError(f"{where}.content must be a string or a list of content parts",
                                param=f"{where}.content")
    chat_parts: list[dict[str, Any]] = []
    for j, part in enumerate(parts):
        at = f"{where}.content[{j}]"
        if not isinstance(part, dict):
            raise InvalidFieldError(f"{at} must be an object (a content part)", param=at)
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text"):
            text = part.get("text")
            if not isinstance(text, str):
                raise InvalidFieldError(f"{at}.text must be a string", param=f"{at}.text")
            chat_parts.append({"type": "text", "text": text})
        elif kind == "refusal":
            chat_parts.append({"type": "text", "text": str(part.get("refusal") or "")})
        elif kind == "input_image":
            if role == "assistant":
                raise InvalidFieldError(f"{at}: an assistant message cannot hold an image", param=f"{at}.type")
            url = part.get("image_url")
            if not isinstance(url, str) or not url:
                param = f"{at}.file_id" if part.get("file_id") else f"{at}.image_url"
                raise InvalidFieldError(f"{param}: images are taken as an image_url (an http(s) or data: URL); "
                                        "ByenatOS has no file store", param=param)
            image: dict[str, Any] = {"url": url}
            if part.get("detail") in ("low", "high", "auto"):
                image["detail"] = part["detail"]
            chat_parts.append({"type": "image_url", "image_url": image})
        else:
            raise InvalidFieldError(f"{at}.type: unknown content part type {kind!r}; ByenatOS takes "
                                    "'input_text', 'input_image' and (for assistant messages) 'output_text'",
                                    param=f"{at}.type")
    stored = {"id": item.get("id") or new_item_id("msg"), "type": "message", "role": role,
              "status": item.get("status") or "completed", "content": parts}
    chat_role = "system" if role == "developer" else role
    if chat_role != "user" or all(p["type"] == "text" for p in chat_parts):
        # Text only (and always for system and assistant turns): a string, which every backend takes.
        content_out: Any = "".join(p["text"] for p in chat_parts if p["type"] == "text")
    else:
        content_out = chat_parts
    return stored, {"role": chat_role, "content": content_out}


def _function_call(item: dict[str, Any], where: str) -> tuple[dict[str, Any], dict[str, Any]]:
    call_id, name, arguments = item.get("call_id"), item.get("name"), item.get("arguments", "")
    if not isinstance(call_id, str) or not call_id:
        raise InvalidFieldError(f"{where}.call_id: a function call needs its call_id", param=f"{where}.call_id")
    if not isinstance(name, str) or not name:
        raise InvalidFieldError(f"{where}.name: a function call needs the function's name", param=f"{where}.name")
    if not isinstance(arguments, str):
        raise InvalidFieldError(f"{where}.arguments must be a string (JSON text)", param=f"{where}.arguments")
    stored = {"id": item.get("id") or new_item_id("fc"), "type": "function_call", "call_id": call_id,
              "name": name, "arguments": arguments, "status": item.get("status") or "completed"}
    return stored, {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _output_text(output: Any, where: str) -> str:
    """A function call's output as the tool message's text (a string, or a list of text parts)."""
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        texts = []
        for j, part in enumerate(output):
            if not isinstance(part, dict) or part.get("type") not in ("input_text", "output_text", "text"):
                raise InvalidFieldError(f"{where}[{j}]: a function call output takes text parts only",
                                        param=f"{where}[{j}]")
            texts.append(str(part.get("text") or ""))
        return "".join(texts)
    raise InvalidFieldError(f"{where} must be a string", param=where)


# -- tools and formats --------------------------------------------------------------------------
def _tools(raw: Any) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InvalidFieldError("tools must be a list", param="tools")
    out = []
    for i, tool in enumerate(raw):
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise InvalidFieldError(f"{where} must be an object", param=where)
        if tool.get("type") != "function":
            raise InvalidFieldError(
                f"{where}.type: {tool.get('type')!r} tools are not supported by ByenatOS; only function tools "
                "(the model behind the socket calls them, your code runs them)", param=f"{where}.type")
        spec = tool.get("function") if isinstance(tool.get("function"), dict) else tool  # chat-shaped, leniently
        name = spec.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidFieldError(f"{where}.name: a function tool needs a name", param=f"{where}.name")
        function: dict[str, Any] = {"name": name,
                                    "parameters": spec.get("parameters") or {"type": "object", "properties": {}}}
        if spec.get("description"):
            function["description"] = spec["description"]
        if spec.get("strict") is not None:
            function["strict"] = bool(spec["strict"])
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, str):
        if choice not in _TOOL_CHOICES:
            raise InvalidFieldError("tool_choice must be 'auto', 'none', 'required' or a function",
                                    param="tool_choice")
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = choice.get("name") or (choice.get("function") or {}).get("name")
        if not isinstance(name, str) or not name:
            raise InvalidFieldError("tool_choice.name: name the function to call", param="tool_choice.name")
        return {"type": "function", "function": {"name": name}}
    raise InvalidFieldError("tool_choice must be 'auto', 'none', 'required' or {'type': 'function', 'name': …}",
                            param="tool_choice")


def _text_format(text: Any) -> dict[str, Any] | None:
    if text is None:
        return None
    if not isinstance(text, dict):
        raise InvalidFieldError("text must be an object", param="text")
    fmt = text.get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict):
        raise InvalidFieldError("text.format must be an object", param="text.format")
    kind = fmt.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        name, schema = fmt.get("name"), fmt.get("schema")
        if not isinstance(name, str) or not name:
            raise InvalidFieldError("text.format.name: a JSON schema format needs a name", param="text.format.name")
        if not isinstance(schema, dict):
            raise InvalidFieldError("text.format.schema must be a JSON schema (an object)",
                                    param="text.format.schema")
        spec: dict[str, Any] = {"name": name, "schema": schema}
        if fmt.get("strict") is not None:
            spec["strict"] = bool(fmt["strict"])
        if fmt.get("description"):
            spec["description"] = fmt["description"]
        return {"type": "json_schema", "json_schema": spec}
    raise InvalidFieldError("text.format.type must be 'text', 'json_object' or 'json_schema'",
                            param="text.format.type")


def _metadata(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or len(raw) > _METADATA_KEYS:
        raise InvalidFieldError(f"metadata must be an object of at most {_METADATA_KEYS} string pairs",
                                param="metadata")
    for key, value in raw.items():
        if len(key) > _METADATA_KEY_LEN or not isinstance(value, str) or len(value) > _METADATA_VALUE_LEN:
            raise InvalidFieldError(
                f"metadata.{key}: keys are at most {_METADATA_KEY_LEN} characters and values strings of at "
                f"most {_METADATA_VALUE_LEN}", param=f"metadata.{key}")
    return dict(raw)
