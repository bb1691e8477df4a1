"""PyInstaller runtime hook: point the kernel at the embedding model the bundle carries.

Runs before the app's own code in the frozen build only. The user's own choice (the variable set
in their environment) wins; otherwise the model shipped under <bundle>/embedding/ is used, so the
installed app works offline without ever running scripts/fetch_embedding_model.py.

It also stands in for the OpenTelemetry gRPC span exporter, which the bundle leaves out with
gRPC (17 MB): chromadb imports it at import time but only instantiates it when an OTel
collector endpoint is configured, which ByenatOS never does.
"""

import importlib.abc
import importlib.machinery
import os
import sys
from pathlib import Path

_bundle = Path(getattr(sys, "_MEIPASS", Path(sys.executable).parent))
_model = _bundle / "embedding" / "all-MiniLM-L6-v2"
if _model.is_dir():
    os.environ.setdefault("BYENATOS_EMBED_MODEL_DIR", str(_model))
# The frozen app never reaches the network for LiteLLM's price map: the bundled copy is the one.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

OTLP_GRPC = "opentelemetry.exporter.otlp.proto.grpc"
OTLP_TRACE_EXPORTER = OTLP_GRPC + ".trace_exporter"


class OTLPSpanExporter:
    """What chromadb finds instead of the gRPC exporter: refuses, in words, to be built."""

    def __init__(self, *args, **kwargs):
        raise ImportError(
            "this ByenatOS build has no OpenTelemetry gRPC exporter; unset CHROMA_OTEL_COLLECTION_ENDPOINT"
        )


class _OTLPStandIn(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Last on sys.meta_path: answers only for the exporter's modules, and only when the real
    ones are absent (every other finder has said no by then)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname == OTLP_TRACE_EXPORTER:
            return importlib.machinery.ModuleSpec(fullname, self)
        parent_of_exporter = fullname == OTLP_GRPC or OTLP_GRPC.startswith(fullname + ".")
        if parent_of_exporter and "." in fullname:  # never "opentelemetry" itself
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        if module.__name__ == OTLP_TRACE_EXPORTER:
            module.OTLPSpanExporter = OTLPSpanExporter


sys.meta_path.append(_OTLPStandIn())
