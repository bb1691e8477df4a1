"""A fake cloud for installers/linux/verify.py: OpenAI's and Gemini's chat wire formats on loopback.

Standard library only (verify.py runs from any Python that can read the repository). It answers
just what a chat through the installed app needs: `GET /v1/models` and `POST /v1/chat/completions`
(OpenAI, whole answers and server-sent-event streams) and
`POST /v1beta/models/{model}:generateContent` (Gemini, which the app reaches through LiteLLM),
and it records every path it served so the checks can tell the request really arrived.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

OPENAI_MODEL = "verify-chat"
OPENAI_REPLY = "pong from the fake OpenAI upstream"
GEMINI_MODEL = "gemini-2.5-flash"
GEMINI_KEY = "verify-gemini-key"
GEMINI_REPLY = "pong from the fake Gemini upstream"
AGENT_MODEL = "verify-agent"  # answers an agent: file_list, file_list again, then a final answer
AGENT_REPLY = "verify agent done after 2 tool calls"
MCP_MODEL = "verify-mcp"  # asks the MCP server's get_current_time, then answers with what it said
MCP_TOOL = "mcp__vtime__get_current_time"


class FakeCloud:
    def __init__(self) -> None:
        self.paths: list[str] = []
        # The agent's second model call (after its first tool call) is held until `release` is
        # set: the verifier kills the daemon while it waits, then restarts it.
        self.agent_rounds: list[int] = []  # tool results each agent request carried
        self.holding = threading.Event()
        self.release = threading.Event()
        handler = type("Handler", (_Handler,), {"cloud": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="fake-cloud", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeCloud:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Handler(BaseHTTPRequestHandler):
    cloud: FakeCloud
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: verify prints its own lines
        pass

    def _send_json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def do_GET(self) -> None:
        self.cloud.paths.append(self.path)
        if self.path == "/v1/models":
            self._send_json(200, {"object": "list", "data": [{"id": OPENAI_MODEL, "object": "model"}]})
        else:
            self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

    def do_POST(self) -> None:
        self.cloud.paths.append(self.path)
        body = self._body()
        if self.path == "/v1/chat/completions":
            self._openai_chat(body)
        elif self.path.startswith(f"/v1beta/models/{GEMINI_MODEL}:"):
            self._gemini(stream=":streamGenerateContent" in self.path)
        else:
            self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

    def _gemini(self, *, stream: bool) -> None:
        if self.headers.get("x-goog-api-key") != GEMINI_KEY:
            error = {"code": 400, "message": "API key not valid", "status": "INVALID_ARGUMENT"}
            self._send_json(400, {"error": error})
            return
        part = {"content": {"parts": [{"text": GEMINI_REPLY}], "role": "model"}, "finishReason": "STOP"}
        answer = {
            "candidates": [part],
            "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 6, "totalTokenCount": 9},
            "modelVersion": GEMINI_MODEL,
        }
        if not stream:
            self._send_json(200, answer)
            return
        self.send_response(200)  # Gemini streams whole GenerateContentResponse objects as SSE
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(f"data: {json.dumps(answer)}\r\n\r\n".encode())
        self.close_connection = True

    def _agent_message(self, body: dict[str, Any]) -> dict[str, Any]:
        done = sum(1 for m in body.get("messages", ()) if m.get("role") == "tool")
        self.cloud.agent_rounds.append(done)
        if done == 1 and not self.cloud.holding.is_set():
            self.cloud.holding.set()
            self.cloud.release.wait(120)
        if done < 2:
            call = {"id": f"call_{done}", "type": "function", "function": {"name": "file_list", "arguments": "{}"}}
            return {"role": "assistant", "content": None, "tool_calls": [call]}
        return {"role": "assistant", "content": AGENT_REPLY}

    def _mcp_message(self, body: dict[str, Any]) -> dict[str, Any]:
        results = [m for m in body.get("messages", ()) if m.get("role") == "tool"]
        if not results:
            arguments = json.dumps({"timezone": "UTC"})
            call = {"id": "call_t", "type": "function", "function": {"name": MCP_TOOL, "arguments": arguments}}
            return {"role": "assistant", "content": None, "tool_calls": [call]}
        return {"role": "assistant", "content": f"The MCP server said: {results[-1].get('content')}"}

    def _openai_chat(self, body: dict[str, Any]) -> None:
        usage = {"prompt_tokens": 3, "completion_tokens": 6, "total_tokens": 9}
        base = {"id": "chatcmpl-verify", "created": 0, "model": body.get("model", OPENAI_MODEL)}
        if body.get("model") in (AGENT_MODEL, MCP_MODEL) and not body.get("stream"):
            message = self._agent_message(body) if body["model"] == AGENT_MODEL else self._mcp_message(body)
            reason = "tool_calls" if message.get("tool_calls") else "stop"
            choice = {"index": 0, "message": message, "finish_reason": reason}
            try:
                self._send_json(200, {**base, "object": "chat.completion", "choices": [choice], "usage": usage})
            except OSError:
                pass  # the daemon was killed while this answer was held
            return
        if not body.get("stream"):
            message = {"role": "assistant", "content": OPENAI_REPLY}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            self._send_json(200, {**base, "object": "chat.completion", "choices": [choice], "usage": usage})
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        chunk = {**base, "object": "chat.completion.chunk"}
        events = [
            {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": OPENAI_REPLY}}]},
            {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": usage},
        ]
        for event in events:
            self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")
        self.close_connection = True
