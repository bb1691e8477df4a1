"""Read what a GGUF file says about itself — header, metadata, tensor table — never its weights.

Discovery reads every .gguf it finds, so this must be cheap: the file is memory-mapped and
only the pages holding metadata are touched (tensor data, usually > 99% of the file, is not).
Pure Python on purpose: the `gguf` package pulls in numpy, which costs more to import than
reading a dozen headers. Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
(versions 2 and 3; they differ only in v3 allowing big-endian files).
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from typing import Any

from app.kernel.errors import BadRequestError

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
_MAX_KEY_BYTES = 65535  # the spec's limit on key length
_MAX_KEPT_STRING = 4096  # longer strings (chat templates, licences) are skipped, not decoded
_MAX_ARRAY_DEPTH = 4  # arrays may nest; real files nest at most once
_MAX_DIMS = 8  # GGML_MAX_DIMS is 4; a bigger number means a corrupt table
_GUESSED_FTYPE_FLAG = 1024  # llama.cpp ORs this into file_type when it guessed it

# gguf_metadata_value_type → struct code of the fixed-size scalars
_SCALAR_CODES = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9

# general.file_type (llama_ftype) → the quantisation name users see in file names
QUANTIZATION_NAMES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S",
    29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4_MOE",
}  # fmt: skip


# ggml_type → (elements per block, bytes per block): lets the reader check that the file is
# long enough to hold every tensor, which catches interrupted downloads and copies.
GGML_BLOCK_SIZES: dict[int, tuple[int, int]] = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 9: (32, 40),
    10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292),
    16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18), 21: (256, 110),
    22: (256, 82), 23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8),
    29: (256, 56), 30: (1, 2), 34: (256, 54), 35: (256, 66), 39: (32, 17),
}  # fmt: skip


class GGUFError(BadRequestError):
    """A file that is not a readable GGUF model; `reason` is the short why, for notes."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True, slots=True)
