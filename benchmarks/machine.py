"""What machine a benchmark ran on: enough to tell whether two result files are comparable."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def meminfo_kb(field: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def machine_info(packages: tuple[str, ...]) -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    versions = {}
    for package in packages:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    return {
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "memory_gb": round(meminfo_kb("MemTotal") / 2**20, 1),
        "load_average": [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "versions": versions,
    }


def warm_memory(gib: float) -> dict:
    """Touch ``gib`` GiB in a throwaway process, so that no measured process is the first to touch it.

    Why: on this kind of VM (Firecracker) the host backs guest memory only when it is first
    touched after boot, and that costs about 0.9 s per GiB (measured: filling 1.6 GiB took
    1.68 s the first time, 0.33 s after; 16 GiB 14.8 s, then 4.3 s). Freed memory is
    reused by the next process, so without this the first approach to need a lot of
    memory pays for everyone after it. Capped at what is available, less 1 GiB.
    """
    available = meminfo_kb("MemAvailable") / 2**20
    size = max(0.0, min(gib, available - 1))
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import numpy; numpy.ones({int(size * 2**30) // 8}, dtype=numpy.int64)"],
                   check=True)  # ones, not zeros: zeros would map pages without touching them
    return {"gib": round(size, 1), "seconds": round(time.perf_counter() - started, 2)}
