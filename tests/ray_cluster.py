"""A real local Ray head for integration tests, started with `ray start --head --block`.

The head runs in its own process group and is stopped by signalling that group, never with
`ray stop`, which would also stop other Ray clusters on the machine.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RayHead:
    address: str  # GCS address, for RAY_ADDRESS / ray.init
    dashboard_url: str  # for JobSubmissionClient and ray.util.state
    env: dict[str, str]  # environment to run drivers against this head
    process: subprocess.Popen[bytes]
    temp_dir: str

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        # Workers may outlive the head briefly; their group is the head's.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def wait_for_dashboard(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
    """Until the head's dashboard answers; RuntimeError when its `ray start` exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited {proc.returncode}: {log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/api/version", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise RuntimeError(f"the Ray head did not come up in {timeout_s}s")


def start_head(num_cpus: int = 4, extra_env: dict[str, str] | None = None, timeout_s: float = 120) -> RayHead:
    """Start a head on loopback with token auth explicitly off and a private HOME and temp dir."""
    # Short path: Ray's unix sockets live under the temp dir and have a ~100-byte path limit.
    temp_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    home = Path(temp_dir, "home")
    home.mkdir()
    gcs_port, dash_port = free_port(), free_port()
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "disabled",
        "HOME": str(home),
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_TRAIN_V2_ENABLED": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        **(extra_env or {}),
    }
    env.pop("RAY_ADDRESS", None)
    cmd = [
        str(Path(sys.executable).parent / "ray"), "start", "--head", "--block",
        f"--port={gcs_port}", f"--num-cpus={num_cpus}", "--num-gpus=0",
        "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash_port}",
        f"--temp-dir={temp_dir}", "--include-dashboard=true", "--disable-usage-stats",
    ]
    log = open(Path(temp_dir, "head.log"), "wb")  # noqa: SIM115 - lives as long as the head
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    dashboard = f"http://127.0.0.1:{dash_port}"
    try:
        wait_for_dashboard(dashboard, proc, Path(temp_dir, "head.log"), timeout_s)
    except RuntimeError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        raise
    address = f"127.0.0.1:{gcs_port}"
    driver_env = {**env, "RAY_ADDRESS": address}
    return RayHead(address, dashboard, driver_env, proc, temp_dir)