class GGUFHeader:
    path: str
    file_size: int
    version: int
    big_endian: bool
    tensor_count: int
    metadata: dict[str, Any]  # scalars and short strings; arrays and long strings are skipped
    keys: tuple[str, ...]  # every metadata key, in file order, skipped ones included
    parameter_count: int  # elements over all tensors in this file (one shard's share if split)
    tensor_data_offset: int  # where the weights start; everything before it is what we read
    has_chat_template: bool = False

    def get(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(key, default)

    @property
    def architecture(self) -> str | None:
        return _str_or_none(self.metadata.get("general.architecture"))

    @property
    def name(self) -> str | None:
        return _str_or_none(self.metadata.get("general.name")) or _str_or_none(
            self.metadata.get("general.basename")
        )

    @property
    def kind(self) -> str:
        """general.type: "model", "adapter" (LoRA), "mmproj", "imatrix"… — "model" when absent."""
        return _str_or_none(self.metadata.get("general.type")) or "model"

    @property
    def size_label(self) -> str | None:
        return _str_or_none(self.metadata.get("general.size_label"))

    def arch_value(self, suffix: str) -> Any:
        """`<architecture>.<suffix>`, e.g. arch_value("context_length")."""
        arch = self.architecture
        return self.metadata.get(f"{arch}.{suffix}") if arch else None

    @property
    def context_length(self) -> int | None:
        return _int_or_none(self.arch_value("context_length"))

    @property
    def block_count(self) -> int | None:
        return _int_or_none(self.arch_value("block_count"))

    @property
    def embedding_length(self) -> int | None:
        return _int_or_none(self.arch_value("embedding_length"))

    @property
    def head_count(self) -> int | None:
        return _int_or_none(self.arch_value("attention.head_count"))

    @property
    def head_count_kv(self) -> int | None:
        return _int_or_none(self.arch_value("attention.head_count_kv"))

    @property
    def file_type(self) -> int | None:
        ftype = _int_or_none(self.metadata.get("general.file_type"))
        return None if ftype is None else ftype & ~_GUESSED_FTYPE_FLAG

    @property
    def quantization(self) -> str | None:
        """ "Q4_K_M", "F16"… from general.file_type; None when absent or unknown to us."""
        ftype = self.file_type
        return None if ftype is None else QUANTIZATION_NAMES.get(ftype)

    @property
    def split_count(self) -> int | None:
        """Number of shards when the model is split over several files (gguf-split)."""
        return _int_or_none(self.metadata.get("split.count"))


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int_or_none(value: Any) -> int | None:
    # bool is an int in Python; a boolean "context_length" is corrupt, not 1
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class _Truncated(Exception):
    """Internal: the file ended where the format promised more bytes."""


class _Cursor:
    """Sequential reads over the mapped file, every one bounds-checked."""

    __slots__ = ("buf", "order", "pos", "size")

    def __init__(self, buf: mmap.mmap, size: int, order: str) -> None:
        self.buf, self.size, self.order, self.pos = buf, size, order, 0

    def scalar(self, code: str) -> Any:
        fmt = self.order + code
        try:
            (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        except struct.error:
            raise _Truncated from None
        self.pos += struct.calcsize(fmt)
        return value

    def skip(self, n: int) -> None:
        if n < 0 or self.pos + n > self.size:
            raise _Truncated
        self.pos += n

    def take(self, n: int) -> bytes:
        if self.pos + n > self.size:
            raise _Truncated
        data = self.buf[self.pos : self.pos + n]
        self.pos += n
        return data

    def string(self, limit: int) -> str | None:
        """The next GGUF string, or None (skipped, not decoded) when longer than `limit` bytes."""
        n = self.scalar("Q")
        if n > limit:
            self.skip(n)
            return None
        return self.take(n).decode("utf-8", "replace")

    def skip_string_array(self, count: int) -> None:
        # The hot loop: vocabularies hold 100k-300k strings. Binding names locally and
        # avoiding per-item method calls keeps this at ~0.1 µs an item.
        unpack_from, fmt, buf, pos, size = struct.unpack_from, self.order + "Q", self.buf, self.pos, self.size
        try:
            for _ in range(count):
                pos += 8 + unpack_from(fmt, buf, pos)[0]
        except (struct.error, OverflowError):  # Overflow: a corrupt length sent pos past 2**63
            raise _Truncated from None
        if pos > size:
            raise _Truncated
        self.pos = pos


def read_gguf_header(path: str | os.PathLike[str]) -> GGUFHeader:
    """Parse a GGUF file's header, metadata and tensor table; GGUFError if it is not one."""
    spath = os.fspath(path)
    try:
        with open(spath, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            head = fh.read(4)
            if size == 0:
                raise GGUFError(spath, "empty file")
            if head != GGUF_MAGIC[: len(head)] or (size >= 4 and head != GGUF_MAGIC):
                raise GGUFError(spath, "not a GGUF file")
            if size < 24:  # magic + version + two counts
                raise _Truncated
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return _parse(spath, buf, size)
    except GGUFError:
        raise
    except _Truncated:
        raise GGUFError(spath, "truncated GGUF file (incomplete download?)") from None
    except IsADirectoryError:
        raise GGUFError(spath, "is a directory") from None
    except FileNotFoundError:
        raise GGUFError(spath, "no such file") from None
    except PermissionError:
        raise GGUFError(spath, "permission denied") from None
    except (OSError, ValueError) as e:  # ValueError: mmap refusing an odd file
        raise GGUFError(spath, f"cannot read: {e}") from None


def _parse(path: str, buf: mmap.mmap, size: int) -> GGUFHeader:
    (version,) = struct.unpack_from("<I", buf, 4)
    order = "<"
    if version & 0xFFFF == 0:  # written for the other byte order (as gguf-py detects it)
        order, version = ">", struct.unpack_from(">I", buf, 4)[0]
    if version not in SUPPORTED_VERSIONS:
        raise GGUFError(path, f"unsupported GGUF version {version} (supported: 2, 3)")
    cur = _Cursor(buf, size, order)
    cur.pos = 8
    tensor_count, kv_count = cur.scalar("Q"), cur.scalar("Q")
    # Each key/value takes at least 13 bytes and each tensor entry 24: bigger counts are lies
    # that would otherwise make us loop for a very long time.
    if kv_count * 13 > size or tensor_count * 24 > size:
        raise GGUFError(path, "corrupt GGUF header (impossible counts)")

    metadata: dict[str, Any] = {}
    keys: list[str] = []
    has_template = False
    for _ in range(kv_count):
        key = cur.string(_MAX_KEY_BYTES)
        if key is None:
            raise GGUFError(path, "corrupt GGUF metadata (key too long)")
        keys.append(key)
        value_type = cur.scalar("I")
        if value_type == _ARRAY:
            value = _skip_array(path, cur, 0)
        else:
            value = _read_value(path, cur, value_type)
            if value is not _SKIPPED:
                metadata[key] = value
        # tokenizer.chat_template, .chat_template.<name>, .chat_templates (a list of names)
        if key.startswith("tokenizer.chat_template") and value not in ("", 0):
            has_template = True

    alignment = _int_or_none(metadata.get("general.alignment")) or DEFAULT_ALIGNMENT
    if alignment & (alignment - 1):
        raise GGUFError(path, f"corrupt GGUF metadata (alignment {alignment} is not a power of two)")

    parameters, data_needed = 0, 0
    for _ in range(tensor_count):
        cur.skip(cur.scalar("Q"))  # tensor name
        n_dims = cur.scalar("I")
        if n_dims > _MAX_DIMS:
            raise GGUFError(path, "corrupt GGUF tensor table")
        elements = 1
        for _ in range(n_dims):
            elements *= cur.scalar("Q")
        ggml_type, offset = cur.scalar("I"), cur.scalar("Q")
        parameters += elements
        if elements:
            # a type newer than this table: at least its first byte must be there
            block, block_bytes = GGML_BLOCK_SIZES.get(ggml_type, (elements, 1))
            data_needed = max(data_needed, offset + -(-elements // block) * block_bytes)
    data_offset = -(-cur.pos // alignment) * alignment
    if data_needed and data_offset + data_needed > size:  # the download or copy stopped part-way
        raise _Truncated

    return GGUFHeader(
        path=path,
        file_size=size,
        version=version,
        big_endian=order == ">",
        tensor_count=tensor_count,
        metadata=metadata,
        keys=tuple(keys),
        parameter_count=parameters,
        tensor_data_offset=data_offset,
        has_chat_template=has_template,
    )


_SKIPPED = object()


def _read_value(path: str, cur: _Cursor, value_type: int) -> Any:
    if value_type == _STRING:
        text = cur.string(_MAX_KEPT_STRING)
        return _SKIPPED if text is None else text
    code = _SCALAR_CODES.get(value_type)
    if code is None:
        raise GGUFError(path, f"corrupt GGUF metadata (unknown value type {value_type})")
    return cur.scalar(code)


def _skip_array(path: str, cur: _Cursor, depth: int) -> int:
    """Step over an array without decoding it; returns its length."""
    if depth >= _MAX_ARRAY_DEPTH:
        raise GGUFError(path, "corrupt GGUF metadata (arrays nested too deep)")
    item_type, count = cur.scalar("I"), cur.scalar("Q")
    if item_type == _STRING:
        if count * 8 > cur.size - cur.pos:  # each string has an 8-byte length at least
            raise _Truncated
        cur.skip_string_array(count)
    elif item_type == _ARRAY:
        if count * 12 > cur.size - cur.pos:
            raise _Truncated
        for _ in range(count):
            _skip_array(path, cur, depth + 1)
    elif item_type in _SCALAR_CODES:
        cur.skip(count * struct.calcsize(_SCALAR_CODES[item_type]))
    else:
        raise GGUFError(path, f"corrupt GGUF metadata (unknown array type {item_type})")
    return count
