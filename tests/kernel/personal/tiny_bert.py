"""A tiny sentence-transformers BERT folder (random weights, 40-word vocabulary) for the tests of
the weight conversion and the numpy encoder that need no downloaded model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from app.kernel.personal.embed_weights import write_safetensors

HIDDEN, HEADS, INTERMEDIATE, LAYERS, VOCAB, POSITIONS = 64, 4, 128, 2, 40, 32
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
WORDS = [f"w{i}" for i in range(VOCAB - len(SPECIAL))]


def _matrix(rng: np.random.Generator, rows: int, cols: int, exact: bool) -> np.ndarray:
    if not exact:
        return (rng.standard_normal((rows, cols)) * 0.15).astype(np.float32)
    # Integers times 2^-9 with a ±127 in every run of 32 columns: int8 with one scale per row and
    # group stores them exactly (the scale is 2^-9, representable in float16).
    k = rng.integers(-126, 127, (rows, cols))
    k[:, ::32] = 127 * rng.choice([-1, 1], (rows, cols // 32))
    return (k * 2.0**-9).astype(np.float32)


def write_tiny_bert(folder: Path, *, seed: int = 1, exact_int8: bool = False, max_tokens: int = 24) -> Path:
    """Write model.safetensors, config.json, the sentence-transformers configs and a WordPiece
    tokenizer.json into `folder`; returns the folder."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)

    def vec(n: int, centre: float = 0.0) -> np.ndarray:
        return (centre + rng.standard_normal(n) * 0.1).astype(np.float32)

    t: dict[str, np.ndarray] = {
        "embeddings.word_embeddings.weight": _matrix(rng, VOCAB, HIDDEN, exact_int8),
        "embeddings.position_embeddings.weight": (rng.standard_normal((POSITIONS, HIDDEN)) * 0.1).astype(
            np.float32
        ),
        "embeddings.token_type_embeddings.weight": (rng.standard_normal((2, HIDDEN)) * 0.1).astype(
            np.float32
        ),
        "embeddings.LayerNorm.weight": vec(HIDDEN, 1.0),
        "embeddings.LayerNorm.bias": vec(HIDDEN),
    }
    for i in range(LAYERS):
        p = f"encoder.layer.{i}"
        for name in ("query", "key", "value"):
            t[f"{p}.attention.self.{name}.weight"] = _matrix(rng, HIDDEN, HIDDEN, exact_int8)
            t[f"{p}.attention.self.{name}.bias"] = vec(HIDDEN)
        t[f"{p}.attention.output.dense.weight"] = _matrix(rng, HIDDEN, HIDDEN, exact_int8)
        t[f"{p}.attention.output.dense.bias"] = vec(HIDDEN)
        t[f"{p}.attention.output.LayerNorm.weight"] = vec(HIDDEN, 1.0)
        t[f"{p}.attention.output.LayerNorm.bias"] = vec(HIDDEN)
        t[f"{p}.intermediate.dense.weight"] = _matrix(rng, INTERMEDIATE, HIDDEN, exact_int8)
        t[f"{p}.intermediate.dense.bias"] = vec(INTERMEDIATE)
        t[f"{p}.output.dense.weight"] = _matrix(rng, HIDDEN, INTERMEDIATE, exact_int8)
        t[f"{p}.output.dense.bias"] = vec(HIDDEN)
        t[f"{p}.output.LayerNorm.weight"] = vec(HIDDEN, 1.0)
        t[f"{p}.output.LayerNorm.bias"] = vec(HIDDEN)
    write_safetensors(folder / "model.safetensors", t, {"format": "pt"})
    config = {
        "architectures": ["BertModel"],
        "hidden_act": "gelu",
        "hidden_size": HIDDEN,
        "intermediate_size": INTERMEDIATE,
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": POSITIONS,
        "model_type": "bert",
        "num_attention_heads": HEADS,
        "num_hidden_layers": LAYERS,
        "position_embedding_type": "absolute",
        "type_vocab_size": 2,
        "vocab_size": VOCAB,
    }
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_tokens}))
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    _write_tokenizer(folder / "tokenizer.json")
    return folder


def _write_tokenizer(path: Path) -> None:
    from tokenizers import Tokenizer
    from tokenizers.models import WordPiece
    from tokenizers.pre_tokenizers import BertPreTokenizer
    from tokenizers.processors import TemplateProcessing

    vocab = {w: i for i, w in enumerate(SPECIAL + WORDS)}
    tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = BertPreTokenizer()
    tok.post_processor = TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    tok.save(str(path))
