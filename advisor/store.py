"""How advisor stores what it learns: one SQLite database per home, each row checked against its typed record
(:mod:`advisor.records`); files written whole are replaced atomically (where: :class:`advisor.state.MachineState`)."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

from .errors import StoreError


def atomic_replace(path: Path, write: Callable[[Path], None]) -> Path:
    """Have ``write`` fill a temporary file beside ``path``, fsync it, then rename it over ``path``: readers
    see the old file or the new one, never half of one. A failed write (a full disk, say) removes the temporary
    file and raises :class:`StoreError`."""
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
    except OSError as exc:  # a full disk, a file-size limit, a folder gone read-only: say so in one line
        Path(tmp).unlink(missing_ok=True)
        raise StoreError(f"could not write {path}: {exc.strerror or exc} (nothing half-written was left; "
                         f"{'the previous file is unchanged' if path.exists() else 'no file was created'}).") from exc
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
# whole probe results, feature extraction measured on a data set (reused for the same files); their typed records:
# advisor.records.RECORDS
BUSY_TIMEOUT_S = 30.0
LEGACY = ("calibration.jsonl", "probes.jsonl")  # JSON-lines stores of earlier versions, imported once
_warned_read_only: set[Path] = set()  # one warning per store and process that records could not be stored
_warned_unfit: set[tuple[Path, str, int]] = set()  # one warning per unfit record and process, however often it is read


def check_home(home: Path) -> None:
    """Raise :class:`StoreError` when advisor's home exists but is not a folder."""
    if home.exists() and not home.is_dir():
        raise StoreError(f"advisor's home {home} is a file, not a folder: set ADVISOR_HOME to a folder (or remove the file).")


def _tables(con) -> None:
    con.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    for table in TABLES:
        con.execute(f"CREATE TABLE IF NOT EXISTS {table} (id INTEGER PRIMARY KEY, machine TEXT, time TEXT, body TEXT NOT NULL)")


