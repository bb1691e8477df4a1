"""The frozen app's entry point: the same `byenatos` command the wheel installs."""

import sys

from app.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
