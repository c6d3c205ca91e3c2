"""Starts `wasio serve` for the Python tests: `serve(config_text)` yields a running node."""

import contextlib
import os
import socket
import subprocess
import tempfile
import time

import pytest
import requests

START_TIMEOUT = float(os.environ.get("WASIO_TEST_START_TIMEOUT_MS", "20000")) / 1000


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    """A running node: its base `url`, `stderr()` so far, the process."""

    def __init__(self, url, proc, log_path):
        self.url = url
        self.proc = proc
        self._log_path = log_path

    def stderr(self):
        with open(self._log_path, "rb") as f:
            return f.read().decode(errors="replace")


@contextlib.contextmanager
def serve(config_text, scheme="http", verify=True):
    """Writes `config_text`, runs wasio on a free port until /healthz says ok, yields a
    Node, and asserts at the end that it did not exit during the tests. `verify` is
    passed to requests for the health check (a CA file for https)."""
    binary = os.environ.get("WASIO_BIN")
    if not binary:
        pytest.fail("WASIO_BIN is not set: point it at the wasio binary (e.g. target/debug/wasio)")
    if not os.path.exists(binary):
        pytest.fail(f"WASIO_BIN={binary} does not exist")
    with tempfile.TemporaryDirectory(prefix="wasio-py-") as tmp:
        config = os.path.join(tmp, "config.toml")
        with open(config, "w") as f:
            f.write(config_text)
        log_path = os.path.join(tmp, "stderr.log")
        with open(log_path, "wb") as log:
            port = free_port()
            proc = subprocess.Popen(
                [os.path.abspath(binary), "serve", "--config", config, "--port", str(port)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            node = Node(f"{scheme}://127.0.0.1:{port}", proc, log_path)
            try:
                deadline = time.monotonic() + START_TIMEOUT
                while True:
                    if proc.poll() is not None:
                        pytest.fail(f"wasio exited with {proc.returncode} before serving:\n{node.stderr()}")
                    try:
                        r = requests.get(f"{node.url}/healthz", timeout=1, verify=verify)
                        if r.status_code == 200 and r.json().get("status") == "ok":
                            break
                    except (requests.RequestException, ValueError):
                        pass
                    if time.monotonic() > deadline:
                        pytest.fail(f"wasio not healthy after {START_TIMEOUT}s:\n{node.stderr()}")
                    time.sleep(0.05)  # poll interval
                yield node
                assert proc.poll() is None, f"wasio exited during the tests ({proc.returncode}):\n{node.stderr()}"
            finally:
                if proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(timeout=5)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
