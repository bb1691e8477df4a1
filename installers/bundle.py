"""What goes into the PyInstaller bundle: one list per concern, read by byenatos.spec and the tests.

Plain data, no PyInstaller import, so tests can check it without building anything.
"""

from __future__ import annotations

NAME = "byenatos"

# Modules imported lazily or by name at run time, which PyInstaller's static analysis cannot see.
HIDDEN_IMPORTS = [
    "onnxruntime",  # the local embedding model (imported inside EmbeddingModel.load)
    "onnxruntime.capi._pybind_state",
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
COLLECT_BINARIES = ["llama_cpp", "onnxruntime", "sqlcipher3"]

# dist-info metadata: `byenatos --version` reads ours; the others check their own at import time.
COPY_METADATA = [
    "byenatos",
    "litellm",
    "chromadb",
    "opentelemetry-sdk",
    "opentelemetry-api",
    "tokenizers",
    "onnxruntime",
    "pydantic",
    "httpx",
    "tiktoken",
    "keyring",
]

# Never in the bundle: torch (hundreds of MB, the app runs models without it), test and lint tools,
# set-up-only packages (onnx exports the model once at set-up; the bundle carries the export).
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
]

# Data files left out of the packages above (globs relative to the package).
DATA_EXCLUDES = {
    "litellm": ["proxy/_experimental/**", "proxy/swagger/**"],  # LiteLLM proxy's web UI: not used
}

# Bundled files dropped by destination prefix: Qt's own UI translations (the app is English-only).
DROP_PREFIXES = ["PySide6/Qt/translations/"]

# The Qt platform plugins a Linux desktop needs (X11 and Wayland) plus offscreen for headless runs.
QT_PLATFORMS_LINUX = ["xcb", "wayland", "offscreen", "minimal"]

# The int8 graph only (22 MB; the fp32 one is 87 MB): the kernel's default precision.
EMBEDDING_FILES = ["model.int8.onnx", "tokenizer.json", "meta.json"]
