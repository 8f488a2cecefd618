"""Memory bounds for user-given sizes and batches: refuse, before allocating, what cannot fit.

A size or batch typed by a user (`--size 20000x40000`, `--batch 100000`) would otherwise end in an allocation
traceback minutes later, or in the machine swapping. Commands estimate what they will need (their own rough,
conservative models) and call `check_fits`, which compares the estimate with the memory available now: on CUDA the
device's free memory, otherwise the system's available memory (Linux MemAvailable).
"""

from __future__ import annotations

import os

import torch


def available_bytes(device: torch.device | str = "cpu") -> int:
    """Memory that an allocation on `device` can use now, in bytes."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))  # other Unixes


def gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB"


def check_fits(what: str, estimate: int, *, device: torch.device | str = "cpu", hint: str,
               limit: int | None = None) -> None:
    """Raise MemoryError when `estimate` bytes exceed `limit` (default: what `device` has available), with the
    estimate, the limit and `hint` (how to ask for less) in the message. what: the request, e.g. "--batch 100000"."""
    limit = available_bytes(device) if limit is None else limit
    if estimate > limit:
        where = "GPU" if torch.device(device).type == "cuda" else "system"
        raise MemoryError(f"{what} needs about {gib(estimate)} (estimate), more than the {gib(limit)} of {where} "
                          f"memory available; {hint}")


RENDER_BASE = 400 * 2**20  # interpreter, torch, model, body
RENDER_PER_PIXEL = 300  # bytes per output pixel of `neural render` (compositing, RGBA, PNG); measured 217 to 255


def check_render_size(width: int, height: int) -> None:
    """Refuse an output size whose frame cannot be composited in the memory available."""
    check_fits(f"--size {width}x{height}", RENDER_BASE + RENDER_PER_PIXEL * width * height,
               hint="choose a smaller --size (the model's own frame is the sharpest anyway)")
