"""The local sentence-embedding model: all-MiniLM-L6-v2 run with tokenizers + numpy or onnxruntime.

No torch at run time. Set-up (`scripts/fetch_embedding_model.py`, called by scripts/setup.sh)
prepares the model once in a cache folder shared by every ByenatOS home on the machine; after
that it works offline. Batches are padded only to their own longest sentence (texts are
sorted by length first), which is what makes this ~20x faster than a fixed 256-token padding.

Two runtimes compute the same encoder (`BYENATOS_EMBED_RUNTIME` picks one; by default the
first that can run):
- "onnxruntime": the ONNX graphs set-up exports (int8 by default, fp32 on request). The fastest
  where onnxruntime is installed (a short query ~2 ms, 3-4x faster than numpy here; catch-up
  ~3x), but its int8 graph also rounds activations (cosine ~0.96 to the float model's vectors).
- "numpy": `bert_numpy.py` over `model.int8.safetensors` (int8 weights dequantized at load,
  float32 maths: cosine ≥ 0.999 to the float model). What the installers ship: it needs only
  numpy, which the bundle carries anyway, and spares onnxruntime's 29.5 MB.

Vectors of different runtimes or precisions never mix: each has its own model name, and the
vector index is rebuilt when the name changes (service.py).

When the model is absent, `EmbeddingModel.load` raises `EmbeddingModelMissing` with the
command that fetches it; the personal store then runs on full-text search alone.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.kernel.errors import ByenatosError
from app.kernel.personal.embed_weights import WEIGHTS_FILE

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

MODEL_NAME = "all-MiniLM-L6-v2"
MULTILINGUAL_NAME = "multilingual-e5-small"
MODEL_DIR_ENV = "BYENATOS_EMBED_MODEL_DIR"
PRECISION_ENV = "BYENATOS_EMBED_PRECISION"
RUNTIME_ENV = "BYENATOS_EMBED_RUNTIME"
THREADS_ENV = "BYENATOS_EMBED_THREADS"
RUNTIMES = ("onnxruntime", "numpy")
FETCH_HINT = "run `.venv/bin/python scripts/fetch_embedding_model.py` once (./run.sh and ./test.sh do it)"
BATCH = 32
# MiniLM cosine: unrelated sentences sit around 0-0.15, paraphrases above ~0.6.
DEFAULT_CALIBRATION = (0.15, 0.65)
# Measured on the bench set: English prose runs ~4.2 characters per MiniLM word piece.
CHARS_PER_TOKEN = 4.2
# The numpy runtime's vectors: int8 weights in groups of 32 (embed_weights.py), float32 maths.
NUMPY_SUFFIX = "numpy-w8g32"


class EmbeddingModelMissing(ByenatosError):
    status = 503
    code = "embedding_model_missing"


def model_dir_for(name: str) -> Path:
    """The shared cache folder of one local model (independent of BYENATOS_HOME: every home
    and test on the machine shares it)."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("byenatos", appauthor=False)) / "embedding" / name


