"""The prompt-based fallback for models without tool calls: the request it writes, and the parser
that reads calls back out of an answer, broken JSON included (property tests with hypothesis)."""

from __future__ import annotations

import json
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from app.kernel.canonical import ChatMessage, ChatRequest, ChatResponse, Choice
from app.kernel.tools.prompted import CLOSE, OPEN, from_prompted, parse, to_prompted

TOOLS = [
    {"type": "function", "function": {"name": "search", "description": "Search the notes.",
                                      "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}},
    {"type": "function", "function": {"name": "read_file", "description": "Read a file.",
                                      "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}},
]
KNOWN = {"search", "read_file", "list_dir", "notify"}
relaxed = settings(deadline=None)  # the machine may be busy: time is not the property here

# Strings without quotes or backslashes, so the damage below (quotes swapped, keys unquoted)
# stays the kind of damage a model does rather than changing what the text says.
words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz ABCXYZ0123456789_-.", min_size=1, max_size=12)
keys = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
scalars = st.one_of(words, st.integers(-10_000, 10_000), st.booleans(), st.none())
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(keys, inner, max_size=3)), max_leaves=6)
arguments = st.dictionaries(keys, values, max_size=4)
calls = st.lists(st.tuples(st.sampled_from(sorted(KNOWN)), arguments), min_size=1, max_size=4)


def parsed(text: str) -> list[tuple[str, dict]]:
    return [(c.function.name, json.loads(c.function.arguments)) for c in parse(text, KNOWN)[1]]


def as_json(plan: list[tuple[str, dict]]) -> str:
    return json.dumps([{"name": n, "arguments": a} for n, a in plan])


def trailing_commas(text: str) -> str:
    return re.sub(r"(?<=[^\[{\s,])(\s*)(?=[}\]])", r",\1", text)


def single_quotes(text: str) -> str:
    return text.replace('"', "'")


def unquoted_keys(text: str) -> str:
    return re.sub(r'"([a-z][a-z0-9_]*)":', r"\1:", text)


def fenced(text: str) -> str:
    return f"```json\n{text}\n```"


def tagged(text: str) -> str:
    return f"{OPEN}\n{text}\n{CLOSE}"


@relaxed
@given(calls)
def test_the_strict_format_reads_back_exactly(plan):
    assert parsed(tagged(as_json(plan))) == plan


@settings(max_examples=200, deadline=None)
@given(calls, st.lists(st.sampled_from([trailing_commas, single_quotes, unquoted_keys]), unique=True),
       st.sampled_from([tagged, fenced, lambda t: t]), st.booleans())
def test_the_usual_damage_is_repaired(plan, damages, wrap, chatter):
    text = as_json(plan)
    for damage in damages:
        text = damage(text)
    text = wrap(text)
    if chatter:
        text = f"Sure! I will look that up.\n{text}\nLet me know if you need more."
    assert parsed(text) == plan


@relaxed
@given(calls)
def test_a_cut_off_answer_still_gives_its_calls(plan):
    text = tagged(as_json(plan)).removesuffix(f"\n{CLOSE}")[:-2]  # no closing tag, no final "}]"
    assert parsed(text) == plan


@relaxed
@given(calls)
def test_several_calls_as_objects_one_after_another_or_in_several_blocks(plan):
    objects = "\n".join(json.dumps({"name": n, "arguments": a}) for n, a in plan)
    assert parsed(tagged(objects)) == plan
    blocks = "\n".join(f"<tool_call>\n{json.dumps({'name': n, 'arguments': a})}\n</tool_call>" for n, a in plan)
    assert parsed(blocks) == plan  # Hermes/Qwen's own tags


@relaxed
@given(st.sampled_from(sorted(KNOWN)), arguments, st.sampled_from(["parameters", "args", "input"]))
def test_the_shapes_models_write_instead(name, args, key):
    assert parsed(json.dumps({"name": name, key: args})) == [(name, args)]
    assert parsed(json.dumps({"name": name, "arguments": json.dumps(args)})) == [(name, args)]  # a string
    openai = {"type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
    assert parsed(json.dumps([openai])) == [(name, args)]


@relaxed
@given(st.text(max_size=400))
def test_any_text_parses_without_raising_and_only_to_well_formed_calls(text):
    content, found = parse(text, KNOWN)
    assert isinstance(content, str)
    for call in found:
        assert call.function.name and call.id
        json.loads(call.function.arguments)


@relaxed
@given(st.text(alphabet=st.characters(blacklist_characters="{}[]<>`"), max_size=300))
def test_an_answer_without_json_is_left_as_it_is(text):
    assert parse(text, KNOWN) == (text, [])


def test_json_that_names_no_offered_tool_is_an_answer_not_a_call():
    answer = '{"name": "Alice", "age": 41}'
    assert parse(answer, KNOWN) == (answer, [])
    # inside the tags any name is a call: the tool step answers that no such tool exists
    assert [c.function.name for c in parse(tagged('[{"name": "Alice"}]'), KNOWN)[1]] == ["Alice"]


def test_the_text_around_the_calls_stays_the_content():
    content, found = parse(f"Looking it up.\n{tagged(as_json([('search', {'q': 'x'})]))}\nBack soon.", KNOWN)
    assert content == "Looking it up.\n\nBack soon." and len(found) == 1


# -- the request and the response -----------------------------------------------------------------


def conversation() -> ChatRequest:
    return ChatRequest(model="m", tools=TOOLS, tool_choice="auto", parallel_tool_calls=True, messages=[
        ChatMessage(role="system", content="Be brief."),
        ChatMessage(role="user", content="Find Lisbon notes and read a.txt"),
        ChatMessage(role="assistant", content=None, tool_calls=[
            {"id": "c1", "function": {"name": "search", "arguments": '{"q": "Lisbon"}'}},
            {"id": "c2", "function": {"name": "read_file", "arguments": '{"path": "a.txt"}'}}]),
        ChatMessage(role="tool", tool_call_id="c1", content="3 notes"),
        ChatMessage(role="tool", tool_call_id="c2", content="hello"),
    ])


def test_the_prompted_request_has_no_tools_and_its_history_is_plain_text():
    out = to_prompted(conversation())
    wire = out.wire_dict()
    assert "tools" not in wire and "tool_choice" not in wire and "parallel_tool_calls" not in wire
    roles = [m.role for m in out.messages]
    assert roles == ["system", "user", "assistant", "user"]  # the two results: one user turn
    system = out.messages[0].text()
    assert system.startswith("Be brief.") and "- search: Search the notes." in system and OPEN in system
    assert '"properties":{"path":{"type":"string"}}' in system
    assert parsed(out.messages[2].text()) == [("search", {"q": "Lisbon"}), ("read_file", {"path": "a.txt"})]
    results = out.messages[3].text()
    assert '<tool_result name="search">\n3 notes\n</tool_result>' in results
    assert '<tool_result name="read_file">\nhello\n</tool_result>' in results
    assert all(m.tool_calls is None and m.tool_call_id is None for m in out.messages)


def test_tool_choice_is_said_in_words():
    required = to_prompted(conversation().model_copy(update={"tool_choice": "required"}))
    assert "must call at least one tool" in required.messages[0].text()
    named = to_prompted(conversation().model_copy(
        update={"tool_choice": {"type": "function", "function": {"name": "search"}}}))
    assert "must call the tool search" in named.messages[0].text()
    none = to_prompted(conversation().model_copy(update={"tool_choice": "none"}))
    assert OPEN not in none.messages[0].text()  # no tools offered; the history is still text


def test_a_request_without_tools_is_left_alone():
    request = ChatRequest(model="m", messages=[ChatMessage(role="user", content="hi")])
    assert to_prompted(request) is request


def test_the_answer_comes_back_with_tool_calls_and_the_finish_reason_says_so():
    text = 'On it.\n<tool_calls>\n[{"name": "search", "arguments": {"q": "Lisbon"}}, {"name": "read_file", ' \
           '"arguments": {"path": "a.txt",}}]\n</tool_calls>'
    answer = ChatResponse(model="m", choices=[Choice(message=ChatMessage(role="assistant", content=text),
                                                     finish_reason="stop")])
    out = from_prompted(answer, TOOLS)
    assert out.finish_reason == "tool_calls" and out.message.content == "On it."
    assert [(c.function.name, json.loads(c.function.arguments)) for c in out.message.tool_calls] == [
        ("search", {"q": "Lisbon"}), ("read_file", {"path": "a.txt"})]
    assert len({c.id for c in out.message.tool_calls}) == 2
    plain = ChatResponse(model="m", choices=[Choice(message=ChatMessage(role="assistant", content="Lisbon!"),
                                                    finish_reason="stop")])
    assert from_prompted(plain, TOOLS) == plain


# -- an agent on a model without tool calls --------------------------------------------------------


async def test_an_agent_on_a_prompted_model_runs_the_calls_it_wrote_as_text(kernel, agent_upstream):
    from app.kernel.agents.process import ProcessState
    from app.kernel.agents.spec import parse_agent

    await kernel.add_provider("fake", "openai", base_url=agent_upstream.api_base, options={"tool_calls": "prompted"})
    await kernel.refresh_provider("fake")
    await kernel.set_default_model("fake/gpt-fake-mini")

    def script(body):
        assert "tools" not in body  # the model is never sent the API's tools
        if not any("<tool_result" in str(m.get("content")) for m in body["messages"]):
            # what small models write: chatter, a fence instead of the tags, single quotes, a trailing comma
            return ("I'll look in both places.\n```json\n[{'name': 'memory_search', 'arguments': {'query': 'Lisbon'}},"
                    " {'name': 'file_read', 'arguments': {'path': 'notes.txt'},},]\n```")
        return "Done: " + body["messages"][-1]["content"][:40]

    agent_upstream.script = script
    spec = parse_agent('name = "looker"\ninstructions = "Look things up."\ntools = ["memory_search", "file_read"]\n')
    proc = await kernel.agents.spawn(spec, "What do I know about Lisbon?")
    done = await kernel.agents.wait(proc.pid, timeout=30)
    assert done.state is ProcessState.DONE, done.reason
    assert done.usage.tool_calls == 2 and done.result.startswith("Done: <tool_result")
    first, second = agent_upstream.chat_bodies
    assert "# Tools" in first["messages"][0]["content"] and "- memory_search:" in first["messages"][0]["content"]
    turns = second["messages"]
    assert turns[-2]["role"] == "assistant" and turns[-2]["content"].startswith("I'll look in both places.")
    assert OPEN in turns[-2]["content"]  # its calls, written back in the strict format
    assert turns[-1]["role"] == "user"
    assert turns[-1]["content"].count("<tool_result") == 2
    assert '<tool_result name="memory_search">' in turns[-1]["content"]
    assert '<tool_result name="file_read">' in turns[-1]["content"]
