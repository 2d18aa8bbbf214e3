"""Kernel choice by probe: the fastest real candidate wins, the verdict is cached per machine."""

from __future__ import annotations

import json
import time

import pytest
import torch

from indexer import kernels


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMEX_KERNEL_CACHE", str(tmp_path / "kernels.json"))
    monkeypatch.delenv("MEMEX_FORCE_KERNEL", raising=False)
    kernels.reset_memo()
    yield tmp_path / "kernels.json"
    kernels.reset_memo()


def product(n: int):
    a = torch.randn(n, 256)
    return lambda: a @ a.T


def counted(fn, calls: list):
    def run():
        calls.append(1)
        return fn()
    return run


def test_a_cliff_is_not_chosen_and_the_verdict_is_cached(own_cache):
    calls = []
    slow = counted(lambda: (product(256)(), time.sleep(0.05)), calls)
    assert kernels.pick("demo", {"float32": product(256), "cliff": slow}, "float32") == "float32"
    assert len(calls) == 1  # far slower on its first run: not timed again
    entry = json.loads(own_cache.read_text())["entries"]
    (key,) = entry
    assert key.startswith(kernels.machine_key()) and entry[key]["choice"] == "float32"
    assert entry[key]["seconds"]["cliff"] > 4 * entry[key]["seconds"]["float32"]
    kernels.reset_memo()  # a new process: reads the file, probes nothing
    assert kernels.pick("demo", {"float32": product(256), "cliff": slow}, "float32") == "float32"
    assert len(calls) == 1


def test_a_clearly_faster_kernel_wins_and_a_slower_one_does_not():
    fast = {"float32": product(512), "smaller": product(64)}
    assert kernels.pick("fast", fast, "float32") == "smaller"
    twice = product(256)
    slower = {"float32": product(256), "twice": lambda: (twice(), twice())}
    assert kernels.pick("slower", slower, "float32") == "float32"


def test_a_kernel_that_raises_is_never_chosen(own_cache):
    def broken():
        raise RuntimeError("not on this CPU")

    assert kernels.pick("raises", {"float32": product(64), "broken": broken}, "float32") == "float32"
    entry = next(iter(json.loads(own_cache.read_text())["entries"].values()))
    assert entry["seconds"]["broken"] == float("inf")


def test_force_overrides_and_is_checked(monkeypatch, own_cache):
    monkeypatch.setenv("MEMEX_FORCE_KERNEL", "other=x, demo=slow")
    assert kernels.pick("demo", {"float32": product(64), "slow": product(512)}, "float32") == "slow"
    assert not own_cache.exists()  # forced: nothing probed, nothing cached
    monkeypatch.setenv("MEMEX_FORCE_KERNEL", "demo=avx9000")
    with pytest.raises(ValueError, match="avx9000"):
        kernels.pick("demo", {"float32": product(64)}, "float32")


def test_isa_switches_change_the_machine_key(monkeypatch):
    for name in kernels.ISA_ENV:  # some hosts set one already (OPENBLAS_CORETYPE=Haswell)
        monkeypatch.delenv(name, raising=False)
    before = kernels.machine_key()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert kernels.machine_key() != before  # an AVX2-restricted run gets its own verdicts
    assert kernels.machine()["env"] == {"ONEDNN_MAX_CPU_ISA": "AVX2"}


def test_an_unwritable_cache_costs_a_probe_not_an_error(monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("MEMEX_KERNEL_CACHE", str(blocker / "kernels.json"))  # parent is a file
    assert kernels.pick("demo", {"float32": product(64)}, "float32") == "float32"


def test_probes_run_on_one_thread_and_restore_the_count():
    threads = torch.get_num_threads()
    seen = []
    kernels.pick("threads", {"float32": lambda: seen.append(torch.get_num_threads())}, "float32")
    assert set(seen) == {1} and torch.get_num_threads() == threads
