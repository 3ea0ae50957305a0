"""How advisor stores what it learns: JSON lines, rewritten atomically (where: :class:`advisor.state.MachineState`)."""

from __future__ import annotations

import json
import os
import tempfile
import time
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


# --- The database of what advisor learns on a machine -------------------------------------------------------------

SCHEMA_VERSION = 1
TABLES = ("throughput", "probe", "probe_result", "feature_accuracy")  # throughput records, probe records (calibration),
# whole probe results, feature extraction measured on a data set (reused for the same files)
BUSY_TIMEOUT_S = 30.0


class Database:
    """What advisor learns on a machine, in SQLite (standard library): WAL journal, a busy timeout, one
    transaction per record — concurrent writers never lose a record and a process killed at any moment leaves
    a consistent file. A file that is not a readable advisor database is moved aside with a warning and a new
    one started. JSON-lines stores of earlier versions beside it are imported once."""

    def __init__(self, path: Path, legacy: tuple[Path, ...] = ()) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._open()
        for old in legacy:
            self._import(old)

    def _connect(self):
        import sqlite3

        con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        con.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        if con.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() != "wal":
            raise sqlite3.DatabaseError("cannot use a write-ahead log here")
        con.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        for table in TABLES:
            con.execute(f"CREATE TABLE IF NOT EXISTS {table} (id INTEGER PRIMARY KEY, machine TEXT, time TEXT, body TEXT NOT NULL)")
        con.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        version = int(con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"written by a newer advisor (schema {version})")
        return con

    def _open(self) -> None:
        import sqlite3
        import warnings

        try:
            self.con = self._connect()
            self.con.execute("SELECT count(*) FROM throughput").fetchone()
        except sqlite3.DatabaseError as exc:
            aside = self.path.with_name(f"{self.path.name}.unreadable-{os.getpid()}-{int(time.time())}")
            with_suffixes = [self.path.with_name(self.path.name + s) for s in ("-wal", "-shm")]
            os.replace(self.path, aside)
            for p in with_suffixes:
                p.unlink(missing_ok=True)
            warnings.warn(f"{self.path} could not be read ({exc}); moved it to {aside.name} and started a new one", stacklevel=3)
            self.con = self._connect()

    def add(self, table: str, record: dict) -> None:
        """Store one record in its own transaction."""
        assert table in TABLES
        with self.con:  # commits, or rolls back on error
            self.con.execute(f"INSERT INTO {table} (machine, time, body) VALUES (?, ?, ?)",
                             (record.get("machine"), record.get("time"), json.dumps(record, default=str)))

    def read(self, table: str, machine: str | None = None) -> list[dict]:
        """The table's records (of ``machine`` when given), oldest first; a record that is not a JSON object is
        skipped with a warning instead of stopping advisor."""
        import warnings

        assert table in TABLES
        query, args = f"SELECT id, body FROM {table}", ()
        if machine is not None:
            query, args = query + " WHERE machine = ?", (machine,)
        out = []
        for rid, body in self.con.execute(query + " ORDER BY id", args):
            try:
                value = json.loads(body)
            except (TypeError, ValueError):
                value = None
            if isinstance(value, dict):
                out.append(value)
            else:
                warnings.warn(f"skipped an unreadable {table} record (#{rid}) in {self.path}", stacklevel=2)
        return out

    def delete(self, machine: str) -> int:
        with self.con:
            return sum(self.con.execute(f"DELETE FROM {t} WHERE machine = ?", (machine,)).rowcount for t in TABLES)

    def _import(self, old: Path) -> None:
        """Bring the records of an earlier version's JSON-lines file in, once (the file is then renamed)."""
        import warnings

        if not old.is_file():
            return
        kinds = {"throughput": "throughput", "probe": "probe"}
        bad = 0
        with self.con:
            for line in old.read_text(errors="replace").splitlines():
                try:
                    rec = json.loads(line) if line.strip() else None
                except ValueError:
                    rec = None
                if not isinstance(rec, dict):
                    bad += bool(line.strip())
                    continue
                table = kinds.get(rec.get("kind"), "probe_result")
                self.con.execute(f"INSERT INTO {table} (machine, time, body) VALUES (?, ?, ?)",
                                 (rec.get("machine"), rec.get("time"), json.dumps(rec, default=str)))
        os.replace(old, old.with_name(old.name + ".imported"))
        if bad:
            warnings.warn(f"{bad} unreadable line(s) of {old} were not imported", stacklevel=3)

    def close(self) -> None:
        self.con.close()
