"""Bad and odd inputs, built here: each ends in one clear line (or a warning), never a traceback or a hang,
and the data folder is never written."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from advisor.cli import main


def _tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in sorted(os.walk(root)):
        dirnames.sort()
        for name in sorted(filenames + dirnames):
            path = Path(dirpath) / name
            h.update(os.fsencode(path.relative_to(root)))
            if path.is_file() and not path.is_symlink() and os.path.isfile(path) and not path.is_fifo():
                h.update(path.read_bytes())
    return h.hexdigest()


def _one_error(out, message: str = "") -> bool:
    """One ``Error:`` line, the last one printed (progress lines may precede it), no traceback."""
    lines = out.output.strip().splitlines()
    errors = [line for line in lines if line.startswith("Error:")]
    return ("Traceback" not in out.output and len(errors) == 1 and lines[-1] == errors[0] and message in errors[0])


@pytest.fixture
def good(tmp_path, digits_dir) -> Path:
    return Path(shutil.copytree(digits_dir, tmp_path / "good"))


def _folder(tmp_path: Path, kind: str, good: Path) -> Path:
    """A data folder of the named kind."""
    root = tmp_path / kind
    if kind == "missing":
        return root
    if kind == "file":
        root.write_text("not a folder")
        return root
    root.mkdir()
    if kind == "empty":
        return root
    if kind == "one-class":
        shutil.copytree(good / "0", root / "0")
    elif kind == "loose-images":
        for p in list((good / "0").iterdir())[:5]:
            shutil.copy(p, root / p.name)
    elif kind == "class-of-corrupt-files":
        shutil.copytree(good / "0", root / "0")
        (root / "1").mkdir()
        for i in range(5):
            (root / "1" / f"{i}.png").write_bytes(b"\x89PNG broken")
    elif kind == "all-zero-byte":
        for c in ("a", "b"):
            (root / c).mkdir()
            for i in range(3):
                (root / c / f"{i}.png").write_bytes(b"")
    elif kind == "text-named-png":
        for c in ("a", "b"):
            (root / c).mkdir()
            for i in range(3):
                (root / c / f"{i}.png").write_text("hello")
    elif kind == "no-images-only-text":
        for c in ("a", "b"):
            (root / c).mkdir()
            (root / c / "notes.txt").write_text("x")
    return root


FOLDER_CASES = ["missing", "file", "empty", "one-class", "loose-images", "class-of-corrupt-files", "all-zero-byte",
                "text-named-png", "no-images-only-text"]


@pytest.mark.parametrize("command", ["profile", "recommend", "probe"])
@pytest.mark.parametrize("kind", FOLDER_CASES)
def test_bad_folders_end_in_one_line(tmp_path, good, command, kind):
    root = _folder(tmp_path, kind, good)
    before = _tree_hash(root) if root.is_dir() else None
    args = [command, "--data", str(root)] + ([] if command == "profile" else ["--minutes", "1"])
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 1, out.output
    assert _one_error(out), out.output
    if before is not None:
        assert _tree_hash(root) == before


BAD_OPTIONS = [
    (["--minutes", "0"], "greater than zero"),
    (["--minutes", "-3"], "greater than zero"),
    (["--minutes", "nan"], "greater than zero"),
    (["--minutes", "inf"], "greater than zero"),
    (["--minutes", "abc"], "must be a number"),
    (["--minutes", "1", "--hours", "1"], "once"),
    ([], "once"),
    (["--minutes", "1", "--hardware", "{tmp}/none.json"], "not found"),
    (["--minutes", "1", "--hardware", "{tmp}/junk.json"], "not a hardware profile"),
    (["--minutes", "1", "--device-name", "abacus"], "Unknown device name"),
    (["--minutes", "1", "--device-name", "a100", "--hardware", "{tmp}/junk.json"], "not both"),
    (["--minutes", "1", "--rules", "{tmp}/none.toml"], ""),
    (["--minutes", "1", "--rules", "{tmp}/junk.json"], ""),
    (["--minutes", "1", "--weights", "{tmp}/none.pth"], ""),
    (["--minutes", "1", "--weights", "{tmp}/junk.json"], ""),
]


@pytest.mark.parametrize("options,message", BAD_OPTIONS, ids=[" ".join(o) or "no-budget" for o, _ in BAD_OPTIONS])
def test_bad_options_end_in_one_line(tmp_path, good, options, message):
    (tmp_path / "junk.json").write_text("{ this is not json")
    before = _tree_hash(good)
    args = ["recommend", "--data", str(good)] + [o.replace("{tmp}", str(tmp_path)) for o in options]
    out = CliRunner().invoke(main, args)
    assert out.exit_code in (1, 2), out.output
    assert _one_error(out, message), out.output
    assert _tree_hash(good) == before


@pytest.mark.parametrize("options", [["--seconds", "nan"], ["--seconds", "inf"], ["--seconds", "0"], ["--seconds", "-5"],
                                     ["--fraction", "0"], ["--fraction", "2"], ["--fraction", "nan"],
                                     ["--steps", "0"], ["--steps", "5", "--seconds", "3"]])
def test_bad_probe_durations_are_refused_before_any_work(good, options):
    out = CliRunner().invoke(main, ["probe", "--data", str(good), "--minutes", "1", *options])
    assert out.exit_code == 1 and _one_error(out), out.output


@pytest.mark.parametrize("options", [["--device-name", "h100"], ["--retime"], ["--fe-accuracy", "0.8"],
                                     ["--device-name", "a100", "--retime"]])
def test_probe_with_an_option_it_cannot_use_stops_with_one_line(good, options):
    # the probe trains on this machine: planning for another one (or skipping a measurement) must not pass silently
    out = CliRunner().invoke(main, ["recommend", "--data", str(good), "--minutes", "1", "--probe", *options])
    assert out.exit_code == 1 and _one_error(out, options[0]), out.output


def test_a_fifo_named_like_an_image_is_skipped_not_opened(tmp_path, good):
    fifo = good / "0" / "pipe.png"
    os.mkfifo(fifo)
    out = CliRunner().invoke(main, ["profile", "--data", str(good)])
    assert out.exit_code == 0 and "not regular files" in out.output


def test_report_must_be_html_or_png(tmp_path, good):
    out = CliRunner().invoke(main, ["recommend", "--data", str(good), "--minutes", "1", "--device-name", "a100",
                                    "--report", str(tmp_path / "r.pdf")])
    assert out.exit_code == 1 and _one_error(out, "must end in .html or .png"), out.output


def test_a_corrupt_database_does_not_stop_calibrate(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "advisor.db").write_bytes(b"\x00garbage" * 64)
    out = CliRunner().invoke(main, ["calibrate", "--show"], env={"ADVISOR_HOME": str(home)})
    assert out.exit_code == 0 and "moved it to" in out.output and "Traceback" not in out.output


def test_odd_image_modes_are_read(tmp_path, good):
    root = tmp_path / "modes"
    shutil.copytree(good, root)
    Image.new("CMYK", (16, 16)).save(root / "0" / "cmyk.jpg")
    Image.new("I;16", (16, 16)).save(root / "1" / "sixteen.png")
    Image.new("P", (16, 16)).save(root / "2" / "palette.png")
    Image.new("LA", (16, 16)).save(root / "3" / "la.png")
    Image.new("1", (16, 16)).save(root / "4" / "bits.png")
    out = CliRunner().invoke(main, ["profile", "--data", str(root)])
    assert out.exit_code == 0 and "Traceback" not in out.output


DEFAULT_RULES = (Path(__file__).parent.parent / "rules" / "default.toml").read_text()
BAD_RULES = [  # (what is changed in the default rules file, the part of the message naming it)
    (("min_resolution = 64", ""), "settings.min_resolution"),
    (("scratch = 90", ""), "max_epochs.scratch"),
    (("temperature = 20.0", "temperature = 0"), "decision.temperature"),
    (("temperature = 20.0", "temperature = -2"), "decision.temperature"),
    (("similar = 0.60", "similar = nan"), "thresholds.similar"),
    (("min_resolution = 64", "min_resolution = 512"), "settings"),
    (("batch_size_cpu = 32", 'batch_size_cpu = "many"'), "settings.batch_size_cpu"),
    (("[decision]", "[decisions]"), "decision"),
    (('when = ["n_images < scratch_min_images"]', 'when = ["pixels < 3"]'), "unknown fact 'pixels'"),
]


@pytest.mark.parametrize("change,message", BAD_RULES, ids=[m for _, m in BAD_RULES])
def test_a_rules_file_is_validated_whole_before_any_work(tmp_path, good, change, message):
    old, new = change
    assert old in DEFAULT_RULES
    path = tmp_path / "rules.toml"
    path.write_text(DEFAULT_RULES.replace(old, new, 1))
    out = CliRunner().invoke(main, ["recommend", "--data", str(good), "--minutes", "1", "--rules", str(path)])
    assert out.exit_code == 1 and _one_error(out, message), out.output


def _weights(tmp_path: Path, kind: str) -> Path:
    """A weights file of the named kind, shaped like the default backbone's where it matters."""
    import timm
    import torch

    path = tmp_path / f"{kind}.pth"
    state = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    if kind == "ten-class-head":  # ImageNet's names, a head for 10 classes
        state["classifier.weight"], state["classifier.bias"] = torch.zeros(10, 1280), torch.zeros(10)
    elif kind == "missing-tensor":
        state.pop("conv_stem.weight")
    elif kind == "renamed-wrong-shape":  # other names, first tensor of the wrong shape
        state = {f"layer{i}": torch.zeros(3) if i == 0 else t for i, t in enumerate(state.values())}
    elif kind == "a-bare-tensor":
        state = torch.zeros(3)
    elif kind == "pickled-object":
        state = {"model": Path("x")}
    torch.save(state, path)
    return path


