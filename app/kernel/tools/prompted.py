"""Tool calls for models that have none of their own: the tools go into the prompt, the calls
come back as text, and a forgiving parser turns that text into canonical `tool_calls`.

A model is asked this way when its spec says so (`Capabilities.prompted_tools`: an Ollama
model whose template has no tools, a GGUF whose chat format cannot choose a tool, or a
provider configured with `tool_calls = "prompted"`; see docs/dev/tool-calls.md).

`to_prompted(request)` rewrites a request with `tools` into one without: the schemas and a
strict answer format go into the system message, and the history's tool turns (assistant
calls, tool results) become plain text in that same format, so any chat template can render
them. `from_prompted(response, tools)` reads the answer back. The format is

    <tool_calls>
    [{"name": "tool_name", "arguments": {...}}, ...]
    </tool_calls>

and the parser also takes what small models write instead: the JSON in a code fence, or bare
in the text; Hermes/Qwen `<tool_call>` tags; `parameters`/`args`/`input` for the arguments,
or arguments as a JSON string; OpenAI's `{"function": {...}}` shape; several calls as a list,
as several objects or several blocks; and broken JSON (trailing commas, single quotes,
unquoted keys, a truncated end), repaired by `json-repair`. Outside the tags, JSON is taken for
a call only when it names one of the offered tools, so an answer that is JSON is left alone.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable
from typing import Any

from app.kernel.canonical import ChatMessage, ChatRequest, ChatResponse, Choice, FunctionCall, ToolCall

OPEN, CLOSE = "<tool_calls>", "</tool_calls>"
# Our tags first, then the Hermes/Qwen ones (<tool_call>…</tool_call>, one call each); a
# missing closing tag (the answer was cut off) runs to the end of the text.
_BLOCK = re.compile(r"<tool_calls?>(.*?)(?:</tool_calls?>|\Z)", re.DOTALL | re.IGNORECASE)
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_-]*)[ \t]*\n?(.*?)(?:```|\Z)", re.DOTALL)
_NAME_KEYS = ("name", "tool", "tool_name", "function_name", "function")
_ARGS_KEYS = ("arguments", "parameters", "args", "input", "params", "kwargs")
MAX_CALLS = 32  # more in one answer is a model looping, not a plan


def instructions(tools: list[dict[str, Any]], tool_choice: str | dict[str, Any] | None = None) -> str:
    """The system-prompt section that offers `tools` (OpenAI `tools` entries)."""
    lines = ["# Tools", "", "You can call these tools. Each is given as its name, what it does, and the JSON "
             "schema of its arguments:", ""]
    for tool in tools:
        fn = tool.get("function") or {}
        lines.append(f"- {fn.get('name')}: {fn.get('description') or ''}".rstrip())
        lines.append(f"  arguments schema: {json.dumps(fn.get('parameters') or {'type': 'object'}, separators=(',', ':'))}")
    lines += ["", "To call tools, answer with exactly this and nothing else:", "", OPEN,
              '[{"name": "<tool name>", "arguments": {<arguments as JSON>}}]', CLOSE, "",
              "Put every call you need now in that one list; they run together and you get each "
              "result back. Use double-quoted JSON. When you need no tool, answer the user in plain "
              f"text without {OPEN}."]
    if tool_choice == "required":
        lines.append("You must call at least one tool in this answer.")
    elif isinstance(tool_choice, dict) and (name := (tool_choice.get("function") or {}).get("name")):
        lines.append(f"You must call the tool {name} in this answer.")
    return "\n".join(lines)


def to_prompted(request: ChatRequest) -> ChatRequest:
    """`request` without `tools`: the tools in the system message, tool turns as text."""
    if not request.tools:
        return request
    offered = request.tool_choice != "none"
    names: dict[str, str] = {}  # tool_call_id → name, for the results that answer them
    messages: list[ChatMessage] = []
    for m in request.messages:
        if m.role == "assistant" and m.tool_calls:
            for call in m.tool_calls:
                names[call.id or ""] = call.function.name or ""
            messages.append(ChatMessage(role="assistant", content=_join(m.text(), render_calls(m.tool_calls))))
        elif m.role in ("tool", "function"):
            name = m.name or names.get(m.tool_call_id or "", "")
            result = f'<tool_result name="{name}">\n{m.text()}\n</tool_result>'
            if messages and messages[-1].role == "user" and str(messages[-1].content).startswith("<tool_result"):
                # one answer's results together, as one user turn (templates want turns to alternate)
                messages[-1] = ChatMessage(role="user", content=f"{messages[-1].content}\n{result}")
            else:
                messages.append(ChatMessage(role="user", content=result))
        else:
            messages.append(m)
    if offered:
        section = instructions(request.tools, request.tool_choice)
        if messages and messages[0].role in ("system", "developer"):
            messages[0] = ChatMessage(role=messages[0].role, content=_join(messages[0].text(), section))
        else:
            messages.insert(0, ChatMessage(role="system", content=section))
    out = request.model_copy(update={"messages": messages, "tools": None, "tool_choice": None})
    if out.model_extra is not None:
        out.model_extra.pop("parallel_tool_calls", None)
    return out


def render_calls(calls: Iterable[ToolCall]) -> str:
    """Calls in the answer format (how the model's earlier calls appear in its history)."""
    items = []
    for call in calls:
        try:
            arguments: Any = json.loads(call.function.arguments or "{}")
        except ValueError:
            arguments = call.function.arguments
        items.append({"name": call.function.name, "arguments": arguments})
    return f"{OPEN}\n{json.dumps(items, ensure_ascii=False)}\n{CLOSE}"


def from_prompted(response: ChatResponse, tools: list[dict[str, Any]] | None) -> ChatResponse:
    """The answer with the calls its text asks for as `tool_calls` (the text around them, if
    any, stays the content)."""
    known = {str((t.get("function") or {}).get("name")) for t in tools or []}
    choices = []
    for choice in response.choices:
        text, calls = parse(choice.message.text(), known)
        if not calls:
            choices.append(choice)
            continue
        message = choice.message.model_copy(update={"content": text or None, "tool_calls": calls})
        choices.append(Choice(index=choice.index, message=message, finish_reason="tool_calls"))
    return response.model_copy(update={"choices": choices})


def parse(text: str, known: set[str] | frozenset[str] = frozenset()) -> tuple[str, list[ToolCall]]:
    """(the text outside the calls, the calls) of a model's answer; no calls when it asks for none."""
    blocks = list(_BLOCK.finditer(text))
    if blocks:  # tagged: any name is a call (tool_step tells the model when it does not exist)
        calls = [c for b in blocks for c in _calls_in(b.group(1), known=None)]
        if calls:
            return _outside(text, blocks), _numbered(calls)
    fences = [f for f in _FENCE.finditer(text) if f.group(1).lower() in ("", "json", "tool_call", "tool_calls")]
    calls = [c for f in fences for c in _calls_in(f.group(2), known=known)]
    if calls:
        return _outside(text, fences), _numbered(calls)
    start = _first_json(text)
    if start is not None:
        calls = _calls_in(text[start:], known=known)
        if calls:
            return text[:start].strip(), _numbered(calls)
    return text, []


def _calls_in(fragment: str, *, known: set[str] | frozenset[str] | None) -> list[tuple[str, Any]]:
    """(name, arguments) of every call in a fragment of JSON (repaired if it must be)."""
    fragment = fragment.strip()
    if fragment.startswith("```"):  # a fence inside the tags
        fragment = _FENCE.sub(lambda m: m.group(2), fragment)
    out = []
    for item in _items(_loads(fragment)):
        call = _call_of(item)
        if call is not None and (known is None or call[0] in known):
            out.append(call)
    return out[:MAX_CALLS]


def _loads(fragment: str) -> Any:
    """The JSON values in `fragment`, one after another (text between them skipped); from the
    first one that does not parse on, what json-repair makes of the rest."""
    decoder, items, at = json.JSONDecoder(), [], 0
    while (start := _first_json(fragment, at)) is not None:
        try:
            item, at = decoder.raw_decode(fragment, start)
        except ValueError:
            import json_repair  # only for broken answers

            repaired = json_repair.loads(fragment[start:])
            items.extend(repaired if isinstance(repaired, list) else [repaired])
            break
        items.append(item)
    return items


def _items(value: Any) -> list[Any]:
    if isinstance(value, list):
        return [i for v in value for i in _items(v)]
    if isinstance(value, dict):
        for key in ("tool_calls", "calls", "tools"):
            if isinstance(value.get(key), list):
                return _items(value[key])
        return [value]
    return []


def _call_of(item: Any) -> tuple[str, Any] | None:
    """(name, arguments) of one call object, in any of the shapes models write."""
    if not isinstance(item, dict):
        return None
    if isinstance(item.get("function"), dict):  # OpenAI's {"type": "function", "function": {...}}
        item = item["function"]
    name = next((item[k] for k in _NAME_KEYS if isinstance(item.get(k), str) and item[k].strip()), None)
    if name is None:
        return None
    arguments = next((item[k] for k in _ARGS_KEYS if k in item), {})
    if isinstance(arguments, str):  # arguments as a JSON string (OpenAI's own wire shape)
        parsed = _loads(arguments) if arguments.strip() else [{}]
        arguments = parsed[0] if len(parsed) == 1 and isinstance(parsed[0], dict) else arguments
    return name.strip(), arguments


def _numbered(calls: list[tuple[str, Any]]) -> list[ToolCall]:
    return [ToolCall(id=f"call_{uuid.uuid4().hex[:24]}",
                     function=FunctionCall(name=name, arguments=json.dumps(arguments, ensure_ascii=False)))
            for name, arguments in calls]


_JSON_START = re.compile(r"\{|\[\s*\{")


def _first_json(text: str, at: int = 0) -> int | None:
    """Where the first JSON object or list of objects starts in `text` (from `at`)."""
    match = _JSON_START.search(text, at)
    return match.start() if match else None


def _outside(text: str, spans: list[re.Match[str]]) -> str:
    parts, at = [], 0
    for span in spans:
        parts.append(text[at:span.start()])
        at = span.end()
    parts.append(text[at:])
    return "".join(parts).strip()


def _join(*parts: str) -> str:
    return "\n\n".join(p for p in parts if p)
