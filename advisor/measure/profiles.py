"""Hardware profiles: what planning needs to know about the device the training will run on.

A profile holds each configuration's training images/s at the resolutions advisor plans, measured on the
device (``advisor hardware --save``, with :mod:`advisor.measure.timing`) or **estimated** for a device nobody has
profiled (``--device-name a100``). Planning with a profile times nothing locally.

The estimate. A measured profile (the anchor: the H100 profile shipped in ``advisor/resources/profiles``) gives each
configuration's step time ``t``. Part of it is the device's work ``g`` — the step's FLOPs at the network family's
effective speed, taken from timm's published RTX 3090 training figures (``../shared/throughput-priors``) and
scaled by memory bandwidth — and the rest is the host launching kernels, which stays on another device. A step
takes ``max(host, device work)`` since the two overlap. On the target device the work is scaled by the
bandwidth ratio (twice that in fp32, on chips without bf16). Bandwidth, not peak FLOPs: these networks are
memory-bound — across timm's published RTX 3090 / 4090 / 5090 inference figures bandwidth predicts the speed-ups
of tf_efficientnet_lite0 and resnet10t within 6–20 %, peak tensor FLOPs misses by 60–85 %
(``benchmarks/estimate_check.py`` prints the check).
"""

from __future__ import annotations

import functools
import math
import tomllib
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from .. import registry, store
from ..errors import AdvisorError
from ..schemas import Hardware, StrategyName, Throughput, TimingConditions

DATA = Path(__file__).parents[1] / "resources"
ACCELERATORS = DATA / "accelerators.toml"
ANCHORS = {"h100": DATA / "profiles" / "h100.json"}  # measured profiles shipped with advisor
# timm's training benchmark on an RTX 3090 (AMP, batch 512; benchmark-train-amp-nchw-pt112-cu113-rtx3090.csv):
# (network, images/s, image side) per family, to turn FLOPs into device time.
PUBLISHED_TRAIN_3090 = {"efficientnet": ("tf_efficientnet_lite0", 1592.0, 224), "resnet": ("resnet18", 2764.22, 224)}
BANDWIDTH_3090 = 936.0
PROFILE_RESOLUTIONS = (32, 64, 128, 224)


class Measurement(BaseModel):
    variant: str = Field(description="a configuration: feature_extraction, fine_tune@<depth>, retrain, scratch@<network>")
    resolution: int
    batch_size: int
    images_per_second: float | None = None
    peak_memory_mb: float | None = None
    error: str | None = None


class HardwareProfile(BaseModel):
    """Training speed of every configuration advisor plans, on one device."""

    device: Hardware
    source: Literal["measured", "estimated"] = "measured"
    backbone: str = registry.DEFAULT_BACKBONE
    time: str
    advisor_version: str = ""
    torch_version: str = ""
    method: str = ""
    assumption: str = Field("", description="estimated profiles: how the figures were derived")
    memory_gb: float | None = None
    conditions: list[TimingConditions] = Field(default_factory=list)
    measurements: list[Measurement]

    def images_per_second(self, variant: str, resolution: int, batch_size: int) -> tuple[float, str]:
        """Images/s of ``variant`` at ``resolution`` (interpolated in log-log between profiled resolutions,
        held flat beyond them) at the profiled batch nearest ``batch_size``; and a note when it is held flat."""
        rows = [m for m in self.measurements if m.variant == variant and m.images_per_second]
        if not rows:
            raise AdvisorError(f"The hardware profile has no measurement of {variant}.")
        batch = min({m.batch_size for m in rows}, key=lambda b: (abs(math.log(b / batch_size)), -b))
        points = sorted((m.resolution, m.images_per_second) for m in rows if m.batch_size == batch)
        res = [p[0] for p in points]
        span = f"{res[0]}px" if res[0] == res[-1] else f"{res[0]}–{res[-1]}px"
        note = "" if res[0] <= resolution <= res[-1] else f"{variant} profiled at {span} only: held at its nearest figure"
        if resolution <= res[0] or len(points) == 1:
            return points[0][1], note
        if resolution >= res[-1]:
            return points[-1][1], note
        (r0, v0), (r1, v1) = next((points[i], points[i + 1]) for i in range(len(points) - 1) if points[i + 1][0] >= resolution)
        w = math.log(resolution / r0) / math.log(r1 / r0)
        return math.exp(math.log(v0) + w * (math.log(v1) - math.log(v0))), note


