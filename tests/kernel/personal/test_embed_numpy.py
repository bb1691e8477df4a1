"""The numpy runtime of the local embedding model: the float model's numbers from int8 weights,
the same batching contract as onnxruntime, and no onnxruntime (or torch) anywhere on its path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from app.kernel.personal import embed
from app.kernel.personal.bert_numpy import BertEncoder, BlasThreads
from app.kernel.personal.embed import EmbeddingModel, EmbeddingModelMissing
from app.kernel.personal.embed_weights import WEIGHTS_FILE, convert

from .conftest import CHAT, NOTES
from .tiny_bert import write_tiny_bert

ROOT = Path(__file__).resolve().parents[3]
MODEL_DIR = embed.default_model_dir()

needs_weights = pytest.mark.skipif(
    not ((MODEL_DIR / WEIGHTS_FILE).is_file() and (MODEL_DIR / "tokenizer.json").is_file()),
    reason="the numpy embedding weights are not installed: run scripts/fetch_embedding_model.py (./test.sh does)",
)
needs_fp32_graph = pytest.mark.skipif(
    not (MODEL_DIR / "model.onnx").is_file() or not embed.onnxruntime_available(),
    reason="the fp32 ONNX graph (scripts/fetch_embedding_model.py) and onnxruntime are the reference",
)

# Short, long, punctuation-only, non-English, code, numbers, repeated words, the empty text.
SENTENCES = [
    "",
    "ok",
    "?",
    "hello world",
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "what did I note about the billing migration?",
    "Dr. Okafor said my vitamin D is low; take 2000 IU every morning with breakfast.",
    "I'm allergic to penicillin — found out after the rash in 2019.",
    "Zürich café ☕ 東京 naïve résumé",
    "def encode(self, texts: list[str]) -> np.ndarray: return self.run(ids, lengths)",
    "1234 5678 90.12 3e-4 0xFF",
    "buffalo " * 40,
    "The quarterly report is due on Friday, and the numbers for the billing migration still do not "
    "add up: finance wants the breakdown per region, per product line and per month, with the "
    "one-off costs of the new payment provider shown apart from the running ones.",
    "Remember: my Spanish lessons moved to Thursdays at 18:00 with Ana, bring the workbook.",
]


@pytest.fixture(scope="module")
def numpy_model() -> EmbeddingModel:
    return EmbeddingModel.load(runtime="numpy")


@pytest.fixture(scope="module")
def fp32_model() -> EmbeddingModel:
    return EmbeddingModel.load(runtime="onnxruntime", precision="fp32")


@needs_weights
@needs_fp32_graph
def test_each_sentence_is_within_cosine_0_999_of_the_float_model(numpy_model, fp32_model):
    fast, exact = numpy_model.encode(SENTENCES), fp32_model.encode(SENTENCES)
    cosines = (fast * exact).sum(axis=1)
    worst = int(cosines.argmin())
    assert cosines.min() >= 0.999, f"{SENTENCES[worst]!r}: {cosines[worst]:.5f}"
    # and the geometry a search relies on survives: paraphrases close, unrelated texts apart
    assert float(fast[4] @ fast[5]) > 0.7 and float(fast[4] @ fast[6]) < 0.2
    assert numpy_model.name != fp32_model.name  # vectors of different runtimes never mix


@needs_weights
def test_batches_give_each_texts_own_vector_in_the_order_given(numpy_model):
    together = numpy_model.encode(SENTENCES)
    alone = np.stack([numpy_model.encode([t])[0] for t in SENTENCES])
    assert np.allclose(together, alone, atol=1e-5)  # dynamic padding changes nothing
    backwards = numpy_model.encode(SENTENCES[::-1])
    assert np.allclose(backwards, together[::-1], atol=1e-5)
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    assert together.dtype == np.float32 and together.shape == (len(SENTENCES), numpy_model.dim)


@needs_weights
def test_no_texts_give_no_rows_and_an_empty_text_a_unit_vector(numpy_model):
    assert numpy_model.encode([]).shape == (0, numpy_model.dim)
    (v,) = numpy_model.encode([""])
    assert abs(float(np.linalg.norm(v)) - 1.0) < 1e-5


@needs_weights
def test_long_texts_are_truncated_at_256_tokens(numpy_model):
    assert numpy_model.max_tokens == 256
    # "x " * 254 is exactly 256 tokens with [CLS] and [SEP]; whatever follows is cut off
    full = numpy_model.encode(["x " * 254])[0]
    longer = numpy_model.encode(["x " * 400, "x " * 254 + "and a tail that changes the meaning entirely"])
    assert np.allclose(longer, full, atol=1e-5)
    assert not np.allclose(numpy_model.encode(["x " * 253 + "tail"])[0], full, atol=1e-3)


def test_the_encoder_refuses_more_tokens_than_its_positions(tmp_path):
    from app.kernel.personal.embed_weights import read_safetensors

    out = convert(write_tiny_bert(tmp_path / "src", max_tokens=16), tmp_path / "out")
    assert read_safetensors(out)[0]["emb.position"].shape == (16, 64)  # of 32: the rest never used
    encoder = BertEncoder.load(out)
    with pytest.raises(ValueError, match="at most 16"):
        encoder(np.ones((1, 17), dtype=np.int64), np.array([17]))


def test_the_numpy_encoder_computes_what_the_onnx_graph_computes(tmp_path):
    """A tiny random BERT whose weights int8 stores exactly: any difference is the maths."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from app.kernel.personal.embed_weights import read_safetensors
    from app.kernel.personal.onnx_export import build_bert_encoder

    src = write_tiny_bert(tmp_path / "src", exact_int8=True)
    encoder = BertEncoder.load(convert(src, tmp_path / "out"))
    weights, _ = read_safetensors(src / "model.safetensors")
    graph = build_bert_encoder(weights, json.loads((src / "config.json").read_text()))
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(5)
    lengths = np.array([2, 9, 5, 12, 1])
    ids = np.zeros((len(lengths), lengths.max()), dtype=np.int64)
    for row, n in enumerate(lengths):
        ids[row, :n] = rng.integers(1, 40, n)
    mask = (np.arange(ids.shape[1]) < lengths[:, None]).astype(np.int64)
    (expected,) = session.run(["sentence_embedding"], {"input_ids": ids, "attention_mask": mask})
    assert np.allclose(encoder(ids, lengths), expected, atol=2e-5)