@pytest.mark.parametrize("kind,message", [("ten-class-head", "'classifier.weight' has shape (10, 1280)"),
                                          ("missing-tensor", "the model expects"),
                                          ("renamed-wrong-shape", "'layer0' has shape (3,)"),
                                          ("a-bare-tensor", "does not hold a state dict"),
                                          ("pickled-object", "pickled objects")])
def test_weights_are_checked_tensor_by_tensor_in_one_line(tmp_path, good, kind, message):
    path = _weights(tmp_path, kind)
    out = CliRunner().invoke(main, ["recommend", "--data", str(good), "--minutes", "1", "--weights", str(path)])
    assert out.exit_code == 1 and _one_error(out, message), out.output


@pytest.mark.slow
def test_file_names_that_are_not_utf8_are_shown_safely_in_text_and_json(tmp_path, good):
    import json

    os.rename(good / "0", os.path.join(os.fsencode(good), b"zero-\xff"))
    (Path(os.fsdecode(os.path.join(os.fsencode(good), b"zero-\xff"))) / os.fsdecode(b"bad-\xfe.png")).write_bytes(b"junk")
    before = _tree_hash(good)
    text = CliRunner().invoke(main, ["profile", "--data", str(good)])
    assert text.exit_code == 0 and "zero-\\xff" in text.output and "bad-\\xfe.png" in text.output, text.output
    as_json = CliRunner().invoke(main, ["profile", "--data", str(good), "--json"])
    assert as_json.exit_code == 0, as_json.output
    profile = json.loads(as_json.stdout)
    assert "zero-\\xff" in [c["name"] for c in profile["classes"]] and "bad-\\xfe.png" in profile["unreadable"][0]
    rec = CliRunner().invoke(main, ["recommend", "--data", str(good), "--minutes", "1",
                                                    "--device-name", "a100", "--no-model", "--json"])
    assert rec.exit_code == 0 and json.loads(rec.stdout)["strategy"], rec.output
    assert _tree_hash(good) == before


