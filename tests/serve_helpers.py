"""A ``conceptseg serve`` subprocess on a free loopback port, for tests that talk real HTTP.

    with ServerProcess("--queue-depth", "1") as srv:
        httpx.get(srv.url + "/v1/health")
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "conceptseg" / "assets" / "examples"
START_TIMEOUT = 90.0  # seconds for the server to load the model and answer /v1/health


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """Starts the server with ``args``, waits (bounded) for /v1/health, kills it on exit."""

    def __init__(self, *args: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = list(args)
        self.proc: subprocess.Popen | None = None
        self.log = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe: it never fills up

    def __enter__(self) -> "ServerProcess":
        env = {**{k: v for k, v in os.environ.items() if k != "CONCEPTSEG_API_KEY"},
               "PYTHONPATH": os.pathsep.join(
            [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "conceptseg", "serve", "--port", str(self.port), *self.args],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.url + "/v1/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.__exit__()
        raise RuntimeError(f"server did not answer /v1/health within {START_TIMEOUT:g} s")

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def output(self) -> str:
        """What the server printed so far."""
        self.log.seek(0)
        return self.log.read()
