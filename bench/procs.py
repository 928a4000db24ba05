"""Process and port helpers shared by the bench scripts (``run.py``, ``storm.py``, ``workers_bench.py``).

Every server a benchmark starts is stopped the way a deploy stops it (SIGTERM, then a bounded
wait), so a script never leaves a process behind, and a port it picks is free at that moment.
"""

from __future__ import annotations

import signal
import socket
import subprocess


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM, then SIGKILL if ``proc`` is still running after ``grace`` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
