"""Threads per process, so that torch processes sharing the cores do not oversubscribe them.

Each torch process uses every core for its intra-op threads by default; two
such processes on two cores slow each other down many times over (a training
step went from 0.12 s to 4 s on the 2-core CI machine). ``torchrun`` sets
``OMP_NUM_THREADS=1`` instead, which wastes the cores of a larger machine.
The recipes call :func:`set_threads` at start: each of the node's processes
gets an equal share of the cores this process may run on. DataLoader workers
already run with one thread each (PyTorch sets it).

Example
-------
>>> threads_per_process(cores=16, local_processes=2)
8
>>> threads_per_process(cores=2, local_processes=4)
1
"""

from __future__ import annotations

import logging
import os
import platform
from typing import Optional

import torch

logger = logging.getLogger(__name__)
THREADS_VARIABLE = "HIERADIST_THREADS"  # set it to choose the threads per process yourself


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. a container's or taskset's share)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def threads_per_process(cores: Optional[int] = None, local_processes: Optional[int] = None) -> int:
    """An equal share of ``cores`` (default: :func:`available_cores`) for each of
    ``local_processes`` (default: torchrun's ``LOCAL_WORLD_SIZE``, else 1); at least 1."""
    cores = available_cores() if cores is None else cores
    if local_processes is None:
        local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(1, cores // max(1, local_processes))


def set_threads() -> int:
    """Set torch's intra-op threads to this process's share (or ``HIERADIST_THREADS``); return it."""
    chosen = os.environ.get(THREADS_VARIABLE)
    if chosen:
        try:
            threads = int(chosen)
        except ValueError:
            raise ValueError(f"{THREADS_VARIABLE}={chosen!r} is not a number of threads") from None
        if threads < 1:
            raise ValueError(f"{THREADS_VARIABLE}={chosen!r}: give at least 1 thread")
    else:
        threads = threads_per_process()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
        logger.info("torch uses %d threads in this process (%s)", threads,
                    f"{THREADS_VARIABLE}" if chosen else f"{available_cores()} cores / "
                    f"{os.environ.get('LOCAL_WORLD_SIZE', '1')} processes on this node")
    return threads


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else :func:`platform.processor`)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_description() -> str:
    """What a run or a measurement ran on, for its record: cores, CPU model and the
    instruction set torch's kernels use, torch version.

    The same code gives other timings and, through other float kernels, other
    trained models on another CPU, so results carry this line.
    """
    return (f"{available_cores()} CPU cores ({cpu_model()}, {torch.backends.cpu.get_cpu_capability()}), "
            f"torch {torch.__version__}")