def test_a_symlink_loop_and_a_decompression_bomb_end_in_warnings(tmp_path, good):
    import struct
    import zlib

    (good / "1" / "loop.png").symlink_to(good / "1" / "loop.png")
    ihdr = b"IHDR" + struct.pack(">IIBBBBB", 40000, 40000, 8, 0, 0, 0, 0)  # a header claiming 1.6 gigapixels
    (good / "2" / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + ihdr
                                          + struct.pack(">I", zlib.crc32(ihdr)))
    before = _tree_hash(good)
    out = CliRunner().invoke(main, ["profile", "--data", str(good)])
    assert out.exit_code == 0 and "unreadable" in out.output and "Traceback" not in out.output, out.output
    assert _tree_hash(good) == before


# --- The store under faults (issue 25): a damaged, read-only, odd or newer store ends in one line, loses nothing ---

STORE_FAULTS = ("damaged", "read-only", "a-record-lacks-a-key", "newer-schema", "home-is-a-file")


def _counts(db: Path) -> dict[str, int]:
    import sqlite3

    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("throughput", "probe", "probe_result", "feature_accuracy")}
    finally:
        con.close()


@pytest.fixture(scope="module")
def store_place(tmp_path_factory, digits_dir):
    """A folder others may read (the read-only case runs as an unprivileged user where the tests run as root),
    with two classes of ten digits and a home stocked by one real recommend and one real probe."""
    import tempfile

    place = Path(tempfile.mkdtemp(prefix="advisor-store-"))
    place.chmod(0o755)
    data = place / "data"
    for c in ("0", "1"):
        (data / c).mkdir(parents=True)
        for p in sorted((digits_dir / c).iterdir())[:10]:
            shutil.copy(p, data / c / p.name)
    home = place / "stocked"
    env = {"ADVISOR_HOME": str(home)}
    for args in (["recommend", "--data", str(data), "--minutes", "1"], ["probe", "--data", str(data), "--minutes", "1", "--seconds", "2"]):
        out = CliRunner().invoke(main, args, env=env)
        assert out.exit_code == 0, out.output
    counts = _counts(home / "advisor.db")
    assert counts["probe_result"] >= 1 and counts["feature_accuracy"] >= 1, counts
    yield place, data, home
    for dirpath, dirnames, _ in os.walk(place):
        for d in dirnames:
            os.chmod(Path(dirpath) / d, 0o755)
    shutil.rmtree(place, ignore_errors=True)