def default_model_dir() -> Path:
    """all-MiniLM-L6-v2's folder (what set-up fetches and the installers ship), or
    $BYENATOS_EMBED_MODEL_DIR."""
    env = os.environ.get(MODEL_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return model_dir_for(MODEL_NAME)


def preferred_model_dir(choice: str = "local") -> Path:
    """The folder of the local model a setting names: "multilingual" is multilingual-e5-small
    (Chinese and ~100 other languages: as good as all-MiniLM-L6-v2 on the English memory set,
    far better on Chinese — bench.memory_retrieval); anything else all-MiniLM-L6-v2 (or
    $BYENATOS_EMBED_MODEL_DIR)."""
    if choice == "multilingual" and not os.environ.get(MODEL_DIR_ENV):
        return model_dir_for(MULTILINGUAL_NAME)
    return default_model_dir()


def onnx_graphs_present(model_dir: Path) -> bool:
    return (model_dir / "model.onnx").is_file() or (model_dir / "model.int8.onnx").is_file()


def numpy_weights_present(model_dir: Path) -> bool:
    return (model_dir / WEIGHTS_FILE).is_file()


def model_present(model_dir: Path | None = None) -> bool:
    d = model_dir or default_model_dir()
    # The installers ship only the numpy weights; set-up leaves them and the ONNX graphs.
    weights = numpy_weights_present(d) or (onnx_graphs_present(d) and onnxruntime_available())
    return weights and (d / "tokenizer.json").is_file()


def onnxruntime_available() -> bool:
    """Whether onnxruntime can be imported, without importing it (~0.2 s, 30 MB)."""
    try:
        return importlib.util.find_spec("onnxruntime") is not None
    except (ImportError, ValueError):
        return False


def estimate_tokens(text: str) -> int:
    """Token count without the tokenizer (the model is missing): calibrated characters per token."""
    return max(1, int(len(text) / CHARS_PER_TOKEN + 0.999)) if text else 0


def _choose_runtime(d: Path, runtime: str | None, precision: str) -> str:
    runtime = runtime or os.environ.get(RUNTIME_ENV) or None
    if runtime is not None and runtime not in RUNTIMES:
        raise EmbeddingModelMissing(f"{RUNTIME_ENV} must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
    ort_ok = onnx_graphs_present(d) and onnxruntime_available()
    if runtime == "onnxruntime" and not ort_ok:
        why = "onnxruntime is not installed" if onnx_graphs_present(d) else f"no ONNX graph in {d}"
        raise EmbeddingModelMissing(f"the onnxruntime embedding runtime cannot run: {why}")
    if runtime == "numpy" and not numpy_weights_present(d):
        raise EmbeddingModelMissing(
            f"the numpy embedding weights ({WEIGHTS_FILE}) are not in {d}: {FETCH_HINT}"
        )
    if runtime is None:
        runtime = "onnxruntime" if ort_ok else "numpy"
    if precision == "fp32" and runtime == "numpy":
        raise EmbeddingModelMissing(
            f"the fp32 embedding model runs on onnxruntime with model.onnx, not installed in {d} "
            "(the numpy runtime has int8 weights only)"
        )
    return runtime


@dataclass
class EmbeddingModel:
    """A loaded encoder. `encode` is thread-safe (onnxruntime sessions are; the numpy encoder
    keeps no state between calls)."""

    run: Callable[[np.ndarray, np.ndarray], np.ndarray]  # (ids [b, w], lengths [b]) -> unit vectors
    tokenizer: Any
    dim: int
    max_tokens: int
    name: str = MODEL_NAME
    runtime: str = "numpy"
    # What the model wants before a question and before a stored text (e5: "query: ", "passage: ").
    prefixes: dict[str, str] = field(default_factory=dict)
    calibration: tuple[float, float] = DEFAULT_CALIBRATION

    @classmethod
    def load(
        cls,
        model_dir: Path | None = None,
        *,
        threads: int | None = None,
        precision: str | None = None,
        runtime: str | None = None,
    ) -> EmbeddingModel:
        """`runtime`: "onnxruntime" or "numpy" (default: $BYENATOS_EMBED_RUNTIME, else
        onnxruntime where it and its graphs are installed, else numpy).
        `precision` (onnxruntime only): "int8" (default where set-up made it: ~2.3x faster per
        query than fp32, cosine ~0.96 to the float model's vectors) or "fp32"
        (sentence-transformers' exact numbers)."""
        d = model_dir or default_model_dir()
        if not model_present(d):
            raise EmbeddingModelMissing(f"the local embedding model is not installed in {d}: {FETCH_HINT}")
        precision = precision or os.environ.get(PRECISION_ENV) or "int8"
        if precision not in ("int8", "fp32"):
            raise EmbeddingModelMissing(f"{PRECISION_ENV} must be int8 or fp32, not {precision!r}")
        runtime = _choose_runtime(d, runtime, precision)
        # One thread by default: measured on 2 busy cores, a second thread made a short query
        # slower (onnxruntime 7 → 10 ms; numpy ~6.2 ms either way with the other core idle, but
        # 7.5 → 22 ms with it busy) and the catch-up no faster; it also leaves a core free for
        # the gateway and the UI.
        threads = threads or int(os.environ.get(THREADS_ENV, "1"))
        from tokenizers import Tokenizer

        meta = json.loads((d / "meta.json").read_text()) if (d / "meta.json").exists() else {}
        base = meta.get("name", MODEL_NAME)
        if runtime == "numpy":
            run, dim, max_tokens = _numpy_runner(d, threads)  # the weights file knows its shape
            name = f"{base}-{NUMPY_SUFFIX}"
        else:
            run, precision = _onnx_runner(d, threads, precision)
            dim, max_tokens = int(meta.get("dim", 384)), int(meta.get("max_tokens", 256))
            name = f"{base}-{precision}"
        tok = Tokenizer.from_file(str(d / "tokenizer.json"))
        tok.enable_truncation(max_length=max_tokens)
        tok.no_padding()
        cal = meta.get("calibration") or DEFAULT_CALIBRATION
        return cls(
            run, tok, dim, max_tokens, name, runtime, dict(meta.get("prefixes") or {}), (cal[0], cal[1])
        )

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids) if text else 0

    def encode(self, texts: list[str], kind: str = "query") -> np.ndarray:
        """Unit-length float32 vectors, one row per text, in the order given. `kind`: "query"
        (a question) or "passage" (a stored text), for models that read them differently."""
        import numpy as np

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        prefix = self.prefixes.get(kind, "")
        if prefix:
            texts = [prefix + t for t in texts]
        encodings = self.tokenizer.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), BATCH):
            idx = order[start : start + BATCH]
            lengths = np.array([len(encodings[i].ids) for i in idx], dtype=np.int64)
            ids = np.zeros((len(idx), int(lengths.max())), dtype=np.int64)
            for row, i in enumerate(idx):
                ids[row, : lengths[row]] = encodings[i].ids
            out[idx] = self.run(ids, lengths)
        return out


