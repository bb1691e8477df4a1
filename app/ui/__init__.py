"""The PySide6 desktop app (a later issue). Talks to the kernel only through its public API."""
