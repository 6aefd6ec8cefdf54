"""Writing files the user names (exports, reports): data only, never a door to something else.

A target must be a regular file or a new name. The bytes go to a private temporary file that is
created exclusively in the target's folder (no predictable name to plant a link or FIFO at),
then replace the target in one rename. New files get the vault's private mode (0600).
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

from kvdesk.core.errors import KvdeskError

PRIVATE_FILE_MODE = 0o600


def write_file_safely(
    target: str | os.PathLike[str], data: bytes, *, mode: int | None = None
) -> None:
    """Write ``data`` to ``target`` atomically; refuse devices, FIFOs, sockets, folders, links.

    ``mode``: the new file's permissions (default: an existing file's, else 0600).
    """
    path = Path(target)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise KvdeskError(f"cannot write {path}: {exc.strerror or exc}") from None
    if info is not None:
        if stat.S_ISLNK(info.st_mode):
            raise KvdeskError(f"{path} is a symbolic link; give the path of a file instead")
        if not stat.S_ISREG(info.st_mode):
            raise KvdeskError(f"{path} is not a regular file (a folder, device or pipe); refused")
    final_mode = (
        mode
        if mode is not None
        else (stat.S_IMODE(info.st_mode) if info is not None else PRIVATE_FILE_MODE)
    )
    folder = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".kvdesk-partial", dir=folder)
    except OSError as exc:
        raise KvdeskError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, final_mode)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise KvdeskError(f"cannot write {path}: {exc.strerror or exc}") from None


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> object:
    """A cell a spreadsheet shows as text: OWASP's CSV-injection rule (a leading ``'`` before
    =, +, -, @, tab or CR). Numbers stay numbers."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


class CsvRows:
    """CSV built in memory, every cell neutralised, saved with :func:`write_file_safely`."""

    def __init__(self) -> None:
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer)

    def writerow(self, row: Iterable[object]) -> None:
        self._writer.writerow([csv_cell(cell) for cell in row])

    def save(self, target: str | os.PathLike[str]) -> None:
        write_file_safely(target, self._buffer.getvalue().encode("utf-8"))
