"""Words the UI shows for kernel facts: a model named with its provider, an upstream error as the
upstream's own sentence, an outcome code as what happened, an automatic swap's reason."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

from app.kernel.canonical import ModelSpec

# -- models ------------------------------------------------------------------------------------


def model_label(spec: ModelSpec) -> str:
    """"acc-model · fake": two providers may serve models of the same name, so name both."""
    return f"{spec.display_name or spec.name} · {spec.provider}"


def model_label_for(model_id: str | None, models: Iterable[ModelSpec] = ()) -> str:
    """The label of a model id from the registry's specs; an id the registry does not know is
    shown as it is ("provider/name" names the provider too)."""
    if not model_id:
        return ""
    for spec in models:
        if spec.id == model_id:
            return model_label(spec)
    return model_id


def spec_for_name(name: str, models: Iterable[ModelSpec], prefer: str | None = None) -> ModelSpec | None:
    """The spec an answer's `model` field names: an id, or a bare name (the upstream's own)."""
    candidates = [m for m in models if name in (m.id, m.name)]
    for m in candidates:
        if m.id == prefer or m.id == name:
            return m
    return candidates[0] if len(candidates) == 1 else None


# -- errors ------------------------------------------------------------------------------------

_JSON_START = re.compile(r"[\[{]")
_BYTES_LITERAL = re.compile(r"""b(['"])(.*?)\1""", re.DOTALL)


def _message_in(obj: Any) -> str | None:
    """The human sentence inside an upstream's error JSON ({"error": {"message": …}} and kin)."""
    if isinstance(obj, str):
        return obj.strip() or None
    if isinstance(obj, dict):
        for key in ("error", "message", "detail", "error_description", "msg"):
            if key in obj:
                found = _message_in(obj[key])
                if found:
                    return found
    if isinstance(obj, list):
        for item in obj:
            found = _message_in(item)
            if found:
                return found
    return None


def in_words(text: str | None) -> str:
    """An error text with any JSON (or b'…' bytes of JSON) in it replaced by the message inside.

    `upstream error: b'{"error": {"message": "model overloaded"}}' [acc/m]` reads
    `upstream error: model overloaded [acc/m]`."""
    if not text:
        return ""
    text = _BYTES_LITERAL.sub(lambda m: m.group(2).encode().decode("unicode_escape", "replace"), text)
    out: list[str] = []
    i = 0
    decoder = json.JSONDecoder()
    while True:
        m = _JSON_START.search(text, i)
        if m is None:
            out.append(text[i:])
            break
        try:
            obj, end = decoder.raw_decode(text, m.start())
        except ValueError:
            out.append(text[i : m.start() + 1])
            i = m.start() + 1
            continue
        message = _message_in(obj)
        if message is None or not isinstance(obj, (dict, list)):
            out.append(text[i:end])
        else:
            out.append(text[i : m.start()] + message)
        i = end
    words = " ".join("".join(out).split())
    return words.replace(": :", ":").strip()


OUTCOMES = {
    "ok": "answered",
    "cancelled": "stopped before the end (the app closed the connection or the user stopped it)",
    "model_swapped": "cancelled by an immediate swap of the model",
    "upstream_unavailable": "the model's server failed or broke off the answer",
    "upstream_unreachable": "the model's server could not be reached",
    "upstream_timeout": "the model's server took too long to answer",
    "rate_limit_exceeded": "the provider (or this app's limit) refused: too many requests",
    "budget_exceeded": "the app's daily budget is used up",
    "authentication_error": "the provider refused the key",
    "permission_denied": "not allowed",
    "context_length_exceeded": "the conversation is longer than the model's context window",
    "invalid_request_error": "the request was not valid",
    "model_not_found": "no such model",
    "not_found_error": "not found",
    "overloaded": "the model was too busy (its queue was full)",
    "not_supported": "the model cannot do that",
    "empty_answer": "the model answered with nothing",
    "internal_error": "something went wrong inside ByenatOS",
}


def outcome_words(code: str | None) -> str:
    """What an outcome code means, in a sentence."""
    if not code:
        return ""
    return OUTCOMES.get(code, code.replace("_", " "))


# -- automatic swaps ---------------------------------------------------------------------------

TRIGGER_REASONS = {
    "error": "{old} was failing",
    "performance": "{old} was answering too slowly",
    "resource": "free memory ran low",
    "schedule": "a time-of-day rule asked for it",
    "workload": "a request's task kind asked for it",
    # the way back to the user's choice once it is healthy again (the kernel may name it so)
    "recovery": "{new} is healthy again",
    "recovered": "{new} is healthy again",
    "return": "{new} is healthy again",
    "restore": "{new} is healthy again",
}


def swap_reason(trigger: str, old: str, detail: str = "", new: str = "") -> str:
    """Why an automatic swap happened, in words ("acc-model · acc was failing: model overloaded")."""
    base = TRIGGER_REASONS.get(trigger, "of its {trigger} rule").format(
        old=old or "the model", new=new or "the model", trigger=trigger
    )
    detail = re.sub(r"\s*\[[^\]]*\]$", "", in_words(detail))  # the "[provider/model]" tag: named already
    return f"{base}: {detail}" if detail else base


def clock(ts: float | None) -> str:
    """A wall-clock time for a status line: 14:03:12 today, or with the date before."""
    if not ts:
        return ""
    t = time.localtime(ts)
    today = time.localtime()
    if (t.tm_year, t.tm_yday) == (today.tm_year, today.tm_yday):
        return time.strftime("%H:%M:%S", t)
    return time.strftime("%Y-%m-%d %H:%M", t)


def auto_swap_sentence(notice: Any, label: Callable[[str | None], str], *, name_alias: bool = False) -> str:
    """ "Now serving B · acc — swapped automatically from A · acc at 14:03:12 because A · acc was
    failing: model overloaded." for an `app.ui.bridge.AutoSwap`."""
    old = label(notice.from_model) or "the model"
    # The kernel's `detail` is the facts without model ids: worded here with the UI's labels
    # ("name · provider"); its `reason` (ids) only when there is no detail (after a restart).
    detail = getattr(notice, "detail", "")
    because = (swap_reason(notice.trigger, old, detail, label(notice.to_model)) if detail or not notice.reason
               else notice.reason)
    if because.lower().startswith("because "):
        because = because[len("because ") :]
    because = because.rstrip(".")
    where = f" in socket {notice.alias}" if name_alias and notice.alias != "default" else ""
    when = clock(notice.ts)
    return (
        f"Now serving {label(notice.to_model)}{where} — swapped automatically from {old}"
        f"{' at ' + when if when else ''} because {because}."
    )
