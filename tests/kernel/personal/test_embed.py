"""The local embedding model: sentence-transformers' numbers, no torch, dynamic padding, offline fallback.

These run the onnxruntime runtime (set-up's ONNX graphs); test_embed_numpy.py holds the numpy one."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from app.kernel.personal import embed
from app.kernel.personal.embed import EmbeddingModel, EmbeddingModelMissing, LazyEmbedder, estimate_tokens

from .conftest import needs_model

needs_graphs = pytest.mark.skipif(
    not (embed.default_model_dir() / "model.onnx").is_file() or not embed.onnxruntime_available(),
    reason="the ONNX graphs (scripts/fetch_embedding_model.py) or onnxruntime are not installed",
)


@pytest.fixture(scope="module")
def model():
    return EmbeddingModel.load(runtime="onnxruntime", precision="fp32")


@pytest.fixture(scope="module")
def int8():
    return EmbeddingModel.load(runtime="onnxruntime", precision="int8")


@needs_graphs
def test_matches_sentence_transformers_reference_values(model):
    # all-MiniLM-L6-v2 via sentence-transformers encodes "hello world" to a unit vector
    # starting with these values (published reference used by fastembed's tests).
    v = model.encode(["hello world"])[0]
    assert v.shape == (384,)
    assert np.allclose(v[:4], [-0.0344772711, 0.0310231801, 0.00673499797, 0.0261089597], atol=1e-4)
    assert abs(float(np.linalg.norm(v)) - 1.0) < 1e-5


@needs_graphs
def test_paraphrases_are_close_and_unrelated_sentences_are_not(model):
    a, b, c = model.encode(
        ["A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby."]
    )
    assert float(a @ b) > 0.7
    assert float(a @ c) < 0.2


@needs_graphs
def test_batching_with_dynamic_padding_gives_the_same_vectors_in_order(model):
    texts = [
        "short",
        "a much longer sentence about planning a holiday in the mountains next summer",
        "medium length text here",
        "",
        "x " * 400,
    ]  # the last one is truncated at 256 tokens
    together = model.encode(texts)
    alone = np.stack([model.encode([t])[0] for t in texts])
    assert np.allclose(together, alone, atol=1e-5)


@needs_graphs
def test_the_int8_model_agrees_with_the_float_one(model, int8):
    texts = [
        "A man is eating food.",
        "A man is eating a piece of bread.",
        "The girl is carrying a baby.",
        "what did I note about the billing migration?",
    ]
    exact, fast = model.encode(texts), int8.encode(texts)
    assert int8.name.endswith("int8") and model.name.endswith("fp32")
    assert all(float(a @ b) > 0.9 for a, b in zip(exact, fast, strict=True))
    assert float(fast[0] @ fast[1]) > 0.7 and float(fast[0] @ fast[2]) < 0.2


@needs_graphs
def test_no_torch_is_imported(model):
    model.encode(["anything"])
    assert "torch" not in sys.modules


def test_a_missing_model_says_how_to_get_it_and_counts_tokens_anyway(tmp_path):
    with pytest.raises(EmbeddingModelMissing) as e:
        EmbeddingModel.load(tmp_path)
    assert "fetch_embedding_model.py" in str(e.value)
    lazy = LazyEmbedder(tmp_path)
    assert not lazy.available
    assert "fetch_embedding_model.py" in lazy.missing_reason
    assert lazy.count_tokens("four words in here") == estimate_tokens("four words in here") > 0


@needs_model
def test_token_counts_are_the_texts_own_length_not_the_padded_one():
    lazy = LazyEmbedder()
    assert lazy.count_tokens("hello world") == 2  # the tokenizer file pads to 128; counts must not
    assert lazy.count_tokens("word " * 600) == 600  # nor truncate