def _fault(kind: str, stocked: Path, home: Path) -> None:
    """Copy the stocked home to ``home`` and give it the fault."""
    import sqlite3

    if kind == "home-is-a-file":
        home.write_text("not a folder")
        return
    shutil.copytree(stocked, home)
    db = home / "advisor.db"
    if kind == "damaged":  # random bytes over the middle of the file: it opens, but a tree page is bad
        raw = bytearray(db.read_bytes())
        page = 4096
        middle = (len(raw) // page // 2) * page
        raw[middle:middle + page] = os.urandom(page)
        db.write_bytes(bytes(raw))
        con = sqlite3.connect(db)
        try:
            damaged = con.execute("PRAGMA integrity_check").fetchone()[0] != "ok"
        except sqlite3.DatabaseError:  # "database disk image is malformed"
            damaged = True
        finally:
            con.close()
        assert damaged  # the fault is real
    elif kind == "a-record-lacks-a-key":  # valid JSON, but a record of feature extraction's accuracy without its data
        with sqlite3.connect(db) as con:
            con.execute("UPDATE feature_accuracy SET body = json_remove(body, '$.data') WHERE id = (SELECT min(id) FROM feature_accuracy)")
        con.close()
    elif kind == "newer-schema":
        with sqlite3.connect(db) as con:
            con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
        con.close()
    elif kind == "read-only":
        db.chmod(0o444)
        home.chmod(0o555)


class _Out:
    def __init__(self, exit_code: int, output: str):
        self.exit_code, self.output = exit_code, output


def _invoke(args: list[str], env: dict, unprivileged: bool, place: Path) -> _Out:
    """Run the CLI; ``unprivileged``: as a user without root's power over permissions (root writes anything)."""
    import subprocess
    import sys

    if not unprivileged or os.geteuid() != 0:
        out = CliRunner().invoke(main, args, env=env)
        return _Out(out.exit_code, out.output)
    user_home = place / "user"
    user_home.mkdir(exist_ok=True)
    user_home.chmod(0o777)
    run = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m", "advisor.cli", *args],
                         env={**os.environ, **env, "HOME": str(user_home)}, capture_output=True, text=True, timeout=600)
    if "setpriv" in run.stderr and run.returncode != 0 or "No module named" in run.stderr:
        pytest.skip(f"cannot run as an unprivileged user here: {run.stderr.strip()[-200:]}")
    return _Out(run.returncode, run.stdout + run.stderr)


