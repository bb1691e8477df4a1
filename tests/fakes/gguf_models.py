"""Tiny random-weight llama GGUF files that real llama.cpp loads, plus fixtures for them.

The weights are random, so what such a model *says* is noise; tests assert on token
counts, finish reasons, streaming structure, memory and cancellation instead. Two
properties make those assertions dependable:

* The model never ends a turn on its own. Residual dimension 0 is held constant (every
  token embedding has it at `_ANCHOR`, and no layer writes to it), so after the final
  RMS norm it is always positive; the output rows of every special and byte token put a
  large negative weight on it and nothing else. EOS/EOG can therefore never be sampled
  and `max_tokens` always decides where generation stops ("length").
* Every token it emits is plain printable text (no byte tokens, no `<`), so llama-cpp-
  python never holds text back for UTF-8 repair or stop-string matching: one sampled
  token is one streamed chunk.
"""

from __future__ import annotations

import string
from pathlib import Path

import pytest

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + (message['content'] or '') + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_SPECIALS = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
_WORDS = [
    "the", "and", "you", "that", "was", "for", "are", "with", "his", "they", "this", "have",
    "from", "one", "had", "word", "but", "not", "what", "all", "were", "when", "your", "can",
    "said", "there", "use", "each", "which", "she", "how", "their", "will", "other", "about",
    "out", "many", "then", "them", "these", "some", "her", "would", "make", "like", "him",
    "into", "time", "has", "look", "two", "more", "write", "see", "number", "way", "could",
    "people", "than", "first", "water", "been", "call", "who", "its", "now", "find", "long",
    "down", "day", "did", "get", "come", "made", "may", "part", "hello", "world", "model",
    "token", "user", "assistant", "system", "im", "start", "end",
]  # fmt: skip
_ANCHOR = 4.0  # value of residual dimension 0 (see module docstring)
_SUPPRESS = -50.0  # output weight on dimension 0 for tokens that must never be sampled


def _vocab(n_vocab: int | None = None) -> tuple[list[str], list[int], list[float]]:
    """SPM-style vocabulary: specials, the 256 byte-fallback tokens, characters, words; padded
    to `n_vocab` with made-up pieces ("▁x0", "▁x1", ...: plain text, each unique)."""
    from gguf import TokenType

    tokens: list[str] = list(_SPECIALS)
    types: list[int] = [TokenType.UNKNOWN] + [TokenType.CONTROL] * (len(_SPECIALS) - 1)
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [TokenType.BYTE] * 256
    chars = ["▁"] + [c for c in string.printable[:94] if c != " "]  # digits, letters, punctuation
    words = ["▁" + w for w in _WORDS] + [w for w in _WORDS if len(w) > 3]
    padding = [f"▁x{i}" for i in range(max(0, (n_vocab or 0) - len(tokens) - len(chars) - len(words)))]
    for text in chars + words + padding:
        tokens.append(text)
        types.append(TokenType.NORMAL)
    # llama.cpp aborts on a duplicated token string: fail here, loudly, instead
    assert len(set(tokens)) == len(tokens), "duplicate token in the tiny vocab"
    # SPM merges prefer higher scores: longer pieces first, so words win over letters
    scores = [0.0 if t in _SPECIALS else float(len(t)) - 100.0 for t in tokens]
    return tokens, [int(t) for t in types], scores


