"""Container health check: GET /healthz of the dxtalent service running in this container.

Standard library only (slim images have no curl). The port is DXT_HTTP_PORT, else the default
port of the service named on PID 1's command line (`dxtalent serve reporting` -> 8083).
Exit 0 = healthy, 1 = not.
"""

from __future__ import annotations

import os
import sys
import urllib.request

DEFAULT_PORTS = {"enrollment": 8081, "certification": 8082, "reporting": 8083}


def port() -> int:
    configured = os.environ.get("DXT_HTTP_PORT")
    if configured:
        return int(configured)
    try:
        with open("/proc/1/cmdline", "rb") as f:
            args = f.read().decode(errors="replace").split("\0")
    except OSError:
        args = []
    for name, default in DEFAULT_PORTS.items():
        if name in args:
            return default
    return DEFAULT_PORTS["enrollment"]


def main() -> int:
    bound = os.environ.get("DXT_HTTP_HOST", "127.0.0.1")
    host = "127.0.0.1" if bound in ("", "0.0.0.0", "::") else bound
    url = f"http://{host}:{port()}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return 0 if response.status == 200 else 1
    except OSError as exc:
        sys.stderr.write(f"unhealthy: {url}: {exc}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
