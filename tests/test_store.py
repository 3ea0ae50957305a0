"""The machine's database: concurrent writers, a process killed mid-write, unreadable files and old stores."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from advisor.measure import calibration
from advisor.cli import main
from advisor.state import MachineState
from advisor.store import Database

T = "2026-01-01T00:00:00+00:00"


def _writer(path: str, worker: int, n: int) -> None:
    db = Database(path)
    for i in range(n):
        db.add("probe", {"machine": "m", "worker": worker, "i": i, "errors": {}, "data": "d", "time": T})
    db.close()


def test_concurrent_writers_keep_every_record(tmp_path):
    path = str(tmp_path / "advisor.db")
    Database(path).close()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, w, 25)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    rows = Database(path).read("probe")
    assert len(rows) == 100
    assert {(r["worker"], r["i"]) for r in rows} == {(w, i) for w in range(4) for i in range(25)}


KILLED_WRITER = """
import sys
from advisor.store import Database
db = Database(sys.argv[1])
i = 0
while True:
    db.add("probe", {"machine": "m", "seq": i, "pad": "x" * 5000, "errors": {}, "data": "d", "time": "2026-01-01T00:00:00+00:00"})
    i += 1
    if i == 20:
        print("writing", flush=True)
"""


def test_a_process_killed_mid_write_leaves_a_consistent_store(tmp_path):
    path = tmp_path / "advisor.db"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    rows = Database(path).read("probe")
    assert len(rows) >= 20
    assert [r["seq"] for r in rows] == list(range(len(rows)))  # every committed record whole, none half-written
    assert all(len(r["pad"]) == 5000 for r in rows)


def test_an_unreadable_database_is_moved_aside_and_advisor_carries_on(tmp_path):
    state = MachineState(home=tmp_path, machine="m")
    tmp_path.mkdir(exist_ok=True)
    state.db_path.write_bytes(b"this is not a database" * 100)
    with pytest.warns(UserWarning, match="moved it to"):
        db = state.database()
    db.add("probe", {"machine": "m", "errors": {}, "data": "d", "time": T})
    assert len(db.read("probe")) == 1
    assert any(p.name.startswith("advisor.db.unreadable-") for p in tmp_path.iterdir())


def test_old_json_lines_stores_are_imported_once_and_bad_lines_skipped(tmp_path):
    state = MachineState(home=tmp_path, machine="m")
    good = {"kind": "probe", "machine": "m", "errors": {"retrain": 0.1}, "reach": {}, "val_images": 10, "data": "d", "time": "2026-01-01T00:00:00+00:00"}
    broken = {"kind": "throughput", "machine": "m", "time": "2026-01-01T00:00:00+00:00"}  # fields missing
    (tmp_path / "calibration.jsonl").write_bytes(
        (json.dumps(good) + "\n" + json.dumps(broken) + "\n" + '{"kind": "probe", "mach' + "\n").encode() + b"\xff\xfe\x00binary\n[1, 2]\n")
    with pytest.warns(UserWarning, match="unreadable line"):
        found = calibration.probes(state)
    assert [p["errors"] for p in found] == [{"retrain": 0.1}]
    assert not (tmp_path / "calibration.jsonl").exists() and (tmp_path / "calibration.jsonl.imported").exists()
    assert calibration.probes(state) == found  # imported once
    out = CliRunner().invoke(main, ["calibrate", "--show"], env={"ADVISOR_HOME": str(tmp_path)})
    assert out.exit_code == 0 and "Traceback" not in out.output


def test_records_that_are_not_objects_are_skipped(tmp_path):
    db = Database(tmp_path / "advisor.db")
    db.add("probe", {"machine": "m", "errors": {}, "data": "d", "time": T})
    with db.con:
        db.con.execute("INSERT INTO probe (machine, time, body) VALUES ('m', 't', 'not json')")
        db.con.execute("INSERT INTO probe (machine, time, body) VALUES ('m', 't', '[1]')")
    with pytest.warns(UserWarning, match="skipped probe record #"):
        assert len(db.read("probe", "m")) == 1


def test_calibrate_export_and_reset(tmp_path):
    env = {"ADVISOR_HOME": str(tmp_path)}
    state = MachineState(home=tmp_path)
    calibration._add(state, "probe", {"kind": "probe", "machine": state.machine, "errors": {}, "data": "d", "time": T})
    runner = CliRunner()
    out = runner.invoke(main, ["calibrate", "--export"], env=env)
    assert out.exit_code == 0 and json.loads(out.output.splitlines()[0])["table"] == "probe"
    out = runner.invoke(main, ["calibrate", "--reset"], env=env)
    assert out.exit_code == 0 and "removed 1 record" in out.output
    assert calibration.export(state) == []


FULL_DISK = """
import resource, signal, sys, torch
from advisor.training import save_torch
from advisor.errors import StoreError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit a write fails with EFBIG instead of killing us
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
weights = {"w": torch.randn(1_000_000)}  # 4 MB: the limit stops it part-way, as a full disk would
try:
    save_torch(weights, sys.argv[1])  # how advisor train writes model.pt and its checkpoints
except StoreError as exc:
    print(exc)
    sys.exit(3)
"""


@pytest.mark.parametrize("existing", [True, False])
def test_a_write_that_runs_out_of_space_leaves_no_half_written_file(tmp_path, existing):
    """A real write stopped by the operating system part-way (a file-size limit, which fails like a full disk):
    the model file is the old one or absent, no temporary file is left, and the error is one line."""
    model = tmp_path / "run" / "model.pt"
    if existing:
        model.parent.mkdir()
        model.write_bytes(b"the previous model")
    proc = subprocess.run([sys.executable, "-c", FULL_DISK, str(model)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout.startswith(f"could not write {model}: File too large") and len(proc.stdout.strip().splitlines()) == 1
    if existing:
        assert model.read_bytes() == b"the previous model" and "previous file is unchanged" in proc.stdout
    else:
        assert not model.exists() and "no file was created" in proc.stdout
    assert [p.name for p in model.parent.iterdir()] == (["model.pt"] if existing else [])
