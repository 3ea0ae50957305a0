"""Calibration records of this machine: measured throughput and the learned model's errors seen by probes.

Kept in the machine's SQLite database (``<MachineState.home>/advisor.db``, :class:`advisor.store.Database`). Later recommendations on the
same machine reuse the throughput instead of timing again, and correct the learned model by the errors
probes observed (:func:`correction`).
"""

from __future__ import annotations

import math
from datetime import datetime, timezone

from ..state import MachineState
from ..registry import STRATEGY_NAMES
from ..schemas import DataFacts, Hardware, Quantity, StrategyName, Throughput
from ..units import EpochEquivalents

PRIOR_WEIGHT = 0.5  # a zero-error pseudo-probe of this weight shrinks the correction while probes are few
OTHER_DATA = 0.25  # a probe of other, close data counts this much: the model's error is mostly that data set's
# Other data is close when each of these holds (the model's error moves with size, classes and similarity):
CLOSE_RATIO = 2.0  # images per class and classes within this factor of the probed data's
CLOSE_SIMILARITY = 0.1  # similarity to ImageNet within this of the probed data's
NOISE_IMAGES = 50  # a probe with this many validation images counts half


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _mine(state: MachineState, kind: str) -> list[dict]:
    """This machine's records of ``kind`` (a table of :mod:`advisor.records`), each checked against its type."""
    if not state.stored():
        return []
    with state.database() as db:
        return db.read(kind, state.machine)


def _add(state: MachineState, kind: str, record: dict) -> None:
    with state.database() as db:
        db.add(kind, record)


RECORD_DAYS = 30  # a throughput record older than this is timed again (drivers, libraries and load change)


def _versions() -> dict[str, str]:
    import torch

    from .. import __version__

    return {"advisor_version": __version__, "torch_version": torch.__version__}


def reusable(record: dict, now: datetime | None = None) -> str | None:
    """Why a throughput record may not be reused (None when it may): implausible, by other advisor/torch
    versions, or too old. A record timed on a busy machine is reusable, but only provisionally (:func:`provisional`)."""
    cond = record.get("conditions")
    if cond is None:
        return "it predates timing conditions"
    if not cond["plausible"]:
        return "its figures are implausible"
    if any(record.get(k) != v for k, v in _versions().items()):
        return "it was timed by another advisor or torch version"
    age = (now or datetime.now(timezone.utc)) - datetime.fromisoformat(record["time"])
    if age.days > RECORD_DAYS:
        return f"it is {age.days} days old"
    return None


def provisional(record: dict) -> bool:
    """Timed while other processes loaded the machine: used by later advice (which says so) until a timing on a
    quiet machine replaces it, so a busy machine costs one timing, not one per call."""
    cond = record.get("conditions") or {}
    return not cond.get("quiet", True)


def _key(record: dict) -> tuple:
    """What a throughput record is for: device, backbone, resolution, batch and scratch network."""
    return record["device_name"], record["backbone"], record["resolution"], record["batch_size"], record.get("scratch")


def _throughput_records(state: MachineState, hw: Hardware, backbone: str, resolution: int, batch_size: int,
                        scratch: str) -> list[dict]:
    """This machine's throughput records for one configuration, reusable or not."""
    return [r for r in _mine(state, "throughput") if _key(r) == (hw.name, backbone, resolution, batch_size, scratch)]


def skipped_throughput(state: MachineState, hw: Hardware, backbone: str, resolution: int, batch_size: int,
                       scratch: str) -> str | None:
    """Why the newest throughput record for this configuration may not be reused, when none may (one line);
    None when there is none, or one may."""
    same = _throughput_records(state, hw, backbone, resolution, batch_size, scratch)
    if not same or any(reusable(r) is None for r in same):
        return None
    r = max(same, key=lambda r: r["time"])
    return f"the throughput record of {r['time']}{' (provisional)' if provisional(r) else ''} is not reused: {reusable(r)}"


def cached_throughput(state: MachineState, hw: Hardware, backbone: str, resolution: int, batch_size: int,
                      scratch: str) -> Throughput | None:
    """The latest reusable (:func:`reusable`) throughput timed on this machine and device for this backbone,
    resolution, batch (the device's standard batch: others are derived) and scratch network (``scratch``: e.g. ``cnn_s@28px``); a quiet one before a
    :func:`provisional` one."""
    found = [r for r in _throughput_records(state, hw, backbone, resolution, batch_size, scratch) if reusable(r) is None]
    if not found:
        return None
    r = max(found, key=lambda r: (not provisional(r), r["time"]))
    tp = Throughput.model_validate(r["throughput"])
    how = (f"from a provisional record of {r['time']} (timed while other processes used "
           f"{(r['conditions'].get('other_load') or 0):.0%} of the CPUs; a timing on a quiet machine will replace it)"
           if provisional(r) else f"from a record of {r['time']}")
    return tp.model_copy(update={"origin": how, "seconds": 0.0})