@pytest.mark.slow
@pytest.mark.parametrize("kind", STORE_FAULTS)
def test_a_store_under_faults_ends_in_one_line_and_loses_nothing(store_place, kind):
    place, data, stocked = store_place
    home = place / f"home-{kind}"
    _fault(kind, stocked, home)
    env = {"ADVISOR_HOME": str(home)}
    before = home.read_bytes() if home.is_file() else (home / "advisor.db").read_bytes()
    commands = {"calibrate": ["calibrate", "--show"], "recommend": ["recommend", "--data", str(data), "--minutes", "1"],
                "probe": ["probe", "--data", str(data), "--minutes", "1", "--seconds", "2"]}
    for name, args in commands.items():
        out = _invoke(args, env, kind == "read-only", place)
        text = out.output
        assert "Traceback" not in text, (name, text)
        about_store = [line for line in text.splitlines() if line.startswith(("Error:", "warning:")) and ("advisor.db" in line or "home" in line)]
        if kind in ("newer-schema", "home-is-a-file"):  # refused: one Error line naming the way out, the store untouched
            assert out.exit_code == 1 and _one_error(out, "ADVISOR_HOME"), (name, text)
            assert ("newer advisor" if kind == "newer-schema" else "not a folder") in text
            now = home.read_bytes() if home.is_file() else (home / "advisor.db").read_bytes()
            assert now == before and not list(home.parent.glob(f"{home.name}/*.unreadable-*")), name
            continue
        assert out.exit_code == 0, (name, text)
        if kind == "damaged":  # read part-way would lose records silently: moved aside whole, said once
            if name == "calibrate":
                assert len(about_store) == 1 and "moved it to" in about_store[0] and "damaged" in about_store[0], text
                aside = list(home.glob("advisor.db.unreadable-*"))
                assert len(aside) == 1 and aside[0].read_bytes() == before  # nothing lost: kept for recovery
            else:
                assert not about_store, (name, text)  # the new store works
        elif kind == "read-only":  # read as it is; what cannot be stored is said once, the advice still given
            assert _counts(home / "advisor.db") == _counts(stocked / "advisor.db")
            if name == "calibrate":
                assert not about_store and "feature extraction" in text, text
            else:  # a probe always stores its result; recommend only what it measured anew (here it may reuse all)
                assert len(about_store) == (1 if name == "probe" else len(about_store)) <= 1, (name, text)
                assert all("cannot be written" in line for line in about_store), (name, text)
                assert "Saved for calibration" not in text
        elif kind == "a-record-lacks-a-key":  # the row that does not fit is skipped, named; the rest is read
            if name == "calibrate":
                assert len(about_store) == 1 and "skipped feature_accuracy record #" in about_store[0] and "data" in about_store[0], text
            assert len([line for line in text.splitlines() if line.startswith("warning:") and "skipped" in line]) <= 1
