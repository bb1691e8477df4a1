"""The local sentence-embedding model: all-MiniLM-L6-v2 run with onnxruntime + tokenizers.

No torch at run time. Set-up (`scripts/fetch_embedding_model.py`, called by scripts/setup.sh)
exports the model once into a cache folder shared by every ByenatOS home on the machine;
after that it works offline. Batches are padded only to their own longest sentence (texts are
sorted by length first), which is what makes this ~20x faster than a fixed 256-token padding.

When the model is absent, `EmbeddingModel.load` raises `EmbeddingModelMissing` with the
command that fetches it; the personal store then runs on full-text search alone.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.kernel.errors import ByenatosError

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

MODEL_NAME = "all-MiniLM-L6-v2"
MODEL_DIR_ENV = "BYENATOS_EMBED_MODEL_DIR"
PRECISION_ENV = "BYENATOS_EMBED_PRECISION"
FETCH_HINT = "run `.venv/bin/python scripts/fetch_embedding_model.py` once (./run.sh and ./test.sh do it)"
BATCH = 32
# Measured on the bench set: English prose runs ~4.2 characters per MiniLM word piece.
CHARS_PER_TOKEN = 4.2


class EmbeddingModelMissing(ByenatosError):
    status = 503
    code = "embedding_model_missing"


def default_model_dir() -> Path:
    """Where set-up puts the model: independent of BYENATOS_HOME so every home (and test) shares it."""
    env = os.environ.get(MODEL_DIR_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("byenatos", appauthor=False)) / "embedding" / MODEL_NAME


def model_present(model_dir: Path | None = None) -> bool:
    d = model_dir or default_model_dir()
    # The installers ship only the int8 graph (87 MB smaller); set-up leaves both.
    graph = (d / "model.onnx").is_file() or (d / "model.int8.onnx").is_file()
    return graph and (d / "tokenizer.json").is_file()


def estimate_tokens(text: str) -> int:
    """Token count without the tokenizer (the model is missing): calibrated characters per token."""
    return max(1, int(len(text) / CHARS_PER_TOKEN + 0.999)) if text else 0


@dataclass
class EmbeddingModel:
    """A loaded encoder. `encode` is thread-safe (onnxruntime sessions are)."""

    session: Any
    tokenizer: Any
    dim: int
    max_tokens: int
    name: str = MODEL_NAME

    @classmethod
    def load(
        cls, model_dir: Path | None = None, *, threads: int | None = None, precision: str | None = None
    ) -> EmbeddingModel:
        """`precision`: "int8" (default where set-up made it: ~2.3x faster per query, cosine
        ~0.96 to the float model's vectors) or "fp32" (sentence-transformers' exact numbers).
        Vectors of the two never mix: the index is rebuilt when the model name changes."""
        d = model_dir or default_model_dir()
        if not model_present(d):
            raise EmbeddingModelMissing(f"the local embedding model is not installed in {d}: {FETCH_HINT}")
        precision = precision or os.environ.get(PRECISION_ENV) or "int8"
        if precision not in ("int8", "fp32"):
            raise EmbeddingModelMissing(f"{PRECISION_ENV} must be int8 or fp32, not {precision!r}")
        graph = d / "model.int8.onnx"
        if precision == "fp32" or not graph.exists():
            graph, precision = d / "model.onnx", "fp32"
            if not graph.is_file():
                raise EmbeddingModelMissing(f"the fp32 embedding model is not installed in {d} (only int8 is)")
        import onnxruntime as ort
        from tokenizers import Tokenizer

        meta = json.loads((d / "meta.json").read_text()) if (d / "meta.json").exists() else {}
        opts = ort.SessionOptions()
        # One thread by default: measured on 2 busy cores, a second thread made a short query
        # slower (7 → 10 ms) and the catch-up only marginally faster; it also leaves a core free.
        opts.intra_op_num_threads = threads or int(os.environ.get("BYENATOS_EMBED_THREADS", "1"))
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        session = ort.InferenceSession(str(graph), opts, providers=["CPUExecutionProvider"])
        tok = Tokenizer.from_file(str(d / "tokenizer.json"))
        max_tokens = int(meta.get("max_tokens", 256))
        tok.enable_truncation(max_length=max_tokens)
        tok.no_padding()
        name = f"{meta.get('name', MODEL_NAME)}-{precision}"
        return cls(session, tok, int(meta.get("dim", 384)), max_tokens, name)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids) if text else 0

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text, in the order given."""
        import numpy as np

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        encodings = self.tokenizer.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), BATCH):
            idx = order[start : start + BATCH]
            width = max(len(encodings[i].ids) for i in idx)
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                e = encodings[i].ids
                ids[row, : len(e)] = e
                mask[row, : len(e)] = 1
            (vecs,) = self.session.run(["sentence_embedding"], {"input_ids": ids, "attention_mask": mask})
            out[idx] = vecs
        return out