def record_throughput(state: MachineState, tp: Throughput, hw: Hardware, backbone: str, scratch: str,
                      changes: dict[StrategyName, tuple[float, float]] | None = None) -> None:
    """Store a throughput for later advice on this machine; ``changes``: when a probe's step times replace
    timed figures, each replaced strategy's (timed, probed) images/s."""
    _add(state, "throughput", {"kind": "throughput", "machine": state.machine, "device_name": hw.name, "backbone": backbone,
                                          "scratch": scratch, "resolution": tp.resolution, "batch_size": tp.batch_size,
                                          "throughput": tp.model_dump(), "conditions": tp.conditions and tp.conditions.model_dump(),
                                          "source": "probe" if changes else "timing", "changes": changes or {},
                                          **_versions(), "time": _now()})


def cached_accuracy(state: MachineState, key: str) -> Quantity | None:
    """A baseline accuracy measured earlier on the same files and settings, by this advisor version: feature
    extraction's (``key``: :func:`advisor.measure.fe_accuracy.fingerprint`) or the pixel baseline's
    (:func:`advisor.measure.fe_accuracy.pixel_fingerprint`)."""
    for r in reversed(_mine(state, "feature_accuracy")):
        if r["key"] == key and r.get("advisor_version") == _versions()["advisor_version"]:
            q = Quantity.model_validate(r["accuracy"])
            return q.model_copy(update={"detail": q.detail + f"; measured {r['time']}, reused"})
    return None


def record_accuracy(state: MachineState, key: str, data: str, accuracy: Quantity) -> None:
    """Store a baseline accuracy measured on a data set (:func:`cached_accuracy`) for later advice on the same files."""
    _add(state, "feature_accuracy", {"kind": "feature_accuracy", "machine": state.machine, "key": key, "data": data,
                                     "accuracy": accuracy.model_dump(), **_versions(), "time": _now()})


def probe_record(errors: dict[StrategyName, float], reach: dict[StrategyName, float | None], val_images: int,
                 data: str, facts: DataFacts) -> dict:
    """What one probe tells calibration: the model's errors (observed − predicted normalised accuracy) at the
    probe's conditions, how far each strategy trained (epoch-equivalents; None for feature extraction), the
    validation size, the data probed and its facts (for :func:`closeness`)."""
    return {"errors": errors, "reach": reach, "val_images": val_images, "data": data,
            "facts": {k: getattr(facts, k) for k in ("n_images", "n_classes", "similarity")}}


def closeness(record: dict, data: str | None, facts: DataFacts | None) -> float:
    """How much a probe record counts for advice on ``data`` with ``facts``: fully for the same data,
    :data:`OTHER_DATA` for other data that is close (:data:`CLOSE_RATIO`, :data:`CLOSE_SIMILARITY`), else not
    at all — a probe of digits says nothing about an unrelated numbers-only call."""
    if data is not None and record.get("data") == data:
        return 1.0
    theirs = record.get("facts")
    if facts is None or not theirs:
        return 0.0
    ratio = max(abs(math.log((facts.n_images / facts.n_classes) / (theirs["n_images"] / theirs["n_classes"]))),
                abs(math.log(facts.n_classes / theirs["n_classes"])))
    near = ratio <= math.log(CLOSE_RATIO) and abs(facts.similarity - theirs["similarity"]) <= CLOSE_SIMILARITY
    return OTHER_DATA if near else 0.0


def record_probe(state: MachineState, record: dict, hw: Hardware) -> None:
    """Store a :func:`probe_record` for later advice on this machine."""
    _add(state, "probe", {"kind": "probe", "machine": state.machine, "device_name": hw.name, **record, "time": _now()})


def probes(state: MachineState) -> list[dict]:
    """This machine's probe records, oldest first."""
    return _mine(state, "probe")


def probe_weight(reach: EpochEquivalents | None, val_images: int, target: EpochEquivalents) -> float:
    """How much of a probe's observed error carries to the budget ``target``: in proportion to how far the
    probe trained toward it (feature extraction is complete after one pass, so its probe counts fully), and
    more with more validation images (less noise)."""
    progress = 1.0 if reach is None else reach.share_of(target)
    return progress * val_images / (val_images + NOISE_IMAGES)


