"""Where advisor keeps what it learns on a machine: JSON lines, rewritten atomically."""

from __future__ import annotations

import json
import os
import socket
import tempfile
from pathlib import Path


def home() -> Path:
    """``$ADVISOR_HOME``, else ``~/.local/share/advisor``."""
    return Path(os.environ.get("ADVISOR_HOME") or Path.home() / ".local" / "share" / "advisor")


def machine_id() -> str:
    return socket.gethostname()


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, fsync it, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