def write_tiny_llama_gguf(
    path: str | Path,
    *,
    seed: int = 0,
    n_layers: int = 2,
    n_embd: int = 64,
    n_head: int = 4,
    n_head_kv: int | None = None,
    n_ff: int | None = None,
    context_length: int = 512,
    dtype: str = "f32",
    name: str = "tiny-llama",
    n_vocab: int | None = None,
) -> Path:
    """Write a random-weight llama GGUF with a ChatML template; returns the path.

    Defaults give a ~0.2 MB file written in milliseconds; n_embd=512, n_layers=4 gives
    ~50 MB (f32), big enough for memory measurements and throughput benchmarks. `n_vocab`
    pads the vocabulary (~400 tokens otherwise) to a real model's size; dtype "q8_0"
    quantizes the matrices as most GGUFs people run are (a few seconds per 100M weights).
    """
    import gguf
    import numpy as np

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n_head_kv = n_head_kv or n_head
    n_ff = n_ff or (n_embd * 8 // 3 + 31) // 32 * 32
    head_dim = n_embd // n_head
    np_dtype = {"f32": np.float32, "f16": np.float16, "q8_0": np.float32}[dtype]
    tokens, types, scores = _vocab(n_vocab)
    n_vocab = len(tokens)
    rng = np.random.default_rng(seed)

    def weights(rows: int, cols: int, std: float = 0.02) -> np.ndarray:
        return (rng.standard_normal((rows, cols), dtype=np.float32) * std).astype(np_dtype)

    writer = gguf.GGUFWriter(str(path), "llama")
    if dtype == "q8_0":  # 2-D weights quantized as they are added; 1-D norms stay f32
        add_tensor = writer.add_tensor

        def add_quantized(name: str, tensor: np.ndarray) -> None:
            if tensor.ndim != 2:
                return add_tensor(name, tensor)
            q8 = gguf.GGMLQuantizationType.Q8_0
            add_tensor(name, gguf.quants.quantize(tensor, q8), raw_dtype=q8)  # its shape: from the bytes

        writer.add_tensor = add_quantized  # type: ignore[method-assign]
    writer.add_name(name)
    writer.add_context_length(context_length)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layers)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type({"f16": gguf.LlamaFileType.MOSTLY_F16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}.get(
        dtype, gguf.LlamaFileType.ALL_F32))
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_chat_template(CHATML_TEMPLATE)

    # numpy shapes are (rows=out, cols=in): the reverse of ggml's ne order
    embd = rng.standard_normal((n_vocab, n_embd), dtype=np.float32)
    embd[:, 0] = _ANCHOR
    writer.add_tensor("token_embd.weight", embd.astype(np_dtype))
    n_kv = head_dim * n_head_kv
    for i in range(n_layers):
        attn_out = weights(n_embd, n_embd)
        attn_out[0, :] = 0  # nothing writes to the anchor dimension
        ffn_down = weights(n_embd, n_ff)
        ffn_down[0, :] = 0
        # norm weights stay f32: llama.cpp expects 1-D tensors in f32
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.attn_q.weight", weights(n_embd, n_embd))
        writer.add_tensor(f"blk.{i}.attn_k.weight", weights(n_kv, n_embd))
        writer.add_tensor(f"blk.{i}.attn_v.weight", weights(n_kv, n_embd))
        writer.add_tensor(f"blk.{i}.attn_output.weight", attn_out)
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", weights(n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", weights(n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", ffn_down)
    writer.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    output = weights(n_vocab, n_embd, std=0.05)
    never = [
        i
        for i, (tok, kind) in enumerate(zip(tokens, types, strict=True))
        if kind != gguf.TokenType.NORMAL or "<" in tok
    ]
    output[never, :] = 0
    output[never, 0] = _SUPPRESS
    writer.add_tensor("output.weight", output)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory) -> Path:
    """A tiny chat model (context 512), shared by the whole session; treat it as read-only."""
    return write_tiny_llama_gguf(tmp_path_factory.mktemp("gguf") / "tiny-chat.gguf")


@pytest.fixture(scope="session")
def second_tiny_gguf(tmp_path_factory) -> Path:
    """Another model, different from `tiny_gguf` in weights, width and context (1024)."""
    return write_tiny_llama_gguf(
        tmp_path_factory.mktemp("gguf2") / "tiny-chat-b.gguf",
        seed=1,
        n_embd=96,
        n_head=6,
        n_head_kv=2,
        context_length=1024,
        name="tiny-llama-b",
    )


@pytest.fixture(scope="session")
def make_tiny_gguf(tmp_path_factory):
    """Factory: `make_tiny_gguf("name", **write_tiny_llama_gguf_kwargs)` → path in a fresh dir."""

    def make(stem: str, **kwargs) -> Path:
        return write_tiny_llama_gguf(tmp_path_factory.mktemp("gguf-" + stem) / f"{stem}.gguf", **kwargs)

    return make
