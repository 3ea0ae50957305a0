"""Calibration records of this machine: measured throughput and the learned model's errors seen by probes.

Kept as JSON lines in ``$ADVISOR_HOME/calibration.jsonl`` (atomic rewrites). Later recommendations on the
same machine reuse the throughput instead of timing again, and add the model's mean observed error per
strategy, shrunk towards zero while there are few probes.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from . import store
from .schemas import STRATEGIES, Hardware, StrategyName, Throughput

PRIOR_PROBES = 2.0  # shrinkage: the mean error counts fully only after many more probes than this


def path() -> Path:
    return store.home() / "calibration.jsonl"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _mine(kind: str) -> list[dict]:
    return [r for r in store.read(path()) if r.get("kind") == kind and r.get("machine") == store.machine_id()]


def cached_throughput(hw: Hardware, backbone: str, resolution: int, batch_size: int) -> Throughput | None:
    """The latest throughput measured on this machine and device for this backbone, resolution and batch."""
    for r in reversed(_mine("throughput")):
        if (r["device_name"], r["backbone"], r["resolution"], r["batch_size"]) == (hw.name, backbone, resolution, batch_size):
            tp = Throughput.model_validate(r["throughput"])
            return tp.model_copy(update={"detail": f"measured on this machine at {r['time']} (advisor calibrate --reset to re-time); "
                                                   + tp.detail, "seconds": 0.0})
    return None


def record_throughput(tp: Throughput, hw: Hardware, backbone: str) -> None:
    store.append(path(), {"kind": "throughput", "machine": store.machine_id(), "device_name": hw.name, "backbone": backbone,
                          "resolution": tp.resolution, "batch_size": tp.batch_size, "throughput": tp.model_dump(), "time": _now()})


def record_probe(errors: dict[StrategyName, float], hw: Hardware, data: str) -> None:
    """Store the model's errors (observed − predicted normalised accuracy) seen by one probe."""
    store.append(path(), {"kind": "probe", "machine": store.machine_id(), "device_name": hw.name, "data": data,
                          "errors": errors, "time": _now()})


def offsets() -> tuple[dict[StrategyName, float], int]:
    """Per-strategy correction to add to the model's normalised predictions on this machine, and the probe count."""
    probes = _mine("probe")
    out = {}
    for s in STRATEGIES:
        errs = [p["errors"][s] for p in probes if s in p["errors"]]
        out[s] = sum(errs) / (len(errs) + PRIOR_PROBES)
    return out, len(probes)


def show() -> str:
    records = _mine("throughput")
    probes = _mine("probe")
    lines = [f"Calibration of machine '{store.machine_id()}' ({path()}):"]
    if not records and not probes:
        return lines[0] + "\n  nothing recorded yet; `advisor recommend` stores throughput, `advisor probe` the model's errors."
    for r in records:
        ips = ", ".join(f"{s} {v:.0f}" for s, v in r["throughput"]["images_per_second"].items())
        lines.append(f"  throughput {r['time']} {r['device_name']}, {r['backbone']} at {r['resolution']}px batch {r['batch_size']}: {ips} img/s")
    for p in probes:
        errs = ", ".join(f"{s} {v:+.3f}" for s, v in p["errors"].items())
        lines.append(f"  probe {p['time']} on {p['data']}: model error (normalised accuracy) {errs}")
    off, n = offsets()
    if n:
        lines.append("  correction applied to the model: " + ", ".join(f"{s} {v:+.3f}" for s, v in off.items())
                     + f" (mean error of {n} probe(s), shrunk by {PRIOR_PROBES:g} pseudo-probes)")
    return "\n".join(lines)


def reset() -> int:
    """Forget what was recorded on this machine (other machines' records stay); returns how many records went."""
    rows = store.read(path())
    keep = [r for r in rows if r.get("machine") != store.machine_id()]
    if len(keep) != len(rows):
        store.write_lines(path(), keep)
    return len(rows) - len(keep)