class Database:
    """What advisor learns on a machine, in SQLite (standard library): WAL journal, a busy timeout, one
    transaction per record — concurrent writers never lose a record and a process killed at any moment leaves
    a consistent file. Records are written and read through their typed models (:mod:`advisor.records`).

    Faults end in one warning, never a traceback: a file that is not a readable advisor database, or fails
    SQLite's quick check, is moved aside and a new one started; a store that cannot be written (a read-only
    folder or file) is read as it is and nothing new is stored. A store written by a newer advisor is refused
    with :class:`StoreError` and left where it is. JSON-lines stores of earlier versions beside it are
    imported once."""

    def __init__(self, path: Path, legacy: tuple[Path, ...] = ()) -> None:
        self.path = Path(path)
        check_home(self.path.parent)
        self.writable = True
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError:
            self.writable = False
        if not os.access(self.path.parent, os.W_OK) or (self.path.exists() and not os.access(self.path, os.W_OK)):
            self.writable = False
        self._open()
        if self.writable:
            for old in legacy:
                self._import(old)

    def _version(self, con) -> int | None:
        """The store's schema version (None: not written yet); raises StoreError for a newer advisor's store."""
        has_meta = con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
        row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() if has_meta else None
        version = int(row[0]) if row else None
        if version is not None and version > SCHEMA_VERSION:
            con.close()
            raise StoreError(f"{self.path} was written by a newer advisor (store schema {version}; this advisor reads up to "
                             f"{SCHEMA_VERSION}). It is left as it is: upgrade advisor, or set ADVISOR_HOME to another folder.")
        return version

    def _connect(self):
        import sqlite3

        con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        con.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        self._version(con)
        if con.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() != "wal":
            raise sqlite3.DatabaseError("cannot use a write-ahead log here")
        _tables(con)
        con.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        return con

    def _connect_read_only(self):
        import sqlite3
        from urllib.parse import quote

        if not self.path.exists():
            return self._empty()
        uri = f"file:{quote(str(self.path.resolve()))}"
        try:
            con = sqlite3.connect(f"{uri}?mode=ro", uri=True, isolation_level=None)
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError:  # a WAL database whose shared-memory file cannot be made here
            con = sqlite3.connect(f"{uri}?immutable=1", uri=True, isolation_level=None)
        self._version(con)
        return con

    @staticmethod
    def _empty():
        import sqlite3

        con = sqlite3.connect(":memory:", isolation_level=None)
        _tables(con)
        return con

    @staticmethod
    def _check(con) -> None:
        """Raise DatabaseError unless the file passes SQLite's quick check and holds advisor's tables."""
        import sqlite3

        problems = [row[0] for row in con.execute("PRAGMA quick_check").fetchall()]
        if problems != ["ok"]:
            first = " ".join(problems[0].split())  # SQLite's report can span lines; the warning is one
            raise sqlite3.DatabaseError(f"damaged: {first}" + (f" and {len(problems) - 1} more problems" if len(problems) > 1 else ""))
        for table in TABLES:
            con.execute(f"SELECT count(*) FROM {table}").fetchone()

    def _open(self) -> None:
        import sqlite3

        try:
            self.con = self._connect() if self.writable else self._connect_read_only()
            self._check(self.con)
        except sqlite3.DatabaseError as exc:
            self._set_aside(str(exc))

    def _set_aside(self, why: str) -> None:
        """The file cannot be read whole: move it aside (kept for recovery) and start a new one; where it cannot
        be moved, use nothing from it and store nothing."""
        import warnings

        if getattr(self, "con", None) is not None:
            self.con.close()
        aside = self.path.with_name(f"{self.path.name}.unreadable-{os.getpid()}-{int(time.time())}")
        try:
            if not self.writable:
                raise PermissionError("read-only")
            os.replace(self.path, aside)
        except OSError:
            self.writable = False
            _warned_read_only.add(self.path)  # this warning already says nothing is stored
            warnings.warn(f"{self.path} could not be read ({why}) and cannot be moved aside: none of its records are used "
                          "and nothing new is stored", stacklevel=4)
            self.con = self._empty()
            return
        for p in (self.path.with_name(self.path.name + s) for s in ("-wal", "-shm")):
            p.unlink(missing_ok=True)
        warnings.warn(f"{self.path} could not be read ({why}), so none of its records are used; moved it to {aside.name} "
                      "(kept for recovery, e.g. with `sqlite3 .recover`) and started a new one", stacklevel=4)
        self.con = self._connect()

    def add(self, table: str, record: dict) -> bool:
        """Store one record, checked against its typed model, in its own transaction; whether it was stored
        (where the store cannot be written nothing is, with one warning per store)."""
        import sqlite3
        import warnings

        from .records import RECORDS

        body = RECORDS[table].model_validate(record).model_dump_json()
        try:
            if not self.writable:
                raise sqlite3.OperationalError("read-only")
            with self.con:  # commits, or rolls back on error
                self.con.execute(f"INSERT INTO {table} (machine, time, body) VALUES (?, ?, ?)",
                                 (record.get("machine"), record.get("time"), body))
            return True
        except sqlite3.OperationalError as exc:
            if "read-only" not in str(exc) and "readonly" not in str(exc):
                raise
            if self.path not in _warned_read_only:
                _warned_read_only.add(self.path)
                warnings.warn(f"{self.path} cannot be written: nothing learned here is stored", stacklevel=3)
            return False

    def read(self, table: str, machine: str | None = None) -> list[dict]:
        """The table's records (of ``machine`` when given), oldest first, each checked against its typed model
        (:mod:`advisor.records`): a record that does not fit is skipped with a warning naming table and row (once per process)."""
        import sqlite3
        import warnings

        from pydantic import ValidationError

        from .records import RECORDS

        query, args = f"SELECT id, body FROM {table}", ()
        if machine is not None:
            query, args = query + " WHERE machine = ?", (machine,)
        out = []
        try:
            rows = self.con.execute(query + " ORDER BY id", args).fetchall()
        except sqlite3.DatabaseError as exc:
            self._set_aside(f"its {table} records could not all be read: {exc}")
            return []
        for rid, body in rows:
            try:
                out.append(RECORDS[table].model_validate_json(body).model_dump(mode="json"))
            except ValidationError as exc:
                if (self.path, table, rid) in _warned_unfit:
                    continue
                _warned_unfit.add((self.path, table, rid))
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"]) or "the record"
                warnings.warn(f"skipped {table} record #{rid} in {self.path}: it does not fit its record type "
                              f"({where}: {first['msg']})", stacklevel=2)
        return out

    def delete(self, machine: str) -> int:
        if not self.writable:
            raise StoreError(f"{self.path} cannot be written: nothing was deleted.")
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

    def __enter__(self) -> "Database":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
