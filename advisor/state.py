"""Per-machine state as an explicit input: where advisor keeps what it learns, and which learned model it uses.

Chosen once at the top (the CLI, or the caller of :func:`advisor.recommend`) and passed down; below it only
the meta-dataset loader reads an environment variable (``ADVISOR_PACKED_DATA``, :mod:`advisor.data.datasets`), for
benchmarks on a machine without the data packages.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

PACKAGED_MODEL = Path(__file__).parent / "models" / "strategy_model.joblib"


def default_home() -> Path:
    """``$ADVISOR_HOME``, else ``~/.local/share/advisor``."""
    return Path(os.environ.get("ADVISOR_HOME") or Path.home() / ".local" / "share" / "advisor")


@dataclass(frozen=True)
class MachineState:
    home: Path = field(default_factory=default_home)  # calibration records and stored probe results
    model_path: Path = PACKAGED_MODEL  # the learned model's joblib file
    machine: str = field(default_factory=socket.gethostname)  # records of other machines sharing ``home`` are ignored

    def __post_init__(self) -> None:  # paths may be given as strings
        object.__setattr__(self, "home", Path(self.home).expanduser())
        object.__setattr__(self, "model_path", Path(self.model_path).expanduser())

    @property
    def db_path(self) -> Path:
        """The SQLite database of throughput records, probe records and probe results."""
        return self.home / "advisor.db"

    def database(self):
        """The machine's database, opened (created, and earlier versions' JSON-lines files imported, on first use)."""
        from .store import LEGACY, Database

        return Database(self.db_path, legacy=tuple(self.home / name for name in LEGACY))

    def stored(self) -> bool:
        """Whether anything is stored here yet (the database, or an earlier version's files); raises
        :class:`advisor.errors.StoreError` when the home is not a folder."""
        from .store import LEGACY, check_home

        check_home(self.home)
        return self.db_path.exists() or any((self.home / name).exists() for name in LEGACY)
