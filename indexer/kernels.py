"""Which kernel runs a hot product on this machine: capability first, then a timed probe, cached.

A kernel that one instruction set runs fast can be tens of times slower on
another and still return the right answer: ``torch._int_mm`` took 18.2 s on an
AVX2-only EPYC where the same float32 product took 0.30 s, and nothing raised.
So every hardware-dependent choice goes through ``pick``:

- the caller names the choice (``"assign"``, ``"encoder"``) and lists the
  candidates it can run here (capability: a kernel the machine cannot run is
  simply not offered), each as a small probe workload of the real shape family;
- the first time on a machine, each candidate is timed (best of a few runs, a
  slow one is abandoned after its first run) and the fastest wins, unless it
  is within ``MARGIN`` of the portable candidate, which is always correct and
  always offered;
- the verdict is cached in ``<model cache>/kernels.json`` under a key of
  everything that changes which machine code runs: CPU model and flags, the
  ISA caps of torch / oneDNN / MKL / OpenBLAS / faiss (``ATEN_CPU_CAPABILITY``,
  ``ONEDNN_MAX_CPU_ISA``, ...), library versions and device.

``MEMEX_FORCE_KERNEL=name=choice[,name=choice]`` skips the probe (benchmarks,
and showing that ``bench/cliff_guard.py`` catches a cliff); ``MEMEX_KERNEL_CACHE``
moves the cache file.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import platform
import threading
import time
from collections.abc import Callable
from pathlib import Path

from indexer import config, durable

log = logging.getLogger(__name__)

CACHE_VERSION = 1
MARGIN = 1.15  # a candidate must beat the portable one by this factor to be chosen
PROBE_REPEATS = 3
# CPU flags that change which kernels the libraries dispatch to (x86 and ARM spellings)
_FLAGS = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
          "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16", "asimd", "asimddp",
          "i8mm", "sve", "bf16")
ISA_ENV = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS",
            "OPENBLAS_CORETYPE", "FAISS_SIMD_LEVEL", "FAISS_OPT_LEVEL")
_lock = threading.Lock()
_memo: dict[str, str] = {}


def cpu_flags() -> set[str]:
    """The CPU feature flags this process sees (Linux ``/proc/cpuinfo``; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":")[0].strip() in ("model name", "CPU part"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor()


def machine() -> dict:
    """Everything that decides which machine code a kernel runs (the cache key's contents)."""
    import torch

    flags = cpu_flags()
    info = {
        "arch": platform.machine(),
        "cpu": _cpu_model(),
        "flags": sorted(f for f in _FLAGS if f in flags),
        "torch": torch.__version__,
        "torch_isa": torch.backends.cpu.get_cpu_capability(),
        "torch_onednn": bool(torch.backends.mkldnn.enabled),
        "cuda": torch.cuda.is_available(),
        "env": {k: os.environ[k] for k in ISA_ENV if k in os.environ},
    }
    faiss = faiss_module()
    info["faiss"] = faiss.__version__ if faiss else None
    info["faiss_simd"] = faiss.SIMDConfig.get_level_name() if hasattr(faiss, "SIMDConfig") else ""
    return info


def machine_key() -> str:
    return hashlib.sha256(json.dumps(machine(), sort_keys=True).encode()).hexdigest()[:16]


def cache_path() -> Path:
    from indexer.models import default_cache_dir

    return config.current().kernel_cache or default_cache_dir() / "kernels.json"


def forced(name: str) -> str | None:
    """The choice ``MEMEX_FORCE_KERNEL`` imposes on ``name``, if any."""
    for item in config.current().force_kernel.split(","):
        key, _, value = item.partition("=")
        if key.strip() == name and value.strip():
            return value.strip()
    return None


def time_probe(fn: Callable[[], object], repeats: int = PROBE_REPEATS,
               give_up: float = float("inf")) -> float:
    """Best wall time of ``repeats`` runs after one warm-up; the warm-up alone when it took
    longer than ``give_up`` seconds (a cliff needs no second look)."""
    t = time.perf_counter()
    fn()
    best = time.perf_counter() - t
    if best > give_up:
        return best
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


@contextlib.contextmanager
def one_thread():
    """torch and faiss on one thread: on a loaded 2-core host, two-thread timings of the
    same kernel varied 10x between runs and reordered the candidates; one thread kept
    the order (a cliff is a cliff on any number of threads)."""
    import torch

    threads = torch.get_num_threads()
    faiss = faiss_module()
    faiss_threads = faiss.omp_get_max_threads() if faiss else None
    torch.set_num_threads(1)
    if faiss:
        faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        if faiss:
            faiss.omp_set_num_threads(faiss_threads)


@functools.cache
def faiss_module():
    """The faiss module, or None where it is not installed (then torch kernels run)."""
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def probe(candidates: dict[str, Callable[[], object]], portable: str,
          single_thread: bool = True) -> tuple[str, dict[str, float]]:
    """The fastest candidate and every candidate's seconds (``inf`` if it raised), on one
    thread unless ``single_thread`` is False (candidates with their own thread pools).

    ``portable`` is timed first; the others give up after one run when that run
    is 4x slower than it. A candidate wins only by beating ``portable`` by ``MARGIN``.
    """
    with one_thread() if single_thread else contextlib.nullcontext():
        seconds = {portable: time_probe(candidates[portable])}
        for name, fn in candidates.items():
            if name == portable:
                continue
            try:
                seconds[name] = time_probe(fn, give_up=4 * seconds[portable])
            except Exception as exc:  # a kernel this build cannot run is just not chosen
                log.info("kernel %s not usable here: %s", name, exc)
                seconds[name] = float("inf")
    best = min(seconds, key=seconds.get)
    if seconds[best] * MARGIN > seconds[portable]:
        best = portable
    return best, seconds


def pick(name: str, candidates: dict[str, Callable[[], object]], portable: str,
         single_thread: bool = True) -> str:
    """The kernel to use for ``name`` on this machine (forced, cached, or probed now).

    ``candidates`` maps each choice to a probe workload; ``portable`` must be among them.
    """
    if portable not in candidates:
        raise ValueError(f"portable kernel {portable!r} is not a candidate for {name!r}")
    choice = forced(name)
    if choice is not None:
        if choice not in candidates:
            raise ValueError(f"MEMEX_FORCE_KERNEL: {name}={choice} is not one of {sorted(candidates)}")
        return choice
    key = f"{machine_key()}/{name}/{','.join(sorted(candidates))}"
    with _lock:
        if key in _memo:
            return _memo[key]
        entry = _read_cache().get(key)
        if entry and entry.get("choice") in candidates:
            _memo[key] = entry["choice"]
            return entry["choice"]
        choice, seconds = probe(candidates, portable, single_thread)
        log.info("kernel %s: %s (probe seconds %s)", name, choice, seconds)
        probed = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        _write_cache(key, {"choice": choice, "seconds": {k: round(v, 6) for k, v in seconds.items()},
                           "machine": machine(), "probed": probed})
        _memo[key] = choice
        return choice


def choices() -> dict[str, dict]:
    """This machine's cached verdicts, by kernel name (for ``bench/`` and diagnostics)."""
    prefix = machine_key() + "/"
    return {k[len(prefix):].split("/")[0]: v for k, v in _read_cache().items() if k.startswith(prefix)}


def _read_cache() -> dict:
    try:
        data = json.loads(cache_path().read_text())
    except (OSError, ValueError):
        return {}
    return data.get("entries", {}) if data.get("version") == CACHE_VERSION else {}


def _write_cache(key: str, entry: dict) -> None:
    """Best effort (a read-only cache dir only costs a probe per process); durable."""
    path = cache_path()
    entries = _read_cache()
    entries[key] = entry
    try:
        durable.make_dirs(path.parent)
        durable.write_json(path, {"version": CACHE_VERSION, "entries": entries}, indent=1)
    except OSError as exc:
        log.warning("kernel cache %s not written: %s", path, exc)


def reset_memo() -> None:
    """Forget this process's verdicts (tests, benchmarks that change the environment)."""
    with _lock:
        _memo.clear()