def _numpy_runner(d: Path, threads: int) -> tuple[Callable[[np.ndarray, np.ndarray], np.ndarray], int, int]:
    from app.kernel.personal.bert_numpy import BertEncoder, BlasThreads
    from app.kernel.personal.embed_weights import WeightsError

    try:
        encoder = BertEncoder.load(d / WEIGHTS_FILE)
    except (WeightsError, OSError) as e:
        raise EmbeddingModelMissing(f"the embedding weights in {d} cannot be read ({e}): {FETCH_HINT}") from e

    def run(ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        with BlasThreads(threads):
            return encoder(ids, lengths)

    return run, encoder.dim, encoder.max_tokens


def _onnx_runner(
    d: Path, threads: int, precision: str
) -> tuple[Callable[[np.ndarray, np.ndarray], np.ndarray], str]:
    graph = d / "model.int8.onnx"
    if precision == "fp32" or not graph.exists():
        graph, precision = d / "model.onnx", "fp32"
        if not graph.is_file():
            raise EmbeddingModelMissing(f"the fp32 embedding model is not installed in {d} (only int8 is)")
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(graph), opts, providers=["CPUExecutionProvider"])

    def run(ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        mask = (np.arange(ids.shape[1]) < lengths[:, None]).astype(np.int64)
        (vecs,) = session.run(["sentence_embedding"], {"input_ids": ids, "attention_mask": mask})
        return vecs

    return run, precision


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

    def encode(self, texts: list[str], kind: str = "query") -> np.ndarray:
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

    def use_dir(self, model_dir: Path | None) -> None:
        """Switch to the local model in `model_dir` (loaded on next use)."""
        with self._lock:
            self.model_dir = model_dir
            self._model = None
            self._missing = None
            self._tokenizer = None

    def calibration(self) -> tuple[float, float]:
        """(floor, full): the cosines this model gives unrelated texts and close paraphrases,
        which retrieval maps to relevance 0 and 1."""
        model = self._model if self.provider is None else None
        return getattr(model, "calibration", DEFAULT_CALIBRATION)

    def reranker(self) -> Any:
        """The reranking stage's model, or None where it is not installed."""
        return None

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` by MiniLM's WordPiece vocabulary; a calibrated estimate without it."""
        if not text:
            return 0
        tok = self.tokenizer()
        if tok is None:
            return estimate_tokens(text)
        return len(tok.encode(text, add_special_tokens=False).ids)