def load(path: str | Path) -> HardwareProfile:
    """A saved profile, with one-line errors for a missing or malformed file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise AdvisorError(f"Hardware profile '{path}' not found; make one with `advisor hardware --save FILE` on the device.")
    try:
        return HardwareProfile.model_validate_json(path.read_bytes())
    except (ValidationError, ValueError) as exc:
        raise AdvisorError(f"'{path}' is not a hardware profile: {str(exc).splitlines()[0]}") from None


def save(profile: HardwareProfile, path: str | Path) -> Path:
    return store.atomic_replace(Path(path).expanduser(), lambda tmp: tmp.write_text(profile.model_dump_json(indent=1)))


def configurations(resolution: int) -> list[registry.Strategy]:
    """What a profile times at ``resolution``: feature extraction, fine-tune at each depth, retrain, and each
    scratch network meant for that resolution."""
    out = [registry.get("feature_extraction")]
    out += [registry.resolve("fine_tune", resolution, 0, depth=d) for d in registry.FINE_TUNE_DEPTHS]
    out.append(registry.get("retrain"))
    for arch in registry.ARCHITECTURES.values():
        if arch.min_resolution <= resolution <= (arch.max_resolution or resolution):
            out.append(replace(registry.get("scratch"), arch=arch.name))
    return out


def measure(hw: Hardware, batch_size: int, resolutions=PROFILE_RESOLUTIONS, backbone: str = registry.DEFAULT_BACKBONE,
            log=lambda _: None) -> HardwareProfile:
    """Time every configuration at each resolution on this device (:func:`advisor.measure.timing.time_configurations`)."""
    import torch

    from .. import __version__, hardware

    from . import timing

    rows, conditions = [], []
    for res in resolutions:
        configs = {s.variant: (s, res) for s in configurations(res)}
        log(f"timing {len(configs)} configurations at {res}px, batch {batch_size} …")
        hardware.reset_peak_memory(hw)
        result = timing.time_configurations(configs, batch_size, hw, backbone)
        conditions.append(result.conditions)
        peak = round(hardware.peak_memory_mb(hw), 1) if hw.device == "cuda" else None
        for name, ips in result.images_per_second.items():
            rows.append(Measurement(variant=name, resolution=res, batch_size=batch_size, images_per_second=ips, peak_memory_mb=peak))
        log(f"  {timing.describe(result.conditions)}" + (f"; {'; '.join(result.problems)}" if result.problems else ""))
    memory = torch.cuda.get_device_properties(0).total_memory / 2**30 if hw.device == "cuda" else None
    return HardwareProfile(
        device=hw, source="measured", backbone=backbone, time=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        advisor_version=__version__, torch_version=torch.__version__, memory_gb=memory and round(memory, 1),
        method="advisor.measure.timing: best of interleaved rounds (median step of each); random pixels; one AdamW step for "
               "trained configurations, a forward pass for feature extraction; peak memory per resolution",
        conditions=conditions, measurements=rows,
    )


def accelerators() -> dict[str, dict]:
    with open(ACCELERATORS, "rb") as f:
        return tomllib.load(f)


def _family(variant: str) -> str:
    return "resnet" if variant.startswith("scratch@") else "efficientnet"


def _published_seconds_per_flop(family: str, bandwidth: float, backbone: str) -> float:
    """Device seconds per FLOP of a training step for a network family, from timm's RTX 3090 figure, at a
    device of ``bandwidth`` GB/s."""
    from . import timing

    network, ips, side = PUBLISHED_TRAIN_3090[family]
    strat = registry.get("retrain") if family == "efficientnet" else registry.resolve(registry.get("scratch"), side, 10**6)
    flops = timing.step_flops(strat, side, backbone) if family == "efficientnet" else _timm_train_flops(network, side)
    return 1.0 / (ips * flops) * BANDWIDTH_3090 / bandwidth


@functools.cache
def _timm_train_flops(network: str, side: int) -> float:
    import timm
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model = timm.create_model(network, pretrained=False).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, side, side))
    return 3.0 * counter.get_total_flops()


def _variant_strategy(variant: str, resolution: int) -> registry.Strategy:
    name, _, extra = variant.partition("@")
    strat = registry.get(name)
    if name == "scratch":
        return replace(strat, arch=extra)
    return registry.resolve(strat, resolution, 0, depth=int(extra) if extra else None)


def estimate(device_name: str, anchor: HardwareProfile | None = None) -> HardwareProfile:
    """An estimated profile for a device in the accelerator registry, scaled from a measured ``anchor``
    (default: the shipped H100 profile); a shipped profile measured on that very device wins."""
    from . import timing

    table = accelerators()
    key = device_name.lower().replace(" ", "")
    if key not in table:
        raise AdvisorError(f"Unknown device name '{device_name}'; known: {', '.join(table)} (or measure one: advisor hardware --save).")
    if anchor is None and key in ANCHORS:
        return load(ANCHORS[key])
    anchor = anchor or load(ANCHORS["h100"])
    target = table[key]
    src_key = next((k for k, v in table.items() if v["name"] == anchor.device.name or k in anchor.device.name.lower()), None)
    if src_key is None:
        raise AdvisorError(f"The anchor profile's device '{anchor.device.name}' is not in the accelerator registry.")
    src = table[src_key]
    fp32 = target["precision"] == "fp32" and anchor.device.precision == "bf16"
    scale = src["bandwidth_gbs"] / target["bandwidth_gbs"] * (2.0 if fp32 else 1.0)
    rows = []
    for m in anchor.measurements:
        if not m.images_per_second:
            continue
        if m.peak_memory_mb and m.peak_memory_mb / 1024 > 0.9 * target["memory_gb"]:
            rows.append(m.model_copy(update={"images_per_second": None, "error": "estimated not to fit in memory"}))
            continue
        strat = _variant_strategy(m.variant, m.resolution)
        t = m.batch_size / m.images_per_second
        work = m.batch_size * timing.step_flops(strat, m.resolution, anchor.backbone) * _published_seconds_per_flop(
            _family(m.variant), src["bandwidth_gbs"], anchor.backbone)
        t_new = t * scale if work >= t else max(t, work * scale)
        rows.append(m.model_copy(update={"images_per_second": round(m.batch_size / t_new, 1)}))
    hw = Hardware(device="cuda", name=target["name"], cpu_threads=anchor.device.cpu_threads, gpu_available=True,
                  precision=target["precision"])
    return HardwareProfile(
        device=hw, source="estimated", backbone=anchor.backbone, time=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        memory_gb=target["memory_gb"], measurements=rows,
        assumption=f"scaled from the profile measured on {anchor.device.name} ({anchor.time[:10]}): device work by memory "
                   f"bandwidth ({src['bandwidth_gbs']:g} → {target['bandwidth_gbs']:g} GB/s{', ×2 in fp32' if fp32 else ''}), "
                   "host launch time as measured there (a slower host CPU is slower); device work from timm's RTX 3090 "
                   "training figures",
    )


def variant_of(strategy: StrategyName, resolution: int, n_images: int) -> str:
    return registry.resolve(strategy, resolution, n_images).variant


def throughput(profile: HardwareProfile, resolution: int, batch_size: int, n_images: int, scratch_resolution: int,
               origin: str) -> Throughput:
    """Each strategy's images/s on the profiled device at the planned resolution and batch (no timing here)."""
    ips, notes = {}, []
    for s in registry.STRATEGY_NAMES:
        res = scratch_resolution if s == "scratch" else resolution
        variant = variant_of(s, res, n_images)
        if s == "scratch" and not any(m.variant == variant for m in profile.measurements):
            variant = next((m.variant for m in profile.measurements if m.variant.startswith("scratch@")), variant)
        ips[s], note = profile.images_per_second(variant, res, batch_size)
        ips[s] = round(ips[s], 2)
        if note:
            notes.append(note)
    return Throughput(
        resolution=resolution, batch_size=batch_size, images_per_second=ips, seconds=0.0, source=profile.source,
        origin=origin, detail=f"{profile.device.name} ({profile.source} profile of {profile.time[:10]})"
        + (f"; {profile.assumption}" if profile.assumption else ""),
        problems=sorted(set(notes)),
    )
