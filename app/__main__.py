"""`byenatos` — the desktop app and the command line."""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int:
    # pydantic scans every installed package's entry points for plugins the first time a
    # model is built (~0.1 s of start-up); ByenatOS uses none.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    from app.cli.main import run

    return run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
