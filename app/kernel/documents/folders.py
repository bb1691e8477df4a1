"""The folders the user picked, kept in `documents.json` beside `settings.json`.

Written like the settings (`app.kernel.config.save_settings`): validated by pydantic, replaced
atomically, a broken file reported rather than fatal. Folders never overlap: a folder inside
one already indexed (or holding one) is refused, so no file is indexed twice.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field, ValidationError

from app.kernel.errors import BadRequestError, ConfigError, NotFoundError

if TYPE_CHECKING:
    from app.kernel.config import Paths

Access = Literal["private", "shared", "public"]
FILE_NAME = "documents.json"


class FolderEntry(BaseModel):
    path: str  # absolute, resolved
    # The records' access: private (the user, and agents' file search), shared (also apps with
    # hinata:read, in their PSP), public.
    access: Access = "private"
    added_at: float = Field(default_factory=time.time)


class DocumentsConfig(BaseModel):
    folders: list[FolderEntry] = Field(default_factory=list)
    # Larger files are skipped with a reason (never opened): a 2 GB video renamed .txt or a
    # disk image must not be read into memory.
    max_file_mb: float = Field(64.0, gt=0, le=4096)
    watch: bool = True  # keep the index in step while ByenatOS runs


def normalize(path: str | Path) -> Path:
    return Path(path).expanduser().resolve(strict=False)


def _inside(child: Path, parent: Path) -> bool:
    return child != parent and child.is_relative_to(parent)


class FolderRegistry:
    def __init__(self, paths: Paths) -> None:
        self.file = paths.config_dir / FILE_NAME

    def load(self) -> DocumentsConfig:
        if not self.file.exists():
            return DocumentsConfig()
        try:
            return DocumentsConfig.model_validate(json.loads(self.file.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, ValidationError, UnicodeDecodeError) as e:
            raise ConfigError(f"documents file {self.file} is not valid: {e}") from None

    def save(self, config: DocumentsConfig) -> None:
        self.file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.file.with_suffix(".json.tmp")
        tmp.write_text(config.model_dump_json(indent=2), encoding="utf-8")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, self.file)

    def folders(self) -> list[FolderEntry]:
        return self.load().folders

    def add(self, path: str | Path, access: Access = "private") -> tuple[FolderEntry, str]:
        """(the entry, "added" | "updated" | "unchanged"). Raises BadRequestError for a path that
        is not a folder or overlaps one already indexed."""
        if not str(path).strip():
            raise BadRequestError("give a folder to index")
        if not Path(path).expanduser().is_absolute():
            # The daemon's working folder means nothing to whoever asks: the CLI sends absolute paths.
            raise BadRequestError(f"{path}: give the folder's absolute path")
        folder = normalize(path)
        if folder == Path(folder.anchor):
            raise BadRequestError(f"{folder} is a whole disk: pick the folders with your documents in it")
        if not folder.exists():
            raise BadRequestError(f"{path}: no such folder")
        if not folder.is_dir():
            raise BadRequestError(f"{path} is a file, not a folder (documents are indexed by folder)")
        if not os.access(folder, os.R_OK | os.X_OK):
            raise BadRequestError(f"{path}: permission denied (ByenatOS cannot list this folder)")
        config = self.load()
        for entry in config.folders:
            known = Path(entry.path)
            if known == folder:
                if entry.access == access:
                    return entry, "unchanged"
                entry.access = access
                self.save(config)
                return entry, "updated"
            if _inside(folder, known):
                raise BadRequestError(f"{folder} is indexed already: it is inside {known}")
            if _inside(known, folder):
                raise BadRequestError(
                    f"{folder} holds {known}, which is indexed already; remove that one first "
                    f"(`byenatos docs remove {known}`)"
                )
        entry = FolderEntry(path=str(folder), access=access)
        config.folders.append(entry)
        self.save(config)
        return entry, "added"

    def remove(self, path: str | Path) -> FolderEntry:
        folder = normalize(path)
        config = self.load()
        for i, entry in enumerate(config.folders):
            if Path(entry.path) == folder:
                del config.folders[i]
                self.save(config)
                return entry
        known = ", ".join(e.path for e in config.folders) or "none"
        raise NotFoundError(f"{folder} is not an indexed folder (indexed: {known})")

    def clear(self) -> None:
        config = self.load()
        config.folders = []
        self.save(config)


def configured(paths: Paths) -> bool:
    """Whether any folder is configured (cheap: the kernel asks at every start)."""
    try:
        return bool(FolderRegistry(paths).folders())
    except ConfigError:
        return True  # the service starts and reports the broken file in its status