class ProviderEncoder:
    """Embeddings from a model in the socket (the user's choice instead of the local model).

    `encode` is called from worker threads (vector catch-up, PSP builds) and hands the request
    to the event loop, so it must never be called on the loop's own thread."""

    def __init__(self, model: str, embed: Any, loop: Any, *, timeout: float = 60.0) -> None:
        self.model_id = model
        self.name = f"provider:{model}"
        self._embed = embed  # async (texts, model) -> EmbeddingResult
        self._loop = loop
        self._timeout = timeout

    def encode(self, texts: list[str]) -> np.ndarray:
        import asyncio

        import numpy as np

        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        future = asyncio.run_coroutine_threadsafe(self._embed(texts, self.model_id), self._loop)
        result = future.result(self._timeout)
        vecs = np.asarray(result.vectors, dtype=np.float32)
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        return vecs / np.maximum(norms, 1e-12)  # cosine space, like the local model


class LazyEmbedder:
    """Loads the model on first use (in a worker thread), remembers if it is missing."""

    def __init__(self, model_dir: Path | None = None) -> None:
        self.model_dir = model_dir
        self.provider: ProviderEncoder | None = None  # set when the user chose a provider's model
        self._model: EmbeddingModel | None = None
        self._missing: str | None = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    @property
    def available(self) -> bool:
        if self.provider is not None or self._model is not None:
            return True
        if self._missing is not None:
            return False
        return model_present(self.model_dir)

    @property
    def missing_reason(self) -> str | None:
        if self.provider is not None:
            return None
        if self._missing is None and not model_present(self.model_dir):
            d = self.model_dir or default_model_dir()
            self._missing = f"the local embedding model is not installed in {d}: {FETCH_HINT}"
        return self._missing

    def model(self) -> EmbeddingModel | ProviderEncoder:
        if self.provider is not None:
            return self.provider
        with self._lock:
            if self._model is None:
                try:
                    self._model = EmbeddingModel.load(self.model_dir)
                except EmbeddingModelMissing as e:
                    self._missing = e.message
                    raise
            return self._model

    def tokenizer(self) -> Any | None:
        """The model's tokenizer alone (~50 ms to load, no onnxruntime): the PSP's token counter."""
        # Its own instance: the model's one truncates at 256 tokens, which would undercount.
        if self._tokenizer is None and self.available:
            with self._lock:
                if self._tokenizer is None:
                    from tokenizers import Tokenizer

                    d = self.model_dir or default_model_dir()
                    tok = Tokenizer.from_file(str(d / "tokenizer.json"))
                    tok.no_padding()  # the file pads to 128: a count must be the text's own length
                    tok.no_truncation()
                    self._tokenizer = tok
        return self._tokenizer

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` by MiniLM's WordPiece vocabulary; a calibrated estimate without it."""
        if not text:
            return 0
        tok = self.tokenizer()
        if tok is None:
            return estimate_tokens(text)
        return len(tok.encode(text, add_special_tokens=False).ids)
