"""HiNATA records: the schema apps submit, validated with one message per bad field.

A record says what the user cared about: `highlight` (the passage), `note` (the user's own
words), `address` (where: URL, file path…), `tag`s, and `access` (who else may see it).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from app.kernel.errors import BadRequestError

MAX_BATCH = 100
MAX_HIGHLIGHT = 10_000
MAX_NOTE = 50_000
MAX_ADDRESS = 2_048
MAX_TAGS = 32
MAX_TAG = 64
MAX_JSON_BYTES = 64 * 1024  # raw_data / metadata: context, not a file store
ACCESS = ("private", "shared", "public")
Access = Literal["private", "shared", "public"]
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/#+-]{0,199}$")


class HinataValidationError(BadRequestError):
    """Bad records: `problems` lists each one as {index, field, message}."""

    code = "invalid_hinata"

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        self.problems = problems
        lines = [
            f"record {p['index']}: {p['field']}: {p['message']}"
            if p.get("index") is not None
            else f"{p['field']}: {p['message']}"
            for p in problems[:10]
        ]
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        super().__init__("; ".join(lines) + more)


class HinataIn(BaseModel):
    """A record as submitted. `source` is filled in by the kernel from the calling app."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id: str | None = Field(
        None, description="stable id chosen by the app; resubmitting it updates, never duplicates"
    )
    timestamp: datetime | None = None
    source: str | None = Field(None, max_length=128)
    highlight: str = Field("", max_length=MAX_HIGHLIGHT)
    note: str = Field("", max_length=MAX_NOTE)
    address: str = Field("", max_length=MAX_ADDRESS)
    tag: list[str] = Field(default_factory=list, max_length=MAX_TAGS)
    access: Access = "private"
    raw_data: Any = None
    metadata: dict[str, Any] | None = None
    # True when the kernel filled `timestamp` in: then the time is not part of the record's
    # identity, and resubmitting the same record without one is "unchanged", not an update.
    _auto_timestamp: bool = PrivateAttr(False)

    @field_validator("id")
    @classmethod
    def _id(cls, v: str | None) -> str | None:
        if v is not None and not _ID_RE.match(v):
            raise ValueError(
                "must be 1-200 characters: letters, digits and . _ : @ / # + - (not starting with a symbol)"
            )
        return v

    @field_validator("timestamp")
    @classmethod
    def _tz(cls, v: datetime | None) -> datetime | None:
        if v is None:
            return v
        if v.tzinfo is None:
            v = v.replace(tzinfo=UTC)  # a naive time is taken as UTC, as ISO 8601 allows
        if v.year < 1970 or v.timestamp() > datetime.now(UTC).timestamp() + 86_400:
            raise ValueError("must be an ISO 8601 time between 1970 and tomorrow")
        return v

    @field_validator("tag")
    @classmethod
    def _tags(cls, v: list[str]) -> list[str]:
        out: list[str] = []
        for t in v:
            t = t.strip().lstrip("#")
            if not t or len(t) > MAX_TAG or any(c in t for c in "\n\r\t,"):
                raise ValueError(
                    f"each tag must be 1-{MAX_TAG} characters without commas or line breaks ({t!r})"
                )
            if t.lower() not in (x.lower() for x in out):
                out.append(t)
        return out

    @field_validator("raw_data", "metadata")
    @classmethod
    def _small_json(cls, v: Any) -> Any:
        if v is not None:
            try:
                size = len(orjson.dumps(v))
            except TypeError as e:
                raise ValueError(f"must be JSON: {e}") from None
            if size > MAX_JSON_BYTES:
                raise ValueError(f"is {size} bytes of JSON; the limit is {MAX_JSON_BYTES}")
        return v

    @model_validator(mode="after")
    def _something(self) -> HinataIn:
        if not self.highlight and not self.note:
            raise ValueError("a record needs a highlight or a note")
        return self


class Hinata(BaseModel):
    """A stored record, as the API returns it."""

    id: str
    timestamp: str
    source: str
    highlight: str
    note: str = ""
    address: str = ""
    tag: list[str] = Field(default_factory=list)
    access: Access
    raw_data: Any = None
    metadata: dict[str, Any] | None = None
    enhancement: dict[str, Any] | None = None


def _field_of(err: dict[str, Any]) -> tuple[int | None, str]:
    loc = list(err["loc"])
    index = loc.pop(0) if loc and isinstance(loc[0], int) else None
    return index, ".".join(str(x) for x in loc) or "record"


def validate_batch(payload: Any, *, source: str) -> list[HinataIn]:
    """One record or a list of ≤100, each checked; raises with every problem found at once."""
    items = payload if isinstance(payload, list) else [payload]
    if isinstance(payload, dict) and isinstance(payload.get("records"), list):
        items = payload["records"]
    if not items:
        raise HinataValidationError([{"index": None, "field": "records", "message": "no records given"}])
    if len(items) > MAX_BATCH:
        raise HinataValidationError(
            [
                {
                    "index": None,
                    "field": "records",
                    "message": f"{len(items)} records in one batch; the limit is {MAX_BATCH}",
                }
            ]
        )
    out: list[HinataIn] = []
    problems: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            problems.append({"index": i, "field": "record", "message": "must be a JSON object"})
            continue
        try:
            rec = HinataIn.model_validate(item)
        except ValidationError as e:
            for err in e.errors(include_url=False):
                _, name = _field_of(err)
                msg = err["msg"].removeprefix("Value error, ")
                problems.append({"index": i, "field": name, "message": msg})
            continue
        if rec.source is not None and rec.source != source:
            problems.append(
                {
                    "index": i,
                    "field": "source",
                    "message": f"is {rec.source!r} but the calling app is {source!r}",
                }
            )
            continue
        out.append(rec)
    ids = [r.id for r in out if r.id]
    dup = {x for x in ids if ids.count(x) > 1}
    if dup:
        problems.append(
            {"index": None, "field": "id", "message": f"repeated in one batch: {sorted(dup)[:5]}"}
        )
    if problems:
        raise HinataValidationError(problems)
    for r in out:
        r.source = source
        if r.id is None:
            r.id = f"{source}:{uuid.uuid4().hex[:16]}"
        if r.timestamp is None:
            r.timestamp = datetime.now(UTC)
            r._auto_timestamp = True
    return out


def content_hash(rec: HinataIn) -> str:
    """What makes two submissions of one id "the same": everything but the source."""
    body = orjson.dumps(
        [
            None if rec._auto_timestamp or rec.timestamp is None else rec.timestamp.isoformat(),
            rec.highlight,
            rec.note,
            rec.address,
            rec.tag,
            rec.access,
            rec.raw_data,
            rec.metadata,
        ],
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.blake2b(body, digest_size=16).hexdigest()


def parse_time(value: str | None, field: str) -> float | None:
    """An ISO 8601 time (or a date) from a query string, as epoch seconds."""
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise HinataValidationError(
            [{"index": None, "field": field, "message": f"{value!r} is not an ISO 8601 time"}]
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()
