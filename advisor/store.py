"""How advisor stores what it learns: JSON lines, rewritten atomically (where: :class:`advisor.state.MachineState`)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable


def atomic_replace(path: Path, write: Callable[[Path], None]) -> Path:
    """Have ``write`` fill a temporary file beside ``path``, fsync it, then rename it over ``path``: readers
    see the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes files private; give the file the usual permissions
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically (:func:`atomic_replace`)."""
    atomic_replace(path, lambda tmp: tmp.write_text(text))


def append(path: Path, record: dict) -> Path:
    """Append one JSON line; the file is replaced whole, so a crash never leaves a torn line."""
    old = path.read_text() if path.exists() else ""
    if old and not old.endswith("\n"):
        old += "\n"
    atomic_write(path, old + json.dumps(record, default=str) + "\n")
    return path


def write_lines(path: Path, records: list[dict]) -> Path:
    """Replace the file with these records, one JSON line each, atomically."""
    atomic_write(path, "".join(json.dumps(r, default=str) + "\n" for r in records))
    return path


def read(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
