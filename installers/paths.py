"""Where build inputs live (the repository, the embedding model), shared by the spec and build.py."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
DIST = ROOT / "dist"
BUNDLE = DIST / "byenatos"


def embedding_model_dir() -> Path:
    """The exported all-MiniLM-L6-v2 the kernel uses (the same lookup as at run time)."""
    from app.kernel.personal.embed import default_model_dir

    return default_model_dir()
