"""A BERT sentence encoder in numpy: all-MiniLM-L6-v2's forward pass, no onnxruntime, no torch.

What it computes is sentence-transformers' Transformer → Pooling(mean) → Normalize:
embeddings (word + position + token type 0, LayerNorm) → N post-LayerNorm encoder layers
(self-attention, erf GELU feed-forward) → the mean of the real tokens' states → unit length.
Everything runs in float32 on numpy's BLAS (OpenBLAS in the wheels and the installers).

Why it is shaped this way:
- Q, K and V are one matmul against a fused [hidden, 3·hidden] matrix, and the heads are a
  reshape plus batched matmuls: no per-head Python loop, ~15 numpy calls per layer.
- 1/√head_dim is folded into the query weights at load, so scores need no extra pass.
- Matrices are dequantized once at load (int8 on disk, 42 MB of float32 in memory): numpy's
  BLAS multiplies only floats, and dequantizing per call would cost more than the product.
  The 30,522-row word table stays int8 (mmap); a batch dequantizes only the rows it uses.
- Each call allocates its working buffers once and reuses them across the layers (`out=`),
  so concurrent calls from several threads never share state.

Where the time goes (bench/embed_runtime.py): a 12-token query spends ~6 of its ~7 ms in the
24 matrix products, which OpenBLAS runs at small row counts by packing each weight matrix
first (onnxruntime prepacks once and multiplies int8); a batch of 32 sentences runs at
~100 GFLOP/s float32 on one core, the GELU taking ~15% on top.
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.kernel.personal.embed_weights import FORMAT, WeightsError, dequantize_groups, read_safetensors

if TYPE_CHECKING:
    import numpy as np

# erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7, below float32's resolution at 1):
# numpy has no erf, and the tanh form of GELU differs from BERT's erf form by up to 3e-4.
_ERF_P = 0.3275911
# Constants are Python floats: numpy 2 computes float32 arrays with a np.float64 scalar in
# float64 (8x slower for an in-place multiply here), with a Python float in float32.
_ERF_P_HALF_SQRT2 = _ERF_P / math.sqrt(2.0)
_ERF_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


@dataclass(frozen=True)
class Layer:
    qkv: np.ndarray  # [hidden, 3·hidden], query columns pre-scaled by 1/√head_dim
    qkv_bias: np.ndarray
    attn_out: np.ndarray  # [hidden, hidden]
    attn_out_bias: np.ndarray
    attn_ln: tuple[np.ndarray, np.ndarray]
    ffn_in: np.ndarray  # [hidden, intermediate]
    ffn_in_bias: np.ndarray
    ffn_out: np.ndarray  # [intermediate, hidden]
    ffn_out_bias: np.ndarray
    ffn_ln: tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class BertEncoder:
    word_q: np.ndarray  # int8 [vocab, hidden], memory-mapped
    word_scale: np.ndarray  # float32 [vocab]
    position: np.ndarray  # float32 [max_tokens, hidden], token type 0 folded in
    emb_ln: tuple[np.ndarray, np.ndarray]
    layers: tuple[Layer, ...]
    heads: int
    eps: float
    max_tokens: int
    name: str

    @property
    def dim(self) -> int:
        return int(self.position.shape[1])

    @classmethod
    def load(cls, path: Path) -> BertEncoder:
        """Load a file written by `embed_weights.convert` (raises WeightsError if it is not one)."""
        import numpy as np

        tensors, meta = read_safetensors(path, mmap=True)
        if meta.get("format") != FORMAT:
            raise WeightsError(f"{path} is not a {FORMAT} weights file (format {meta.get('format')!r})")
        try:
            config = json.loads(meta["config"])
            hidden, heads = int(config["hidden"]), int(config["heads"])
            max_tokens, n_layers, eps = int(config["max_tokens"]), int(config["layers"]), float(config["eps"])
        except (KeyError, TypeError, ValueError) as e:
            raise WeightsError(f"{path} has no usable architecture in its metadata ({e})") from e

        def f32(name: str) -> np.ndarray:
            try:
                return np.array(tensors[name], dtype=np.float32)  # a private, writable copy
            except KeyError:
                raise WeightsError(f"{path} has no tensor {name}") from None

        def matrix(key: str, col_scale: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
            # Stored (out, in) int8 + group scales; returned (in, out) float32 so that
            # activations [tokens, in] @ W is a plain row-major GEMM.
            try:
                w = dequantize_groups(tensors[f"{key}.q"], tensors[f"{key}.scale"])
            except KeyError:
                raise WeightsError(f"{path} has no tensor {key}.q or {key}.scale") from None
            bias = f32(f"{key}.bias")
            if col_scale is not None:
                w *= col_scale
                bias *= col_scale
            return w, bias

        head_dim = hidden // heads
        # Folding 1/√d into the query columns (weights and bias) spares a pass over the scores.
        q_scale = np.ones(3 * hidden, dtype=np.float32)
        q_scale[:hidden] = 1.0 / np.sqrt(head_dim)
        layers = []
        for i in range(n_layers):
            qkv, qkv_b = matrix(f"layer.{i}.qkv", q_scale)
            ao, ao_b = matrix(f"layer.{i}.attn_out")
            fi, fi_b = matrix(f"layer.{i}.ffn_in")
            fo, fo_b = matrix(f"layer.{i}.ffn_out")
            layers.append(
                Layer(
                    qkv,
                    qkv_b,
                    ao,
                    ao_b,
                    (f32(f"layer.{i}.attn_ln.weight"), f32(f"layer.{i}.attn_ln.bias")),
                    fi,
                    fi_b,
                    fo,
                    fo_b,
                    (f32(f"layer.{i}.ffn_ln.weight"), f32(f"layer.{i}.ffn_ln.bias")),
                )
            )
        position = f32("emb.position")[:max_tokens] + f32("emb.type0")
        if position.shape[0] < max_tokens:
            raise WeightsError(
                f"{path} holds {position.shape[0]} positions, fewer than its {max_tokens} tokens"
            )
        return cls(
            word_q=tensors["emb.word.q"],
            word_scale=f32("emb.word.scale"),
            position=np.ascontiguousarray(position),
            emb_ln=(f32("emb.ln.weight"), f32("emb.ln.bias")),
            layers=tuple(layers),
            heads=heads,
            eps=eps,
            max_tokens=max_tokens,
            name=meta.get("name", path.stem),
        )

    def __call__(self, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Unit-length sentence vectors [batch, hidden] for token ids [batch, width] (int),
        row i holding `lengths[i]` real tokens followed by padding."""
        import numpy as np

        batch, width = ids.shape
        if width > self.max_tokens:
            raise ValueError(f"{width} tokens: the encoder takes at most {self.max_tokens}")
        hidden, heads = self.dim, self.heads
        head_dim = hidden // heads
        n = batch * width
        # OpenBLAS' SGEMM runs a row count that is a multiple of 4 up to ~1.5x faster than its
        # neighbours (11 rows: 307 us, 12 rows: 189 us for the 384x1536 matrix here): the token
        # rows are padded with zeros to one, and the padding rows are never read back.
        rows = -(-n // 4) * 4
        flat = ids.reshape(n)

        # Embeddings: dequantize only the rows this batch uses.
        x = np.zeros((rows, hidden), dtype=np.float32)
        np.multiply(self.word_q[flat], self.word_scale[flat, None], out=x[:n], dtype=np.float32)
        x[:n].reshape(batch, width, hidden)[...] += self.position[:width]
        self._layer_norm(x, *self.emb_ln)

        lengths = np.asarray(lengths)
        padded = bool((lengths < width).any())
        if padded:  # additive mask on the keys: padded positions get no attention
            mask_bias = np.where(np.arange(width) < lengths[:, None], 0.0, -1e9).astype(np.float32)
            mask_bias = mask_bias[:, None, None, :]

        # Working buffers, reused by every layer.
        qkv = np.empty((rows, 3 * hidden), dtype=np.float32)
        scores = np.empty((batch, heads, width, width), dtype=np.float32)
        ctx = np.empty((batch, heads, width, head_dim), dtype=np.float32)
        merged = np.zeros((rows, hidden), dtype=np.float32)
        merged_heads = merged[:n].reshape(batch, width, heads, head_dim)
        proj = np.empty((rows, hidden), dtype=np.float32)
        inner_shape = (rows, self.layers[0].ffn_in.shape[1]) if self.layers else (0, 0)
        inner, scratch, scratch2 = (np.empty(inner_shape, dtype=np.float32) for _ in range(3))

        for layer in self.layers:
            np.matmul(x, layer.qkv, out=qkv)
            qkv += layer.qkv_bias
            # [n, 3·hidden] → three [batch, heads, width, head_dim] views (no copies yet)
            parts = qkv[:n].reshape(batch, width, 3, heads, head_dim).transpose(2, 0, 3, 1, 4)
            q, k, v = parts[0], parts[1], parts[2]
            np.matmul(q, k.transpose(0, 1, 3, 2), out=scores)
            if padded:
                scores += mask_bias
            _softmax_(scores)
            np.matmul(scores, v, out=ctx)
            merged_heads[...] = ctx.transpose(0, 2, 1, 3)
            np.matmul(merged, layer.attn_out, out=proj)
            proj += layer.attn_out_bias
            proj += x
            x, proj = proj, x
            self._layer_norm(x, *layer.attn_ln)

            np.matmul(x, layer.ffn_in, out=inner)
            inner += layer.ffn_in_bias
            _gelu_(inner, scratch, scratch2)
            np.matmul(inner, layer.ffn_out, out=proj)
            proj += layer.ffn_out_bias
            proj += x
            x, proj = proj, x
            self._layer_norm(x, *layer.ffn_ln)

        # Mean over each sentence's real tokens, then unit length (sentence-transformers' Normalize).
        states = x[:n].reshape(batch, width, hidden)
        if padded:
            keep = (np.arange(width) < lengths[:, None]).astype(np.float32)
            pooled = np.einsum("bwh,bw->bh", states, keep)
        else:
            pooled = states.sum(axis=1)
        pooled /= np.maximum(lengths.astype(np.float32), 1e-9)[:, None]
        norms = np.sqrt(np.einsum("bh,bh->b", pooled, pooled))
        pooled /= np.maximum(norms, 1e-12)[:, None]
        return pooled

    def _layer_norm(self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> None:
        """In place over the last axis, float32, like torch's and onnxruntime's LayerNorm."""
        import numpy as np

        x -= x.mean(axis=-1, keepdims=True)
        var = np.einsum("ij,ij->i", x, x)[:, None]
        var /= x.shape[-1]
        var += self.eps
        np.sqrt(var, out=var)
        x /= var
        x *= weight
        x += bias


def _softmax_(s: np.ndarray) -> None:
    """Softmax over the last axis, in place."""
    import numpy as np

    s -= s.max(axis=-1, keepdims=True)
    np.exp(s, out=s)
    s /= s.sum(axis=-1, keepdims=True)


def _gelu_(h: np.ndarray, t: np.ndarray, poly: np.ndarray) -> None:
    """BERT's GELU, h·(1 + erf(h/√2))/2, in place; `t` and `poly` are scratch of h's shape."""
    import numpy as np

    # erf(|z|) for z = h/√2 by A&S 7.1.26: 1 - t·P(t)·exp(-z²) with t = 1/(1 + p|z|), P by
    # Horner's rule. Then h·(1 + erf z)/2 = (h + |h|·erf|z|)/2, which spares np.copysign
    # (7x slower than a multiply here). Every step writes in place: ~20 cheap passes.
    np.abs(h, out=t)
    t *= _ERF_P_HALF_SQRT2
    t += 1.0
    np.reciprocal(t, out=t)
    np.multiply(t, _ERF_A[4], out=poly)
    for a in _ERF_A[3::-1]:
        poly += a
        poly *= t
    np.square(h, out=t)
    t *= -0.5
    np.exp(t, out=t)  # exp(-z²) = exp(-h²/2)
    poly *= t  # 1 - erf|z|
    np.subtract(1.0, poly, out=poly)  # erf|z|
    np.abs(h, out=t)
    poly *= t
    h += poly
    h *= 0.5


class BlasThreads:
    """Caps the BLAS threads of the calling thread only (OpenBLAS ≥ 0.3.27's thread-local
    setting), so an encode never spreads over every core and nothing else in the process is
    affected. A no-op where numpy's BLAS is not such an OpenBLAS (Accelerate, MKL, older builds)."""

    _setter: Any = None
    _looked = False
    _lock = threading.Lock()

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._previous: int | None = None

    @classmethod
    def _find(cls) -> Any:
        with cls._lock:
            if not cls._looked:
                cls._looked = True
                cls._setter = _openblas_local_setter()
            return cls._setter

    def __enter__(self) -> BlasThreads:
        setter = self._find()
        if setter is not None and self.threads > 0:
            self._previous = int(setter(self.threads))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            self._setter(self._previous)
            self._previous = None


def _openblas_local_setter() -> Any:
    """`openblas_set_num_threads_local` from the OpenBLAS numpy's wheel bundles, if it has one."""
    import ctypes
    import glob
    import os

    import numpy as np

    base = os.path.dirname(np.__file__)
    # Linux (auditwheel) and Windows (delvewheel) put it beside the package, macOS inside it.
    patterns = [os.path.join(base + ".libs", "*openblas*"), os.path.join(base, ".dylibs", "*openblas*")]
    for path in sorted(p for pat in patterns for p in glob.glob(pat)):
        try:
            lib = ctypes.CDLL(path)  # already loaded by numpy: this returns its handle
            setter = lib.openblas_set_num_threads_local
        except (OSError, AttributeError):
            continue
        setter.restype = ctypes.c_int
        setter.argtypes = [ctypes.c_int]
        return setter
    return None
