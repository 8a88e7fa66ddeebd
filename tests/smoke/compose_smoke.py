"""`make compose-smoke`: the shipped compose stack, run as an operator would, checked end to end.

1. builds the dxtalent image from a local base (`BASE_IMAGE`, default the Debian stand-in of
   deploy/images/build-local-test-images.sh, which it builds when missing, with the NATS and
   PostgreSQL stand-ins) and prints its size;
2. starts docker-compose.yml + deploy/compose.host.yml (+ tests/smoke/compose.stand-ins.yml
   unless official images are asked for) with podman-compose, under its own project name, with
   fresh random secrets: every server on 127.0.0.1;
3. publishes the first part of a small generated city as the `hr` user, waits until every
   service is caught up and checks target progress against the pure core;
4. stops certification with SIGTERM (`podman stop`), publishes the rest, starts it again, waits,
   and checks again against the core on all the facts;
5. tears down only what it started (`podman-compose down -v` of its project).

Not part of `make test` (it needs podman, builds images and takes minutes). Prints what it does
and the figures; exits 1 when anything disagrees.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from dxtalent.citygen import generate_city
from dxtalent.demo import served_vs_core
from dxtalent.nats_tools import NatsAuth, publish_raw
from dxtalent.stack import http_json
from dxtalent.status_cli import all_statuses
from dxtalent_contracts.catalog import load_catalog
from dxtalent_contracts.inbound import InboundEvent
from dxtalent_infra.servers import port_open

ROOT = Path(__file__).resolve().parents[2]
CONTAINERS_CONF = ROOT / "deploy" / "images" / "containers.conf"
STAND_INS = {
    "base": "localhost/dxtalent-base:bookworm",
    "nats": "localhost/dxtalent-test-nats:latest",
    "postgres": "localhost/dxtalent-test-postgres:latest",
}
#: compose.host.yml's loopback ports
NATS_URL = "nats://127.0.0.1:14222"
PORTS = {"nats": 14222, "postgres": 15432, "enrollment": 18081, "certification": 18082}
PORTS["reporting"] = 18083
SERVICES = {name: f"http://127.0.0.1:{PORTS[name]}" for name in ("enrollment", "certification")}
SERVICES["reporting"] = f"http://127.0.0.1:{PORTS['reporting']}"
#: every secret deploy/env.example asks the operator for (its `change-me` lines), so a secret
#: the compose files gain is generated here too
SECRETS = [
    line.split("=", 1)[0]
    for line in (ROOT / "deploy" / "env.example").read_text().splitlines()
    if line.endswith("=change-me") and not line.startswith("#")
]

_started = time.monotonic()


def say(message: str) -> None:
    sys.stdout.write(f"[{time.monotonic() - _started:7.1f}s] {message}\n")
    sys.stdout.flush()


def run(*args: str, check: bool = True, quiet: bool = False) -> subprocess.CompletedProcess[str]:
    if not quiet:
        say("$ " + " ".join(args))
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        sys.stdout.write(result.stdout[-4000:] + result.stderr[-4000:])
        raise SystemExit(f"failed ({result.returncode}): {' '.join(args)}")
    return result


def wait_for(what: str, ok: Callable[[], bool], timeout: float) -> float:
    """Poll `ok` until it holds; returns the seconds it took."""
    start = time.monotonic()
    while not ok():
        if time.monotonic() - start > timeout:
            raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(1.0)
    took = time.monotonic() - start
    say(f"{what}: after {took:.1f}s")
    return took


def image_size(image: str) -> str:
    size = run("podman", "image", "inspect", "--format", "{{.Size}}", image, quiet=True)
    return f"{int(size.stdout.strip()) / 1e6:.0f} MB"


def ensure_images(base: str, official: bool) -> None:
    wanted = [base] if official else [base, STAND_INS["nats"], STAND_INS["postgres"]]
    missing = [i for i in wanted if run("podman", "image", "exists", i, check=False).returncode]
    if missing:
        say(f"missing {', '.join(missing)}: building the local stand-ins")
        script = ROOT / "deploy" / "images" / "build-local-test-images.sh"
        subprocess.run(["bash", str(script)], check=True)


def build_image(base: str, tag: str) -> None:
    started = time.monotonic()
    run(
        "podman", "build", "--network", "host", "--format", "docker",
        "--build-arg", f"BASE_IMAGE={base}", "-f", "deploy/Dockerfile", "-t", tag, ".",
    )  # fmt: skip
    say(f"image {tag} built in {time.monotonic() - started:.0f}s, size {image_size(tag)}")
    version = run("podman", "run", "--rm", tag, "version")
    say(f"{tag} version: {version.stdout.strip()}")
    demo = run("podman", "run", "--rm", tag, "demo", "--staff", "5", check=False)
    error = [line for line in demo.stderr.splitlines() if line.startswith("error:")]
    say(f"`dxtalent demo` in the production image: exit {demo.returncode}, {error}")


class Stack:
    """podman-compose on the shipped files, under a project name of its own."""

    def __init__(self, project: str, env_file: Path, official: bool) -> None:
        files = ["docker-compose.yml", "deploy/compose.host.yml"]
        if not official:
            files.append("tests/smoke/compose.stand-ins.yml")
        self.base = [os.environ.get("PODMAN_COMPOSE", "podman-compose"), "--env-file"]
        self.base += [str(env_file), "-p", project]
        for f in files:
            self.base += ["-f", f]
        self.project = project

    def compose(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(*self.base, *args, check=check)

    def container(self, service: str) -> str:
        return f"{self.project}_{service}_1"

    def logs(self, service: str, tail: int = 400) -> str:
        out = run("podman", "logs", "--tail", str(tail), self.container(service), quiet=True)
        return out.stdout + out.stderr


def write_env(directory: Path, image: str, base: str) -> Path:
    values = {name: secrets.token_urlsafe(18) for name in SECRETS}
    values |= {"DXT_IMAGE": image, "BASE_IMAGE": base, "DXT_LOG_LEVEL": "info"}
    env_file = directory / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    env_file.chmod(0o600)
    return env_file


def caught_up(token: str) -> bool:
    _, ok = all_statuses(SERVICES, token)
    return ok


def ready(name: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return http_json(f"{SERVICES[name]}/readyz", timeout=2)[0] == 200
        except OSError:
            return False

    return check


def publish(messages: Sequence[bytes], password: str) -> None:
    started = time.monotonic()
    report = asyncio.run(
        publish_raw(NATS_URL, messages, auth=NatsAuth(user="hr", password=password))
    )
    took = time.monotonic() - started
    say(
        f"published {report.published} facts as user hr in {took:.1f}s "
        f"({report.duplicates} already received)"
    )


def check_core(events: Sequence[InboundEvent], token: str, label: str) -> None:
    catalog = load_catalog()
    bodies, agree = served_vs_core(catalog, events, SERVICES["reporting"], token)
    for body in bodies:
        levels = ", ".join(f"L{r['level']} {r['reached']}" for r in body["levels"])
        say(f"  FY{body['fiscal_year']}: {levels}")
    say(f"{label}: services vs. the pure core: {'AGREE' if agree else 'DISAGREE'}")
    if not agree:
        raise SystemExit(1)


def smoke(args: argparse.Namespace, workdir: Path) -> None:
    token_and_passwords = dict(
        line.split("=", 1) for line in write_env(workdir, args.image, args.base).read_text().split()
    )
    token, hr = token_and_passwords["DXT_API_TOKEN"], token_and_passwords["NATS_HR_PASSWORD"]
    stack = Stack(args.project, workdir / ".env", args.official_images)
    version = run(stack.base[0], "--version", check=False).stdout.strip().replace("\n", "; ")
    say(f"podman-compose: {version}")
    try:
        up = stack.compose("up", "-d")
        for line in dict.fromkeys((up.stdout + up.stderr).splitlines()):  # once each
            if "condition" in line or "Ignored" in line:
                say(f"  podman-compose: {line.strip()}")
        for name in SERVICES:
            wait_for(f"{name} ready (/readyz 200)", ready(name), args.timeout)
        waits = {
            n: stack.logs(n).count("connect_retry") + stack.logs(n).count("unavailable")
            for n in SERVICES
        }
        say(f"connection retries logged while the servers came up: {waits}")

        city = generate_city(load_catalog(), seed=2025, staff=args.staff)
        events = list(city.events)
        cut = len(events) * 2 // 3
        first, rest = events[:cut], events[cut:]
        say(f"city: {args.staff} staff, {len(events)} facts ({len(first)} now, {len(rest)} later)")
        publish([e.to_json_bytes() for e in first], hr)
        wait_for("all three services caught up", lambda: caught_up(token), args.timeout)
        check_core(first, token, "after the first part")

        cert = stack.container("certification")
        started = time.monotonic()
        run("podman", "stop", "--time", "30", cert)
        code = run("podman", "inspect", "--format", "{{.State.ExitCode}}", cert, quiet=True)
        shutdown = [
            line
            for line in stack.logs("certification", 40).splitlines()
            if "service.st" in line or "shut_down" in line
        ]
        say(
            f"certification stopped by SIGTERM in {time.monotonic() - started:.1f}s, exit code {code.stdout.strip()}"
        )
        for line in shutdown[-3:]:
            say(f"  log: {line[:160]}")
        publish([e.to_json_bytes() for e in rest], hr)
        run("podman", "start", cert)
        wait_for("certification ready again", ready("certification"), args.timeout)
        wait_for("all three services caught up", lambda: caught_up(token), args.timeout)
        check_core(events, token, "after SIGTERM and restart, all facts")
        statuses, _ = all_statuses(SERVICES, token)
        for line in statuses:
            say(f"  {line}")
    finally:
        if args.keep:
            say(f"--keep: stack {args.project} left running (env in {workdir})")
        else:
            stack.compose("down", "-v", check=False)
            left = run(
                "podman",
                "ps",
                "-a",
                "--filter",
                f"label=io.podman.compose.project={args.project}",
                "-q",
                quiet=True,
            )
            say(f"torn down project {args.project}; containers left: {len(left.stdout.split())}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default=os.environ.get("BASE_IMAGE", STAND_INS["base"]))
    parser.add_argument("--image", default="localhost/dxtalent:smoke")
    parser.add_argument("--project", default=f"dxtsmoke{os.getpid()}")
    parser.add_argument("--staff", type=int, default=300, help="size of the generated city")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument(
        "--official-images", action="store_true", help="nats/postgres from a registry"
    )
    parser.add_argument("--no-build", action="store_true", help="use --image as it is")
    parser.add_argument("--keep", action="store_true", help="leave the stack running")
    args = parser.parse_args()
    os.environ.setdefault("CONTAINERS_CONF", str(CONTAINERS_CONF))
    os.chdir(ROOT)
    for tool in ("podman", "runc", os.environ.get("PODMAN_COMPOSE", "podman-compose")):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing (deploy/README.md: podman runc podman-compose)")
    busy = [f"{n} {p}" for n, p in PORTS.items() if port_open(p)]
    if busy:
        raise SystemExit(f"ports already in use on 127.0.0.1: {', '.join(busy)}")
    say(f"podman: {run('podman', '--version', quiet=True).stdout.strip()}")
    ensure_images(args.base, args.official_images)
    if not args.no_build:
        build_image(args.base, args.image)
    with tempfile.TemporaryDirectory(prefix="dxt-compose-smoke-") as workdir:
        smoke(args, Path(workdir))
    say("compose smoke test passed")
    sys.stdout.write(json.dumps({"elapsed_s": round(time.monotonic() - _started, 1)}) + "\n")


if __name__ == "__main__":
    main()
