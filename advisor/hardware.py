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
    return torch.channels_last if hw.device == "cuda" else torch.contiguous_format
