"""The one way the planner writes files: launch files (`--emit`), the report, the capacity plot.

Everything is rendered before this is called; here each file goes to a temporary file in its
target folder and is renamed into place (rename(2) is atomic within one file system), so:

- a command that fails writes nothing: no half report, no folder it created left behind;
- a symlink already at a target name is replaced by the new file, never followed, so
  `report.html -> ../elsewhere/file` cannot overwrite `file`, and a `torchrun.sh` link's target
  is never made executable (the mode is set on the temporary file before the rename);
- a reader never sees a partly written file.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from planner.spec.errors import InputError
from planner.spec.reading import path_kind

_TEMP_PREFIX = ".planner-"
"""Temporary names are short and fixed in form, so a target name near the file system's limit
(255 bytes) fails at the rename, cleanly, not at the temporary file."""


def write_files(folder: str | Path, files: Mapping[str, bytes], *, executable: tuple[str, ...] = (),
                field: str = "--out") -> list[Path]:
    """Write `files` (name -> bytes) into `folder`, created with its missing parents, atomically
    file by file; names in `executable` get mode 0755, the rest 0666 less the umask. Returns the
    paths written. On any error nothing new is left behind (temporary files and the folders this
    call created are removed) and InputError names `folder` and `field`."""
    folder = Path(folder)
    if path_kind(folder) not in (None, "directory"):
        raise InputError("exists and is not a directory", file=str(folder), field=field)
    for name in files:
        if path_kind(folder / name, follow=False) == "directory":
            raise InputError(f"{name} exists there and is a folder; nothing was written", file=str(folder),
                             field=field)
    created: list[Path] = []
    temporary: dict[str, str] = {}
    try:
        created = _make_folders(folder)
        umask = _umask()
        for name, data in files.items():
            temporary[name] = _write_temporary(folder, data, 0o755 if name in executable else 0o666 & ~umask)
        written = []
        for name, temp in list(temporary.items()):
            os.replace(temp, folder / name)  # replaces a link at that name; never follows it
            del temporary[name]
            written.append(folder / name)
        return written
    except OSError as error:
        for temp in temporary.values():
            _remove(temp)
        for made in reversed(created):
            _remove_folder(made)
        raise InputError(f"cannot write: {error.strerror or error}; nothing was written", file=str(folder),
                         field=field) from None


def write_file(path: str | Path, data: bytes, *, field: str) -> Path:
    """One file, as `write_files` writes it."""
    path = Path(path)
    if not path.name:
        raise InputError("give a file name", file=str(path), field=field)
    return write_files(path.parent, {path.name: data}, field=field)[0]


def _make_folders(folder: Path) -> list[Path]:
    """Create `folder` and its missing parents, outermost first; the ones created."""
    missing = []
    current = folder
    while path_kind(current, follow=False) is None:
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    created = []
    try:
        for path in reversed(missing):
            path.mkdir()
            created.append(path)
    except OSError:
        for made in reversed(created):
            _remove_folder(made)
        raise
    return created


def _write_temporary(folder: Path, data: bytes, mode: int) -> str:
    fd, temp = tempfile.mkstemp(prefix=_TEMP_PREFIX, suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
            os.fchmod(handle.fileno(), mode)
    except OSError:
        _remove(temp)
        raise
    return temp


def _umask() -> int:
    # The only portable way to read the umask is to set it; put it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _remove_folder(path: Path) -> None:
    try:
        path.rmdir()  # only when empty: never what someone else put there
    except OSError:
        pass
