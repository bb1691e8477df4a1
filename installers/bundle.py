"""What goes into the PyInstaller bundle: one list per concern, read by byenatos.spec and the tests.

Plain data, no PyInstaller import, so tests can check it without building anything; excludes()
adjusts EXCLUDES to the LiteLLM installed.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import subprocess
import sys

NAME = "byenatos"

# Modules imported lazily or by name at run time, which PyInstaller's static analysis cannot see.
HIDDEN_IMPORTS = [
    "tokenizers",  # the embedding model's tokenizer and Anthropic token counts
    "tiktoken_ext.openai_public",  # tiktoken finds its encodings through this plugin package
    "tiktoken_ext",
    "sqlcipher3",  # the encrypted personal database
    "keyring.backends",  # keyring picks its backend by entry point at run time
    "qasync",
    "uvloop",  # optional faster loop for `serve` (Linux/macOS only; absent on Windows)
    "PySide6.QtSvg",  # the SVG icons in resources/icons
]

# Packages whose every submodule is imported by name (plugins, lazy imports, string lookups).
COLLECT_SUBMODULES = ["app", "keyring.backends", "pynput"]

# Packages taken whole (modules, data, native libraries): chromadb loads its parts by dotted name.
COLLECT_ALL = ["chromadb"]

# Packages whose non-Python files (JSON maps, tokenizer files, prompt templates) must ship.
COLLECT_DATA = ["litellm", "tiktoken", "certifi"]

# Packages whose native libraries live next to their modules and are loaded with ctypes.
COLLECT_BINARIES = ["llama_cpp", "sqlcipher3"]

# dist-info metadata: `byenatos --version` reads ours; the others check their own at import time.
COPY_METADATA = [
    "byenatos",
    "litellm",
    "chromadb",
    "opentelemetry-sdk",
    "opentelemetry-api",
    "tokenizers",
    "pydantic",
    "httpx",
    # The OpenAI SDK's HTTP client (LiteLLM imports the SDK): both read their own version from
    # their metadata at import time.
    "httpx2",
    "httpcore2",
    "tiktoken",
    "keyring",
]

# LiteLLM's Rust core (36 MB in 1.108, 45 MB in 1.110): its catalog routes chat completions and
# embeddings (the only calls the litellm driver makes) to Python; only OCR and Bedrock
# transcription require Rust, and LiteLLM up to 1.108 falls back to Python wherever the extension
# is missing (rust_bridge.loader). LiteLLM 1.109 and later import it at start-up, so for those
# excludes() keeps it in the bundle (uv.lock holds LiteLLM at 1.108: docs/dev/dependencies.md).
RUST_CORE = "litellm.rust_bridge._native"

# Never in the bundle: torch (hundreds of MB, the app runs models without it), test and lint tools,
# set-up-only packages (onnx exports the ONNX graphs at set-up; the bundle carries none of them).
EXCLUDES = [
    "torch",
    "torchvision",
    "tensorflow",
    "jax",
    "transformers",
    "sentence_transformers",
    "pytest",
    "_pytest",
    "pytestqt",
    "hypothesis",
    "ruff",
    "importlinter",
    "grimp",
    "gguf",
    "onnx",
    "tkinter",
    "matplotlib",
    "IPython",
    "jupyter",
    "notebook",
    "llama_cpp.server",  # llama.cpp's own OpenAI server (uvicorn/fastapi); the app loads models in-process
    # AWS SDK (28 MB of service JSON): only LiteLLM's Bedrock/SageMaker routes use it, imported lazily.
    "boto3",
    "botocore",
    "s3transfer",
    "awscrt",
    "hf_xet",  # Hugging Face's xet download backend; the app never downloads through huggingface_hub
    RUST_CORE,  # LiteLLM's Rust core, where LiteLLM runs without it (see RUST_CORE above)
    # gRPC (17 MB): chromadb imports the OpenTelemetry gRPC span exporter at import time but only
    # builds one when CHROMA_OTEL_COLLECTION_ENDPOINT is set; the runtime hook stands in for it.
    "grpc",
    "opentelemetry.exporter.otlp.proto.grpc",
    "chromadb.test",  # chromadb's own test suite and its data
    "chromadb.server",  # chromadb's HTTP server (FastAPI); the app opens a PersistentClient in-process
    "chromadb.cli",
    # huggingface_hub and its fsspec: only `from_pretrained` downloads use them; the app loads the
    # bundled model from files and never downloads through them.
    "huggingface_hub",
    "fsspec",
    # httpx's optional command-line client (`httpx` in a shell) pulls these in; httpx itself
    # imports them in a try/except and works without. (click ships: DBOS and the MCP SDK import it.)
    "rich",
    "pygments",
    "markdown_it",
    "mdurl",
    # websockets serves only LiteLLM's realtime audio routes. (uvicorn ships: the MCP SDK imports
    # it with any of its modules; watchfiles ships: the document index watches folders with it.)
    "websockets",
    # onnxruntime (29.5 MB): the bundle runs the embedding model on numpy instead (bert_numpy.py
    # over model.int8.safetensors; numpy and its OpenBLAS ship anyway), which embed.py picks when
    # onnxruntime cannot be imported. chromadb lists onnxruntime as a dependency but imports it
    # only in its default embedding function, which ByenatOS never uses (it hands chromadb the
    # vectors). The numpy runtime is slower (bench/embed_runtime.py: a short query ~7 ms against
    # ~2 ms, catch-up ~0.3x) and closer to the float model (cosine >= 0.999 against ~0.96).
    "onnxruntime",
    # ml_dtypes: only onnxruntime's and onnx's tools import it.
    "ml_dtypes",
    # Not dependencies of the app at all (neither pyproject's dependencies nor the gui/local
    # extras pull them in, so a pip install of ByenatOS runs without them): the build venv has
    # them for the dev extra (the official-SDK tests, llama.cpp's test server), and PyInstaller
    # finds them through optional imports. The Anthropic SDK (3 MB; docstring_parser is its own
    # dependency) is imported only by LiteLLM's Helicone logging callback, which ByenatOS never
    # registers (its Anthropic driver speaks the API itself); FastAPI/Starlette only by LiteLLM's
    # proxy-server modules. (httpx2 and httpcore2 were left out with the Anthropic SDK until the
    # OpenAI SDK, which LiteLLM imports, and huggingface_hub moved to them: now they ship.)
    "anthropic",
    "docstring_parser",
    "fastapi",  # (Starlette ships: the MCP SDK imports it with any of its modules)
    # llama.cpp's multimodal bindings (and, in DROP_FILES_LINUX, the 1.7 MB libmtmd they load):
    # only the vision chat handlers import them, given a projector (mmproj) file; ByenatOS skips
    # projector GGUFs and never passes a chat handler.
    "llama_cpp.mtmd_cpp",
    # setuptools' pkg_resources: only litellm's fallback for Pythons without importlib.resources
    # imports it; bundled, PyInstaller would also import it at every start-up (pyi_rth_pkgres).
    "pkg_resources",
    # numpy's random generators, FFT and Fortran wrapper generator: nothing the app runs calls them
    # (vectors need numpy's core and linalg.norm only).
    "numpy.random",
    "numpy.fft",
    "numpy.f2py",
    "PySide6.QtDBus",  # the Python binding only; Qt's own libQt6DBus stays (QtGui links it)
]

P50K_BASE_FILE = "litellm_core_utils/tokenizers/ec7223a39ce59f226a68acc30dc1af2788490e15"

# Data files left out of the packages above (globs relative to the package).
DATA_EXCLUDES = {
    # LiteLLM's proxy server data (web UI, OpenAPI snapshots, guardrail word lists, MCP registry):
    # read only by litellm.proxy's server modules, never by the SDK calls the driver makes.
    # Its docs and type stubs are not read at run time either.
    "litellm": [
        "proxy/**",
        "**/*.md",
        "**/*.pyi",
        # tiktoken's p50k_base BPE file (0.8 MB; files are named by the SHA-1 of their URL):
        # LiteLLM reads it only in text_completion() for Hugging Face token-list prompts; the
        # driver calls acompletion()/aembedding(), and app/kernel/tokens.py counts with
        # o200k_base and cl100k_base (the two files that stay, with anthropic_tokenizer.json).
        P50K_BASE_FILE,
    ],
}

# Bundled files dropped by destination prefix.
DROP_PREFIXES = [
    "PySide6/Qt/translations/",  # Qt's own UI translations (the app is English-only)
    "chromadb/test/",  # chromadb's test fixtures (collected with the rest of chromadb's data)
]

# Bundled files dropped by glob on the destination: install records and software bills of
# materials of the bundled wheels (importlib.metadata reads METADATA for versions, never these).
# Type stubs and notebooks are for editors and people, never read at run time either.
DROP_GLOBS = ["*.dist-info/RECORD", "*.dist-info/sboms/*", "*.pyi", "*.ipynb"]

# Linux only, after the build (installers/prune.py, relative to _internal/): Qt plugins for
# platforms and features the app never uses. Libraries that only these need go with them.
DROP_FILES_LINUX = [
    # Embedded-device platforms (EGLFS/KMS, framebuffer, VNC, Vulkan display) and their input
    # plugins: a desktop session runs xcb or wayland (kept, with offscreen and minimal).
    "PySide6/Qt/plugins/platforms/libqeglfs.so",
    "PySide6/Qt/plugins/platforms/libqlinuxfb.so",
    "PySide6/Qt/plugins/platforms/libqvnc.so",
    "PySide6/Qt/plugins/platforms/libqvkkhrdisplay.so",
    "PySide6/Qt/plugins/platforms/libqminimalegl.so",
    "PySide6/Qt/plugins/egldeviceintegrations/*",
    "PySide6/Qt/plugins/generic/*",
    # The GTK3 platform theme (and, with it, the GTK/cairo/pango/gdk-pixbuf stack it links): the
    # app draws its own palette and follows the desktop's dark mode through the xdg-desktop-portal
    # theme, which stays.
    "PySide6/Qt/plugins/platformthemes/libqgtk3.so",
    # QtNetwork serves only the single-instance QLocalServer: no TLS, no network-reachability.
    "PySide6/Qt/plugins/tls/*",
    "PySide6/Qt/plugins/networkinformation/*",
    # Image formats: every bundled image is SVG (PNG is built into QtGui).
    "PySide6/Qt/plugins/imageformats/libqgif.so",
    "PySide6/Qt/plugins/imageformats/libqicns.so",
    "PySide6/Qt/plugins/imageformats/libqico.so",
    "PySide6/Qt/plugins/imageformats/libqjpeg.so",
    "PySide6/Qt/plugins/imageformats/libqtga.so",
    "PySide6/Qt/plugins/imageformats/libqtiff.so",
    "PySide6/Qt/plugins/imageformats/libqwbmp.so",
    "PySide6/Qt/plugins/imageformats/libqwebp.so",
    # llama.cpp's multimodal library, loaded only by llama_cpp.mtmd_cpp (left out: see EXCLUDES).
    "llama_cpp/lib/libmtmd.so*",
]

# Libraries never removed as "only needed by a dropped plugin" (they are also dlopen()ed by name).
# llama-cpp-python loads libllama and the ggml libraries with ctypes; the dropped libmtmd was
# the only file that also linked them, so without this they would look like its orphans.
KEEP_LIBS_LINUX: list[str] = ["llama_cpp/lib/*"]

# The Qt platform plugins a Linux desktop needs (X11 and Wayland) plus offscreen for headless runs.
QT_PLATFORMS_LINUX = ["xcb", "wayland", "offscreen", "minimal"]

# The numpy runtime's int8 weights (24 MB), the tokenizer and meta.json; no ONNX graph (the
# bundle has no onnxruntime to run one).
EMBEDDING_FILES = ["model.int8.safetensors", "tokenizer.json", "meta.json"]


def excludes() -> list[str]:
    """EXCLUDES for the packages installed here: what byenatos.spec and the runtime test leave out.

    All of EXCLUDES, but LiteLLM's Rust core where the installed LiteLLM cannot be imported
    without it (1.109 and later): then the bundle carries it rather than lose the LiteLLM routes.
    """
    if litellm_imports_without_rust_core():
        return list(EXCLUDES)
    return [m for m in EXCLUDES if m != RUST_CORE]


@functools.cache
def litellm_imports_without_rust_core() -> bool:
    """Whether `import litellm` works with its Rust core unimportable (in a fresh interpreter).

    True where LiteLLM is not installed at all (nothing to carry then).
    """
    if importlib.util.find_spec("litellm") is None:
        return True
    probe = (
        "import importlib.abc, sys\n"
        "class Blocked(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name == {RUST_CORE!r}:\n"
        "            raise ModuleNotFoundError(name, name=name)\n"
        "sys.meta_path.insert(0, Blocked())\n"
        "import litellm\n"
    )
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    run = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, env=env, timeout=300, check=False
    )
    return run.returncode == 0
