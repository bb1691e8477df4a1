"""schemathesis hooks for fuzzing the gateway (loaded by `st run` through SCHEMATHESIS_HOOKS).

Each one keeps a generated request as valid or invalid as it was and only steers it where a
random value would stop the fuzzer from reaching the code worth testing, or where a valid
request would break the rest of the run. The test sets the values through environment
variables (`st run` is a separate process).
"""

from __future__ import annotations

import os
from typing import Any

import schemathesis
from hypothesis import strategies as st

# Models and aliases the gateway serves: a random model name is valid by the schema but gets a 404
# before the body reaches validation or a backend, so most requests would test nothing else.
MODELS = [m for m in os.environ.get("BYENATOS_FUZZ_MODELS", "").split(",") if m]
# A folder of Markdown notes: with the admin token a generated {"format": "markdown", "path": "/"}
# would read every note on the machine into the test's store.
NOTES = os.environ.get("BYENATOS_FUZZ_NOTES", "")
# Apps the run depends on (the token it fuzzes with): revoking or throttling one of them would turn
# every later request into a 401 or 429. A generated id naming one is pointed at a spare app.
PROTECTED_APPS = {a for a in os.environ.get("BYENATOS_FUZZ_PROTECTED_APPS", "").split(",") if a}
SPARE_APP = os.environ.get("BYENATOS_FUZZ_SPARE_APP", "")
# Agents the test spawned: a random pid names none, so every /api/agents/{pid}… request would be a 404.
# A kill is for good: it names only the agents in KILLABLE, so the others stay to be messaged and resumed.
AGENTS = [int(p) for p in os.environ.get("BYENATOS_FUZZ_AGENTS", "").split(",") if p]
KILLABLE = [int(p) for p in os.environ.get("BYENATOS_FUZZ_KILLABLE", "").split(",") if p]

# A folder the document index may read: a generated {"path": "/root"} would index the machine's files.
DOCS = os.environ.get("BYENATOS_FUZZ_DOCS", "")
MAX_PATH = 4_096  # documents_routes.MAX_PATH: a longer generated path stays as it is (invalid)
# A program that answers as no MCP server does: a generated command would otherwise be run as found
# on PATH (by a later /test or an agent's tool call), and a generated url be connected to.
MCP_COMMAND = os.environ.get("BYENATOS_FUZZ_MCP_COMMAND", "")

_INFERENCE = r"^/v1/(chat/completions|completions|embeddings|messages|messages/count_tokens)$"


@schemathesis.hook.apply_to(path_regex=_INFERENCE)
def flatmap_body(context: Any, body: Any) -> st.SearchStrategy:
    """Often name a served model instead of the generated one (a valid string either way)."""
    if (
        not MODELS
        or not isinstance(body, dict)
        or not isinstance(body.get("model"), str)
        or not body["model"]
    ):
        return st.just(body)
    return st.sampled_from([*({**body, "model": m} for m in MODELS), body])


@schemathesis.hook.apply_to(path="/api/hinata/import")
def map_body(context: Any, body: Any) -> Any:
    if (
        NOTES
        and isinstance(body, dict)
        and body.get("format") == "markdown"
        and isinstance(body.get("path"), str)
    ):
        if body["path"]:
            return {**body, "path": NOTES}
    return body


@schemathesis.hook.apply_to(path="/api/apps/{app_id}")
def map_path_parameters(context: Any, path_parameters: dict[str, Any]) -> dict[str, Any]:
    if SPARE_APP and path_parameters.get("app_id") in PROTECTED_APPS:
        return {**path_parameters, "app_id": SPARE_APP}
    return path_parameters


@schemathesis.hook.apply_to(path_regex=r"^/api/agents/\{pid\}")
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> st.SearchStrategy:
    """Often name one of the test's agents instead of the generated pid (a valid one either way)."""
    pid = path_parameters.get("pid")
    killing = context.operation is not None and context.operation.path.endswith("/kill")
    pids = KILLABLE if killing else AGENTS
    if not pids or not isinstance(pid, int) or isinstance(pid, bool) or pid < 1:
        return st.just(path_parameters)
    return st.sampled_from([*({**path_parameters, "pid": p} for p in pids), path_parameters])


@schemathesis.hook.apply_to(path="/api/documents/folders")
def map_query(context: Any, query: Any) -> Any:
    if DOCS and isinstance(query, dict) and isinstance(query.get("path"), str) and 0 < len(query["path"]) <= MAX_PATH:
        return {**query, "path": DOCS}
    return query


@schemathesis.hook.apply_to(path_regex=r"^/api/(documents/folders|mcp/servers)$")
def map_body(context: Any, body: Any) -> Any:  # noqa: F811 (one hook per path group: schemathesis keys by name)
    return _steer_documents(_steer_mcp(body))


def _steer_documents(body: Any) -> Any:
    if DOCS and isinstance(body, dict) and isinstance(body.get("path"), str) and 0 < len(body["path"]) <= MAX_PATH:
        return {**body, "path": DOCS}
    return body


def _steer_mcp(body: Any) -> Any:
    config = body.get("config") if isinstance(body, dict) else None
    if not MCP_COMMAND or not isinstance(config, dict):
        return body
    config = dict(config)  # only what is valid already is changed, and to something as valid
    if isinstance(config.get("command"), str) and config["command"]:
        config["command"] = MCP_COMMAND  # its args, valid or not, stay (false ignores them)
    if isinstance(config.get("url"), str) and config["url"].startswith(("http://", "https://")):
        config["url"] = "http://127.0.0.1:9/mcp"  # the discard port: nothing listens
    return {**body, "config": config}