def test_converting_again_from_the_same_source_is_a_no_op(tmp_path):
    src = write_tiny_bert(tmp_path / "src")
    out = convert(src, tmp_path / "out")
    first = out.read_bytes()
    stamp = (out.stat().st_ino, out.stat().st_mtime_ns)
    assert convert(src, tmp_path / "out") == out
    assert (out.stat().st_ino, out.stat().st_mtime_ns) == stamp  # not even rewritten
    out.unlink()
    assert convert(src, tmp_path / "out").read_bytes() == first  # deterministic bytes
    write_tiny_bert(tmp_path / "src", seed=2)  # new weights: converted again
    assert convert(src, tmp_path / "out").read_bytes() != first


def test_a_conversion_that_fails_midway_leaves_the_previous_file(tmp_path, monkeypatch):
    src = write_tiny_bert(tmp_path / "src")
    out = convert(src, tmp_path / "out")
    before = out.read_bytes()
    write_tiny_bert(tmp_path / "src", seed=3)

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        convert(src, tmp_path / "out")
    assert out.read_bytes() == before
    assert sorted(p.name for p in out.parent.iterdir()) == [WEIGHTS_FILE]  # no temporary file left


def test_a_damaged_weights_file_is_a_clear_error_and_set_up_rewrites_it(tmp_path):
    from app.kernel.personal.embed_weights import converted_from

    src = write_tiny_bert(tmp_path / "src")
    out = convert(src, tmp_path / "out")
    (tmp_path / "out" / "tokenizer.json").write_bytes((src / "tokenizer.json").read_bytes())
    assert EmbeddingModel.load(tmp_path / "out", runtime="numpy").encode(["w1 w2"]).shape == (1, 64)
    out.write_bytes(out.read_bytes()[: out.stat().st_size // 2])  # a copy cut short
    with pytest.raises(EmbeddingModelMissing, match=r"cannot be read.*fetch_embedding_model\.py"):
        EmbeddingModel.load(tmp_path / "out", runtime="numpy")
    assert converted_from(out) is None  # so set-up writes it again
    out.write_bytes(b"\x00garbage")
    with pytest.raises(EmbeddingModelMissing, match="cannot be read"):
        EmbeddingModel.load(tmp_path / "out", runtime="numpy")
    assert converted_from(out) is None
    assert converted_from(convert(src, tmp_path / "out")) is not None


def _set_up_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "fetch_embedding_model", ROOT / "scripts" / "fetch_embedding_model.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_set_up_adds_the_numpy_weights_to_a_folder_that_has_only_the_onnx_graphs(tmp_path):
    script = _set_up_script()
    old = tmp_path / "cache"  # what set-up left before the numpy runtime existed
    old.mkdir()
    for name in ("model.onnx", "model.int8.onnx", "tokenizer.json", "meta.json"):
        (old / name).write_text(name)
    assert script.missing_parts(old, onnx=True) == ["numpy weights"]
    assert script.missing_parts(old, onnx=False) == ["numpy weights"]
    script.prepare(write_tiny_bert(tmp_path / "src"), old, ["numpy weights"])
    assert script.missing_parts(old, onnx=True) == []
    assert (old / "model.onnx").read_text() == "model.onnx"  # the rest untouched
    empty = tmp_path / "empty"
    assert script.missing_parts(empty, onnx=False) == ["tokenizer", "numpy weights"]
    script.prepare(write_tiny_bert(tmp_path / "src"), empty, ["tokenizer", "numpy weights"])
    assert json.loads((empty / "meta.json").read_text())["dim"] == 64
    assert script.missing_parts(empty, onnx=False) == []


PROBE = """
import importlib.abc, json, sys
class LeftOut(importlib.abc.MetaPathFinder):  # as in the bundle: onnxruntime is not there
    def find_spec(self, name, path=None, target=None):
        if name == "onnxruntime" or name.startswith("onnxruntime."):
            raise ModuleNotFoundError(name, name=name)
if sys.argv[1] == "blocked":
    sys.meta_path.insert(0, LeftOut())
from app.kernel.personal import embed
lazy = "numpy" not in sys.modules
model = embed.EmbeddingModel.load()
vecs = model.encode(["hello world", "a second, longer sentence"])
print(json.dumps({"lazy": lazy, "name": model.name, "shape": list(vecs.shape),
                  "loaded": sorted(m for m in ("onnxruntime", "torch", "onnx") if m in sys.modules)}))
"""


@needs_weights
@pytest.mark.parametrize("how", ["blocked", "chosen"])
def test_the_numpy_path_never_imports_onnxruntime(how):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop(embed.RUNTIME_ENV, None)
    if how == "chosen":  # installed, but the user picked numpy
        env[embed.RUNTIME_ENV] = "numpy"
    run = subprocess.run(
        [sys.executable, "-c", PROBE, how], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-2000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got == {
        "lazy": True,  # importing embed.py loads no numpy (start-up path)
        "name": f"{embed.MODEL_NAME}-{embed.NUMPY_SUFFIX}",
        "shape": [2, 384],
        "loaded": [],
    }


def test_an_unknown_runtime_is_a_clear_error(tmp_path, monkeypatch):
    convert(write_tiny_bert(tmp_path / "src"), tmp_path / "out")
    (tmp_path / "out" / "tokenizer.json").write_bytes((tmp_path / "src" / "tokenizer.json").read_bytes())
    monkeypatch.setenv(embed.RUNTIME_ENV, "tensorflow")
    with pytest.raises(EmbeddingModelMissing, match="onnxruntime, numpy"):
        EmbeddingModel.load(tmp_path / "out")


def test_blas_threads_are_capped_for_the_calling_thread_only_and_restored():
    setter = BlasThreads._find()
    if setter is None:
        pytest.skip("numpy's BLAS here has no thread-local thread count")
    before = setter(3)
    setter(before)
    with BlasThreads(1):
        inside = setter(1)
    assert inside == 1 and setter(before) == before


@needs_weights
@needs_fp32_graph
async def test_switching_runtime_re_embeds_every_record(kernel, monkeypatch):
    from app.kernel.personal.service import PersonalService

    async def restart() -> PersonalService:
        await kernel.personal.stop()
        kernel.personal = PersonalService(kernel.paths, kernel.secrets, kernel.events, chat=kernel.chat)
        await kernel.personal.start()
        await kernel.personal.ready()
        return kernel.personal

    monkeypatch.setenv(embed.RUNTIME_ENV, "onnxruntime")
    personal = await restart()
    await personal.add([{"highlight": f"canoe trip {i}"} for i in range(3)], NOTES)
    await personal.wait_vectors()
    marker = personal.vector_dir / "embedding-model.txt"
    assert marker.read_text() == f"{embed.MODEL_NAME}-int8"
    monkeypatch.setenv(embed.RUNTIME_ENV, "numpy")  # e.g. the same data opened by the installed app
    personal = await restart()
    personal.want_vectors()
    await personal.wait_vectors()
    assert marker.read_text() == f"{embed.MODEL_NAME}-{embed.NUMPY_SUFFIX}"
    assert personal.vectors.count() == 3 and (await personal.status())["vector_backlog"] == 0
    psp = await personal.build_psp(CHAT, "canoe", budget=300)
    assert psp.retrieval == "hybrid"