def correction(records: list[dict], target: EpochEquivalents, data: str | None = None,
               facts: DataFacts | None = None) -> tuple[dict[StrategyName, float], int]:
    """Per-strategy offset to add to the model's normalised predictions at budget ``target``, and how many
    probes it rests on: the probes' errors averaged with :func:`probe_weight` × :func:`closeness` to ``data``
    and ``facts``, shrunk to zero."""
    used = [(r, c) for r in records if (c := closeness(r, data, facts)) > 0]
    out = {}
    for s in STRATEGY_NAMES:
        num = den = 0.0
        for r, c in used:
            if s not in r.get("errors", {}):
                continue
            reach = r.get("reach", {}).get(s)  # stored as a plain number (JSON)
            w = c * probe_weight(None if reach is None else EpochEquivalents(reach), r.get("val_images", 0), target)
            num, den = num + w * r["errors"][s], den + w
        out[s] = num / (den + PRIOR_WEIGHT)
    return out, len(used)


def show(state: MachineState) -> str:
    records = _mine(state, "throughput")
    found = probes(state)
    measured = _mine(state, "feature_accuracy")
    lines = [f"Calibration of machine '{state.machine}' ({state.db_path}):"]
    if not records and not found and not measured:
        return lines[0] + "\n  nothing recorded yet; `advisor recommend` stores throughput, `advisor probe` the model's errors."
    now = datetime.now(timezone.utc)
    for r in records:
        ips = ", ".join(f"{s} {v:.0f}" for s, v in r["throughput"]["images_per_second"].items())
        age = (now - datetime.fromisoformat(r["time"])).total_seconds() / 86400
        why = reusable(r, now)
        changed = ", ".join(f"{s} {a:.0f} → {b:.0f}" for s, (a, b) in r.get("changes", {}).items())
        quiet_after = [o["time"] for o in records if _key(o) == _key(r) and o["time"] > r["time"]
                       and not provisional(o) and reusable(o, now) is None]
        lines.append(f"  throughput {r['time']} ({age:.1f} days ago) {r['device_name']}, {r['backbone']} at {r['resolution']}px "
                     f"batch {r['batch_size']}: {ips} img/s"
                     + (f"; a probe's step times replaced the timed figures ({changed} img/s)" if changed else "; timed")
                     + " — " + (f"not reused: {why}" if why else
                                (f"provisional (timed on a busy machine), replaced by the quiet record of {quiet_after[0]}"
                                 if provisional(r) and quiet_after else
                                 "provisional (timed on a busy machine): reused until a timing on a quiet machine replaces it"
                                 if provisional(r) else "may be reused by later advice with the same device, resolution and scratch network "
                                    "(smaller batches derived from it)")))
    for p in found:
        errs = ", ".join(f"{s} {v:+.3f}" for s, v in p["errors"].items()) or "none (no learned model predicted it)"
        advice = p.get("advice")
        changed = ("" if not advice else f"; advice on that data {advice['before']} → {advice['after']}"
                   if advice["before"] != advice["after"] else f"; advice on that data unchanged ({advice['before']})")
        kind = "full run (advisor train)" if p.get("source") == "train" else "probe"
        lines.append(f"  {kind} {p['time']} on {p['data']}: model error (normalised accuracy) {errs}{changed}")
    for r in measured:
        q = Quantity.model_validate(r["accuracy"])
        lines.append(f"  feature extraction {r['time']} on {r['data']}: {q.value:.1%} measured"
                     + (f" ({q.low:.0%}–{q.high:.0%})" if q.low is not None and q.high is not None else "")
                     + " — reused by later advice on the same files" + ("" if r.get("advisor_version") == _versions()["advisor_version"]
                                                                       else " (not reused: another advisor version)"))
    if found:
        lines.append(f"  later advice adds these errors to the model's predictions, weighted by how far each probe trained "
                     f"toward the new budget and by its validation images, shrunk by a pseudo-probe of weight {PRIOR_WEIGHT:g}; "
                     f"probes of other data count {OTHER_DATA:.0%} when it is close (images per class and classes within "
                     f"×{CLOSE_RATIO:g}, similarity within {CLOSE_SIMILARITY:g}), else not at all")
    return "\n".join(lines)


def reset(state: MachineState) -> int:
    """Forget what was recorded on this machine (other machines' records stay); returns how many records went."""
    if not state.stored():
        return 0
    with state.database() as db:
        return db.delete(state.machine)


def export(state: MachineState) -> list[dict]:
    """Everything recorded on this machine, as plain records (``table`` says which kind)."""
    if not state.stored():
        return []
    from ..store import TABLES

    with state.database() as db:
        return [{"table": t, **r} for t in TABLES for r in db.read(t, state.machine)]
