"""A random-weight GGUF with the shape of a real ~0.5B model, for the benchmarks that time
llama.cpp work (bench.context_switch, bench.interactive_under_load).

The shape is Qwen2.5-0.5B's (24 layers, 896 wide, 14 query heads and 2 KV heads of 64,
feed-forward 4864, a 151,936-token vocabulary), as a llama-architecture GGUF in Q8_0 written
by the `gguf` package (tests/fakes/gguf_models.py): what a token costs in compute, and what a
context costs in KV cache, are those of the real model. The weights are random, so the text
is noise, and the model never ends a turn by itself (generation always runs to max_tokens).
Written once (~45 s, ~670 MB) and kept in the temp folder for the next run.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

SHAPE = dict(seed=5, n_layers=24, n_embd=896, n_head=14, n_head_kv=2, n_ff=4864, context_length=32768,
             dtype="q8_0", n_vocab=151936, name="qwen2.5-0.5b-shaped")  # fmt: skip
DESCRIPTION = "Qwen2.5-0.5B-shaped random-weight GGUF (24 x 896, GQA 14/2, vocab 151,936, Q8_0)"


def small_model(folder: Path | None = None) -> Path:
    """The model file, written if it is not there yet."""
    from tests.fakes.gguf_models import write_tiny_llama_gguf

    folder = folder or Path(tempfile.gettempdir())
    path = folder / "byenatos-bench-qwen05b-shaped-v1.gguf"
    if not path.exists():
        partial = path.with_suffix(".partial")
        write_tiny_llama_gguf(partial, **SHAPE)  # type: ignore[arg-type]
        partial.rename(path)
    return path
