"""What the benches that start a real server (gunicorn, uvicorn) share."""

from __future__ import annotations

import socket
import subprocess
import time


def listening(server: subprocess.Popen[bytes], port: int, *, name: str, seconds: float) -> subprocess.Popen[bytes]:
    """``server`` once it accepts connections on 127.0.0.1:``port``; stopped and an error after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return server
        except OSError:
            time.sleep(0.1)
    server.terminate()
    raise RuntimeError(f"{name} did not start within {seconds:.0f} s")
