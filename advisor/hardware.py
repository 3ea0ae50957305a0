"""Which device to train on, and how: CUDA with bf16 autocast when present, else the CPU in fp32."""

from __future__ import annotations

import contextlib
import os

import torch

from .errors import AdvisorError
from .schemas import Hardware


def detect(device: str | None = None) -> Hardware:
    """Describe the device advisor will plan for: ``device`` if given ('cpu' or 'cuda'), else the best present."""
    gpu = torch.cuda.is_available()
    if device not in (None, "cpu", "cuda"):
        raise AdvisorError(f"Unknown device '{device}'; use 'cpu' or 'cuda'.")
    if device == "cuda" and not gpu:
        raise AdvisorError("--device cuda was asked for, but torch sees no CUDA GPU on this machine.")
    use_gpu = gpu if device is None else device == "cuda"
    threads = torch.get_num_threads()
    if use_gpu:
        name = torch.cuda.get_device_name(0)
        bf16 = torch.cuda.is_bf16_supported()
        return Hardware(device="cuda", name=name, cpu_threads=threads, gpu_available=True, precision="bf16" if bf16 else "fp32")
    note = "" if gpu else f"No GPU found: planning for this CPU ({os.cpu_count()} cores, {threads} torch threads)."
    return Hardware(device="cpu", name=f"CPU ({os.cpu_count()} cores)", cpu_threads=threads, gpu_available=gpu, precision="fp32", note=note)


def autocast(hw: Hardware) -> contextlib.AbstractContextManager:
    """bf16 autocast on a GPU that supports it, nothing otherwise."""
    if hw.device == "cuda" and hw.precision == "bf16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def memory_format(hw: Hardware) -> torch.memory_format:
    """channels_last: faster convolutions on CUDA and, measured here, on the CPU too (benchmarks/throughput.py)."""
    return torch.channels_last


def reset_peak_memory(hw: Hardware) -> None:
    if hw.device == "cuda":
        torch.cuda.reset_peak_memory_stats()


def peak_memory_mb(hw: Hardware) -> float:
    """Peak GPU memory allocated since the last reset, or on a CPU the process's peak resident size."""
    if hw.device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def fits_on_device(hw: Hardware, nbytes: int, share: float = 0.3) -> bool:
    """Whether a tensor of ``nbytes`` may live on the device (always on a CPU; ≤ ``share`` of free GPU memory)."""
    if hw.device != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info()
    return nbytes <= share * free
