"""The OpenAI Responses API over the canonical request: translation, the response store, the stream.

`request.translate` turns a Responses body (and the stored history of its chain) into the
canonical chat body; `output.from_chat` and `stream.ResponseStream` turn the answer back into a
response object or its typed events; `store.ResponseStore` keeps responses per app for
`previous_response_id`, GET, DELETE and `input_items`. The routes are in
`app.kernel.gateway.responses_routes`; this package knows nothing of HTTP.
"""

from app.kernel.responses.errors import InvalidFieldError, ResponseNotFoundError
from app.kernel.responses.output import from_chat, new_response_id, shell
from app.kernel.responses.request import Turn, head, translate
from app.kernel.responses.store import Page, ResponseStore
from app.kernel.responses.stream import ResponseStream

__all__ = [
    "InvalidFieldError",
    "Page",
    "ResponseNotFoundError",
    "ResponseStore",
    "ResponseStream",
    "Turn",
    "from_chat",
    "head",
    "new_response_id",
    "shell",
    "translate",
]
