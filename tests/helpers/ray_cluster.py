"""A real, throwaway Ray cluster on this machine: a head and workers as separate processes.

Each node is a ``ray start --block`` process in its own process group, so tearing the
cluster down ends exactly the processes it started (never other users' Ray). Nodes get
few CPUs and a small object store: the box is shared.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.helpers.server import free_port

OBJECT_STORE_BYTES = 100 * 1024 * 1024


class LocalRayCluster:
    """``with LocalRayCluster(workers=1) as cluster: ... cluster.address``."""

    def __init__(self, workers: int = 1, cpus_per_node: int = 1) -> None:
        self.workers, self.cpus = workers, cpus_per_node
        self.nodes: list[subprocess.Popen] = []
        self.temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: socket paths
        self.address = f"127.0.0.1:{free_port()}"
        self.env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
                    "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1"}

    def _start(self, *args: str) -> None:
        cmd = [sys.executable, "-m", "ray.scripts.scripts", "start", "--block",
               f"--num-cpus={self.cpus}", f"--object-store-memory={OBJECT_STORE_BYTES}",
               "--disable-usage-stats", *args]
        with open(self.temp / f"node{len(self.nodes)}.log", "wb") as log:  # the node keeps its copy
            self.nodes.append(subprocess.Popen(cmd, env=self.env, stdout=log, stderr=log,
                                               start_new_session=True))

    def add_worker(self) -> None:
        self._start(f"--address={self.address}")

    def nodes_alive(self) -> int:
        import ray

        return sum(1 for n in ray.nodes() if n["Alive"])

    def __enter__(self) -> LocalRayCluster:
        host, port = self.address.split(":")
        self._start("--head", f"--port={port}", f"--node-ip-address={host}",
                    f"--temp-dir={self.temp}", "--include-dashboard=false")
        self._wait_for_head()
        for _ in range(self.workers):
            self.add_worker()
        return self

    def _wait_for_head(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not list(self.temp.glob("session_latest/sockets/raylet*")):
            if self.nodes[0].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Ray head did not start: {self.log()}")
            time.sleep(0.5)

    def wait_for_nodes(self, timeout: float = 120) -> None:
        """After ``ray.init``: until every started node has joined."""
        deadline = time.monotonic() + timeout
        while self.nodes_alive() < len(self.nodes):
            if time.monotonic() > deadline:
                raise RuntimeError(f"Ray nodes did not join: {self.log()}")
            time.sleep(0.5)

    def log(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-2000:] for p in self.temp.glob("node*.log"))

    def __exit__(self, *exc: object) -> None:
        for node in reversed(self.nodes):
            _signal_group(node.pid, signal.SIGTERM)
        for node in reversed(self.nodes):
            try:
                node.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            _signal_group(node.pid, signal.SIGKILL)  # what of the node's group is left
            node.wait()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def imports_ray(script: str) -> bool:
    """Run ``script`` in a fresh interpreter with no ``MEMEX_RAY_*`` setting; whether it
    ended with ``ray`` imported (the check that a plain install never pays for Ray)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMEX_RAY")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    out = subprocess.run([sys.executable, "-c", script + "\nprint('ray' in sys.modules)\n"],
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1] == "True"
