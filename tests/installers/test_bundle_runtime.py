"""What the bundle leaves out is never needed: the app's paths run with all of it unimportable.

A subprocess (tests/installers/bundle_probe.py) blocks every module in installers/bundle.py's
EXCLUDES the way a frozen bundle lacks it, then chats through an OpenAI-compatible upstream,
LiteLLM (no Rust core), a tiny GGUF, adds a HiNATA record (the embedding model from the files
the bundle ships, on numpy without onnxruntime; chromadb without gRPC) and imports the UI. The full proof on the built bundle is installers/linux/verify.sh.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app.kernel.personal import embed
from installers import bundle

ROOT = Path(__file__).resolve().parents[2]


def test_the_app_runs_without_anything_the_bundle_leaves_out(tmp_path: Path, tiny_gguf: Path) -> None:
    if not all((embed.default_model_dir() / name).is_file() for name in bundle.EMBEDDING_FILES):
        pytest.skip("embedding model not fetched (scripts/fetch_embedding_model.py)")
    shipped = tmp_path / "embedding"  # only the model files the bundle carries
    shipped.mkdir()
    for name in bundle.EMBEDDING_FILES:
        shutil.copy2(embed.default_model_dir() / name, shipped / name)
    env = {
        **os.environ,
        embed.MODEL_DIR_ENV: str(shipped),
        "BYENATOS_HOME": str(tmp_path / "home"),
        "BYENATOS_SECRETS": "file",
        "PROBE_EXCLUDES": json.dumps(bundle.excludes()),  # what byenatos.spec leaves out here
        "PROBE_GGUF": str(tiny_gguf),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "QT_QPA_PLATFORM": "offscreen",
    }
    run = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "installers" / "bundle_probe.py")],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    line = next((ln for ln in run.stdout.splitlines() if ln.startswith("PROBE ")), None)
    assert run.returncode == 0 and line, run.stderr[-3000:]
    got = json.loads(line.removeprefix("PROBE "))
    rc, out = got["openai"]
    assert rc == 0 and "pong from the fake OpenAI upstream" in out
    rc, out = got["gemini"]
    assert rc == 0 and "pong from the fake Gemini upstream" in out
    rc, out = got["gguf"]
    assert rc == 0 and out.strip()  # random weights: some text
    assert got["hinata"][0] == 0
    rc, out = got["psp"]
    assert rc == 0 and "vectors pending: 0" in out and "hybrid (vectors + full text)" in out
    assert "Socket" in got["views"]
    # LiteLLM's Rust core stays out where LiteLLM runs without it (the locked 1.108), in otherwise
    assert got["litellm_rust_core"] is (bundle.RUST_CORE not in bundle.excludes())
    assert got["grpc"] is False
    # the record's vector came from the numpy runtime, and onnxruntime was never loaded
    assert got["embedding_model"] == f"{embed.MODEL_NAME}-{embed.NUMPY_SUFFIX}"
    assert got["onnxruntime"] is False
    # the app counts tokens with the BPE files that stay; the data the bundle drops is never read
    assert all(n > 0 for n in got["tokens"]) and len(got["bpe_read"]) == 2
    dropped = {Path(p).name for p in bundle.DATA_EXCLUDES["litellm"] if "tokenizers/" in p}
    assert dropped and not dropped & set(got["bpe_read"])
    # the probe really stood in for what chromadb imports (and so does the bundle's runtime hook)
    assert "opentelemetry.exporter.otlp.proto.grpc.trace_exporter" in got["blocked"]
