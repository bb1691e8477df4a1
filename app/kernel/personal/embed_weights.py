"""The embedding model's weights: read a BERT safetensors file, write the compact int8 file.

Set-up (`scripts/fetch_embedding_model.py`) converts sentence-transformers' float32
`model.safetensors` (87 MB) once into `model.int8.safetensors` (~23 MB), the file the numpy
encoder (`bert_numpy.py`) and the installers use:

- every big matrix (fused Q/K/V, attention output, both feed-forward matrices) is stored as
  int8 with one float16 scale per output channel and group of 32 inputs (symmetric, max |w| /
  127). The encoder dequantizes them to float32 when it loads, so only the weights are
  rounded, never the activations. Measured against the float model on the parity sentences:
  one scale per whole output channel gave cosine 0.9964 at worst (short texts such as "" or
  "ok": a few feed-forward inputs carry large activations that amplify the rounding); groups
  of 32 give 0.9993 at worst, 0.99987 median, for 0.66 MB of scales;
- the word-embedding table is int8 with one scale per row, and stays int8 in memory (mmap):
  a batch dequantizes only the rows it looks up;
- the small tensors (biases, LayerNorms, position and token-type embeddings) stay float32.

The file is a plain safetensors file (a JSON header, then raw little-endian data), so any
safetensors reader opens it. Its metadata names the format and the source file's SHA-256:
converting again from the same source is a no-op, and the file appears under its final
name only when complete (written to a temporary name, fsynced, renamed).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

WEIGHTS_FILE = "model.int8.safetensors"
FORMAT = "byenatos-bert-int8/2"  # /2: positions stored only up to max_tokens
GROUP = 32  # inputs per scale in the big matrices
_DTYPES = {"F32": "<f4", "F16": "<f2", "I64": "<i8", "I8": "i1"}
_NAMES = {"float32": "F32", "float16": "F16", "int8": "I8"}


class WeightsError(ValueError):
    """The weights file is not one the encoder can run (wrong format, truncated, missing tensors)."""


def read_safetensors(path: Path, *, mmap: bool = False) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The tensors of a .safetensors file as numpy arrays, and its metadata.

    Arrays are read-only views: of the mapped file with `mmap` (pages load when touched),
    else of the file's bytes read whole."""
    import numpy as np

    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise WeightsError(f"{path} is not a safetensors file (too short)")
        (header_len,) = struct.unpack("<Q", head)
        if header_len > min(size - 8, 100_000_000):
            raise WeightsError(f"{path} is not a safetensors file (bad header length)")
        try:
            header = json.loads(f.read(header_len))
        except ValueError as e:
            raise WeightsError(f"{path} is not a safetensors file (unreadable header)") from e
    base = 8 + header_len
    data: Any = np.memmap(path, dtype=np.uint8, mode="r") if mmap else path.read_bytes()
    meta: dict[str, str] = header.pop("__metadata__", None) or {}
    out: dict[str, np.ndarray] = {}
    for name, info in header.items():
        try:
            start, end = info["data_offsets"]
            dtype = _DTYPES.get(info["dtype"])
            if dtype is None or not 0 <= start <= end or base + end > size:
                raise WeightsError(f"{path}: tensor {name} is truncated or of an unknown type")
            raw = data[base + start : base + end]
            arr = raw.view(dtype) if mmap else np.frombuffer(raw, dtype=dtype)
            out[name] = arr.reshape(info["shape"])
        except (KeyError, TypeError, ValueError) as e:
            raise WeightsError(f"{path}: tensor {name} is described wrongly ({e})") from e
    return out, meta


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> Path:
    """Write `tensors` (float32 or int8) atomically: a temporary name, fsync, then rename."""
    import numpy as np

    header: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    blobs = []
    for name in sorted(tensors):  # sorted: the same tensors always give the same bytes
        arr = np.ascontiguousarray(tensors[name])
        kind = _NAMES.get(arr.dtype.name)
        if kind is None:
            raise WeightsError(f"{name}: cannot store {arr.dtype} (float32, float16 and int8 only)")
        blob = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": kind, "shape": list(arr.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    head = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    head += b" " * (-len(head) % 8)  # data 8-byte aligned, as the format recommends
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("wb") as f:
            f.write(struct.pack("<Q", len(head)))
            f.write(head)
            for blob in blobs:
                f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def quantize_rows(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per row: `q[i] * scale[i]` ≈ `w[i]` (an all-zero row gets scale 1)."""
    import numpy as np

    peak = np.abs(w).max(axis=1)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale


def quantize_groups(w: np.ndarray, group: int = GROUP) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per row and run of `group` columns: `q[i, j] * scale[i, j // group]` ≈ `w[i, j]`.

    Scales are float16: their rounding (< 0.05%) is far below int8's (up to 0.4% of a group's peak)."""
    import numpy as np

    rows, cols = w.shape
    if cols % group:
        raise WeightsError(f"a {rows}x{cols} matrix does not split into groups of {group} columns")
    grouped = w.reshape(rows, cols // group, group)
    peak = np.abs(grouped).max(axis=2)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float16)
    q = np.clip(np.rint(grouped / scale.astype(np.float32)[:, :, None]), -127, 127).astype(np.int8)
    return q.reshape(rows, cols), scale


def dequantize_groups(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """float32 (in, out) from int8 (out, in) and its group scales: ready for `x @ W`."""
    import numpy as np

    rows, cols = q.shape
    groups = scale.shape[1]
    w = np.multiply(q.reshape(rows, groups, cols // groups), scale[:, :, None], dtype=np.float32).reshape(
        rows, cols
    )
    return np.ascontiguousarray(w.T)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def compact_weights(weights: dict[str, np.ndarray], config: dict[str, Any]) -> dict[str, np.ndarray]:
    """Sentence-transformers' BERT tensors → the compact set the numpy encoder loads.

    `config` is `encoder_config`'s: its "layers", and "max_tokens" (positions past it are never
    used: sentence-transformers truncates there, so they are not stored)."""
    import numpy as np

    prefix = "bert." if "bert.embeddings.word_embeddings.weight" in weights else ""

    def w(name: str) -> np.ndarray:
        try:
            return np.asarray(weights[prefix + name], dtype=np.float32)
        except KeyError:
            raise WeightsError(f"the model has no tensor {prefix + name}") from None

    out: dict[str, np.ndarray] = {}

    def matrix(key: str, mat: np.ndarray, bias: np.ndarray) -> None:
        # PyTorch's Linear keeps (out, in): one row per output channel.
        out[f"{key}.q"], out[f"{key}.scale"] = quantize_groups(mat)
        out[f"{key}.bias"] = bias

    out["emb.word.q"], out["emb.word.scale"] = quantize_rows(w("embeddings.word_embeddings.weight"))
    out["emb.position"] = w("embeddings.position_embeddings.weight")[: int(config["max_tokens"])]
    out["emb.type0"] = w("embeddings.token_type_embeddings.weight")[0]  # single-sentence input
    out["emb.ln.weight"] = w("embeddings.LayerNorm.weight")
    out["emb.ln.bias"] = w("embeddings.LayerNorm.bias")
    for i in range(int(config["layers"])):
        p = f"encoder.layer.{i}"
        att = f"{p}.attention.self"
        matrix(
            f"layer.{i}.qkv",
            np.concatenate([w(f"{att}.{n}.weight") for n in ("query", "key", "value")]),
            np.concatenate([w(f"{att}.{n}.bias") for n in ("query", "key", "value")]),
        )
        matrix(
            f"layer.{i}.attn_out",
            w(f"{p}.attention.output.dense.weight"),
            w(f"{p}.attention.output.dense.bias"),
        )
        out[f"layer.{i}.attn_ln.weight"] = w(f"{p}.attention.output.LayerNorm.weight")
        out[f"layer.{i}.attn_ln.bias"] = w(f"{p}.attention.output.LayerNorm.bias")
        matrix(f"layer.{i}.ffn_in", w(f"{p}.intermediate.dense.weight"), w(f"{p}.intermediate.dense.bias"))
        matrix(f"layer.{i}.ffn_out", w(f"{p}.output.dense.weight"), w(f"{p}.output.dense.bias"))
        out[f"layer.{i}.ffn_ln.weight"] = w(f"{p}.output.LayerNorm.weight")
        out[f"layer.{i}.ffn_ln.bias"] = w(f"{p}.output.LayerNorm.bias")
    return out


def encoder_config(src_dir: Path) -> dict[str, Any]:
    """The architecture the encoder needs, from config.json and sentence-transformers' configs."""
    config = json.loads((src_dir / "config.json").read_text())
    if (
        config.get("hidden_act", "gelu") != "gelu"
        or config.get("position_embedding_type", "absolute") != "absolute"
    ):
        raise WeightsError("only BERT encoders with erf GELU and absolute positions are supported")
    pooling = src_dir / "1_Pooling" / "config.json"
    if pooling.exists() and not json.loads(pooling.read_text()).get("pooling_mode_mean_tokens", True):
        raise WeightsError("only mean pooling is supported")
    max_tokens = 256
    st_cfg = src_dir / "sentence_bert_config.json"
    if st_cfg.exists():
        max_tokens = int(json.loads(st_cfg.read_text()).get("max_seq_length", max_tokens))
    return {
        "hidden": int(config["hidden_size"]),
        "heads": int(config["num_attention_heads"]),
        "layers": int(config["num_hidden_layers"]),
        "eps": float(config.get("layer_norm_eps", 1e-12)),
        "max_tokens": min(max_tokens, int(config["max_position_embeddings"])),
    }


def converted_from(path: Path) -> str | None:
    """The source SHA-256 recorded in a complete compact file of this format (None if absent,
    of another format, or shorter than its header says: set-up then writes it again)."""
    if not path.is_file():
        return None
    try:
        with path.open("rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > path.stat().st_size - 8:
                return None
            header = json.loads(f.read(n))
        meta = header.pop("__metadata__", None) or {}
        end = max((info["data_offsets"][1] for info in header.values()), default=0)
    except (ValueError, KeyError, TypeError, struct.error, OSError):
        return None
    if meta.get("format") != FORMAT or path.stat().st_size < 8 + n + end:
        return None
    return meta.get("source_sha256")


def convert(src_dir: Path, out_dir: Path, *, name: str = "all-MiniLM-L6-v2") -> Path:
    """Write `model.int8.safetensors` for the sentence-transformers model in `src_dir`.

    Idempotent: returns at once when `out_dir` already holds a file converted from the same
    source. Needs numpy only (no torch, no onnx)."""
    src = src_dir / "model.safetensors"
    digest = file_sha256(src)
    dst = out_dir / WEIGHTS_FILE
    if converted_from(dst) == digest:
        return dst
    config = encoder_config(src_dir)
    weights, _ = read_safetensors(src)
    tensors = compact_weights(weights, config)
    metadata = {"format": FORMAT, "name": name, "config": json.dumps(config), "source_sha256": digest}
    out_dir.mkdir(parents=True, exist_ok=True)
    return write_safetensors(dst, tensors, metadata)


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (POSIX); directories cannot be opened this way on Windows."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
