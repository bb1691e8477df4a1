"""The ByenatOS kernel: asyncio only, never Qt. The UI and the CLI sit on top of it."""

import sys as _sys


def _peewee_without_postgres() -> None:
    """Import peewee with its optional PostgreSQL drivers hidden. peewee imports psycopg at
    import time when it is installed (DBOS, the agent engine, brings it), which cost `serve`
    ~40 ms of start-up and ~10 MB of idle memory for a store that is SQLite. Team mode on
    PostgreSQL (a later issue) must drop this."""
    if "peewee" in _sys.modules:
        return
    hidden = [name for name in ("psycopg", "psycopg2", "psycopg2cffi") if name not in _sys.modules]
    for name in hidden:
        _sys.modules[name] = None  # type: ignore[assignment]  # `import name` raises ImportError
    try:
        import peewee  # noqa: F401
    finally:
        for name in hidden:
            if _sys.modules.get(name, 0) is None:
                del _sys.modules[name]


_peewee_without_postgres()
