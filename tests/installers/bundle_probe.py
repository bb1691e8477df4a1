"""Run the app's real paths with every module the bundle leaves out made unimportable.

    python tests/installers/bundle_probe.py   (env: PROBE_EXCLUDES, PROBE_GGUF; BYENATOS_HOME set)

What installers/bundle.py excludes is blocked here the way a frozen bundle lacks it (the runtime
hook's stand-ins answer where the bundle has them), then the CLI does what verify.sh does against
the installed app: chat through an OpenAI-compatible upstream (pass-through), through LiteLLM's
Gemini route (without LiteLLM's Rust core), through a tiny GGUF in llama.cpp, add a HiNATA record
whose vector the local embedding model computes into chromadb (from the files the bundle ships,
on numpy: onnxruntime is left out), and import the whole UI. Prints one
JSON object of results; an import of anything excluded fails loudly instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.abc
import io
import json
import os
import runpy
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
EXCLUDED: list[str] = json.loads(os.environ["PROBE_EXCLUDES"])
BLOCKED: list[str] = []


class LeftOut(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == x or name.startswith(x + ".") for x in EXCLUDED):
            BLOCKED.append(name)
            return None  # the frozen importer has no such module: the next finders are asked
        return None


class Unimportable(importlib.abc.MetaPathFinder):
    """After the runtime hook's stand-ins: nothing else may provide an excluded module."""

    def find_spec(self, name, path=None, target=None):
        if any(name == x or name.startswith(x + ".") for x in EXCLUDED):
            raise ModuleNotFoundError(f"{name} is left out of the bundle", name=name)
        return None


runpy.run_path(str(ROOT / "installers" / "rthook_byenatos.py"))
stand_ins = sys.meta_path.pop()  # the hook appended them; in a bundle every finder before misses
sys.meta_path[:0] = [LeftOut(), stand_ins, Unimportable()]

import tiktoken.load  # noqa: E402

from app.cli.main import run  # noqa: E402
from installers.linux import fake_upstream as fake  # noqa: E402

# Which of litellm's bundled BPE files tiktoken reads (by the name they are cached under).
BPE_READ: list[str] = []
_read_file_cached = tiktoken.load.read_file_cached


def _recording_read(blobpath: str, expected_hash: str | None = None) -> bytes:
    BPE_READ.append(hashlib.sha1(blobpath.encode()).hexdigest())
    return _read_file_cached(blobpath, expected_hash)


tiktoken.load.read_file_cached = _recording_read


def cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = run(list(argv))
    return rc, out.getvalue()


results: dict[str, object] = {}
with fake.FakeCloud() as cloud:
    os.environ["PROBE_GEMINI_KEY"] = fake.GEMINI_KEY
    cli("models", "add", "up", "--kind", "openai", "--url", f"{cloud.url}/v1")
    results["openai"] = cli("chat", "-m", f"up/{fake.OPENAI_MODEL}", "ping")
    cli("models", "add", "gemini", "--url", f"{cloud.url}/v1beta", "--key-env", "PROBE_GEMINI_KEY",
        "--model", fake.GEMINI_MODEL, "--no-check")  # fmt: skip
    results["gemini"] = cli("chat", "-m", f"gemini/{fake.GEMINI_MODEL}", "ping")
models_dir = Path(os.environ["BYENATOS_HOME"]) / "data" / "models"
gguf = os.environ.get("PROBE_GGUF")
if gguf:
    shutil.copy2(gguf, models_dir / "probe-tiny.gguf")
    cli("models", "scan")
    results["gguf"] = cli("chat", "-m", "local/probe-tiny", "--max-tokens", "4", "ping")
results["hinata"] = cli("hinata", "add", "I prefer short answers", "--id", "probe-1")
# The app's own token counting, one model of each family it counts (o200k, cl100k, Anthropic).
from app.kernel import tokens  # noqa: E402
from app.kernel.canonical import ModelSpec  # noqa: E402

results["tokens"] = [
    tokens.count_tokens(ModelSpec(id=f"p/{name}", name=name, provider="p"), "count these few words")
    for name in ("gpt-4o-mini", "gpt-3.5-turbo", "claude-3-5-haiku")
]
results["psp"] = cli("psp", "show")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
import app.ui.about  # noqa: E402
import app.ui.main  # noqa: E402, F401
from app.ui.views import view_classes  # noqa: E402

results["views"] = [cls.title for cls in view_classes()]
# Which runtime computed the record's vector (the vector index records the model's name).
markers = list(Path(os.environ["BYENATOS_HOME"]).rglob("embedding-model.txt"))
results["embedding_model"] = markers[0].read_text().strip() if markers else None
results["onnxruntime"] = "onnxruntime" in sys.modules
results["bpe_read"] = sorted(set(BPE_READ))
results["litellm_rust_core"] = "litellm.rust_bridge._native" in sys.modules
results["grpc"] = "grpc" in sys.modules
results["blocked"] = sorted(set(BLOCKED))
print("PROBE " + json.dumps(results))
