"""Run the whole benchmark with one command and write RESULTS.md and the plots.

    python bench/run.py --setup            # install the peers from PyPI/npm (once per machine)
    python bench/run.py --quick            # smoke sizes, one repeat: checks that everything works
    python bench/run.py --publish               # full sizes, 3 repeats (~25 min); copies RESULTS.md + plots into bench/

Each measurement starts fresh servers pinned to one core (``taskset``) and runs the load generator
pinned to another; repeats interleave the subjects so that a noisy minute hits all of them alike,
and the report takes medians. Raw results stay in ``bench/.work/results/<stamp>/results.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import report  # noqa: E402
from procs import free_port, stop  # noqa: E402
from subjects import (  # noqa: E402
    ASGI,
    ASGI_HOST,
    COMPILED,
    DEFAULT_PEERS,
    NODE_DIR,
    PEERS,
    SOCKETIO,
    WORK,
    Subject,
    compiled_copy,
    generated,
    render_chat,
)
from workloads import Workload, build  # noqa: E402

UNIT = float(os.environ.get("BENCH_UNIT", "1"))
JWT_SECRET = "bench-secret-0123456789abcdef-0123456789"  # noqa: S105 - loopback only; >= 32 bytes
SERVER_CORE, LOADGEN_CORE = 0, 1


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# setup ----------------------------------------------------------------------------------------
def setup(force: bool) -> None:
    """Install the peers from their registries: pip for Python, npm into bench/.work/node."""
    if force:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-r", str(BENCH / "requirements.txt")], check=True
        )
    NODE_DIR.mkdir(parents=True, exist_ok=True)
    manifest = BENCH / "peers" / "ws_node" / "package.json"
    installed = all((NODE_DIR / "node_modules" / name).exists() for name in ("ws", "socket.io"))
    if force or not installed:
        shutil.copy(manifest, NODE_DIR / "package.json")
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent"], cwd=NODE_DIR, check=True)


# processes ------------------------------------------------------------------------------------
def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port} after {timeout:.0f} s")


@contextlib.contextmanager
def started(argv: list[str], env: dict[str, str], cwd: Path, port: int, log_path: Path) -> Iterator[int]:
    """Run ``argv`` pinned to the server core until the block ends; yields its PID."""
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            ["taskset", "-c", str(SERVER_CORE), *argv],
            cwd=cwd,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_listening(port, proc, 15 * UNIT)
            yield proc.pid  # taskset execs the command, so this is the server's own PID
        finally:
            stop(proc, 5 * UNIT)


@contextlib.contextmanager
def redis_server(log_path: Path) -> Iterator[str]:
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    with started(argv, {}, WORK, port, log_path):
        yield f"redis://127.0.0.1:{port}/0"


_SCALED_OUT: dict[str, Subject] = {}


def over_redis(subject: Subject) -> Subject:
    """The subject of a pass over Redis: ``subject`` itself when its project ships the Redis
    adapter, else the chat example rendered to scale out over Redis for the same transport (and
    build). A project renders only the brokers its spec uses, and the chat example runs one
    instance: its project has no Redis adapter for the scale-out passes."""
    if not subject.generated or any(subject.cwd.glob("src/*/broker/redis.py")):
        return subject
    cached = _SCALED_OUT.get(subject.name)
    if cached is None:
        transport = subject.transport
        out = WORK / (
            "chat-demo-scale-out" if transport == "websockets" else f"chat-demo-{transport}-scale-out"
        )
        if transport == ASGI:
            project = render_chat(BENCH.parent, out, scale_out=True, mounted_in=ASGI_HOST).resolve()
        else:
            project = render_chat(BENCH.parent, out, transport=transport, scale_out=True).resolve()
        if subject.name.endswith("-mypyc"):
            cached = generated(compiled_copy(project), transport, compiled=True)
        else:
            cached = generated(project, transport)
        _SCALED_OUT[subject.name] = cached
    return cached


def run_pass(subject: Subject, workload: Workload, index: int, logs: Path) -> dict[str, Any]:
    passed = workload.passes[index]
    if passed.redis:
        subject = over_redis(subject)
    log_path = logs / f"{workload.name}.{subject.name}.log"
    with contextlib.ExitStack() as stack:
        redis_url = stack.enter_context(redis_server(log_path)) if passed.redis else ""
        ports, pids = [], []
        for _ in range(passed.instances):
            port = free_port()
            argv, env = subject.command(
                port, jwt_secret=JWT_SECRET, heartbeat=workload.heartbeat, redis_url=redis_url
            )
            pids.append(stack.enter_context(started(argv, env, subject.cwd, port, log_path)))
            ports.append(port)
        cmd = [
            "taskset", "-c", str(LOADGEN_CORE), sys.executable, str(BENCH / "loadgen" / "main.py"),
            *passed.args,
            "--urls", ",".join(f"127.0.0.1:{p}" for p in ports),
            "--server-pids", ",".join(map(str, pids)),
            "--cores", f"{SERVER_CORE},{LOADGEN_CORE}",
            "--dialect", subject.dialect, "--path", subject.path, "--jwt-secret", JWT_SECRET,
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, timeout=300 * UNIT, check=False)
        if proc.returncode != 0:
            with open(log_path, "ab") as f:
                f.write(proc.stderr)
            tail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:]
            raise RuntimeError(f"load generator exited {proc.returncode}: {' '.join(tail)}")
        result: dict[str, Any] = json.loads(proc.stdout)
        result["command"] = " ".join(cmd[3:])
        return result


def generated_subjects(args: argparse.Namespace) -> list[Subject]:
    """The generated chat server, once per ``--transports`` entry; none that cannot be rendered.

    Each transport gets the chat example rendered for it (``render_chat``): the websockets project
    the chat spec picks, and the picows project a team gets by setting that transport in memory.
    ``--project DIR`` benches that one project on every transport adapter it ships instead.
    """
    rendered: dict[str, Path] = {}
    compiled: dict[Path, Path] = {}  # one compiled copy per project serves every +mypyc entry
    subjects = []
    for entry in filter(None, args.transports.split(",")):
        socketio = entry.endswith(SOCKETIO)  # the Socket.IO face of the project (issue 24)
        entry = entry.removesuffix(SOCKETIO)
        transport = entry.removesuffix(COMPILED)
        key = transport + (SOCKETIO if socketio else "")
        if args.project is not None:
            project = args.project.resolve()
        elif key in rendered:
            project = rendered[key]
        else:
            out = WORK / (
                ("chat-demo" if transport == "websockets" else f"chat-demo-{transport}")
                + ("-socketio" if socketio else "")
            )
            try:
                if transport == ASGI:  # the chat example mounted in Starlette (its spec keeps websockets)
                    project = render_chat(BENCH.parent, out, mounted_in=ASGI_HOST).resolve()
                else:
                    project = render_chat(BENCH.parent, out, transport=transport, socketio=socketio).resolve()
                rendered[key] = project
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired, RuntimeError) as exc:
                stderr = getattr(exc, "stderr", b"") or str(exc).encode()
                log(
                    f"could not render the chat example for {transport}, skipping it: {stderr.decode(errors='replace')[-300:]}"
                )
                continue
        package = next(p for p in sorted((project / "src").iterdir()) if (p / "__main__.py").exists())
        if not (package / "transport" / f"{transport}.py").exists():
            continue
        if socketio and not (package / "socketio").is_dir():
            log(f"{project} serves no Socket.IO, skipping {entry}{SOCKETIO}")
            continue
        if entry == transport:
            subjects.append(generated(project, transport, socketio=socketio))
            continue
        try:
            built = compiled[project] = compiled.get(project) or compiled_copy(project)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            stderr = getattr(exc, "stderr", b"") or b""
            log(f"could not compile the project, skipping {entry}: {stderr.decode(errors='replace')[-300:]}")
            continue
        subjects.append(generated(built, transport, compiled=True, socketio=socketio))
    return subjects


def takes_part(subject: Subject, workload: Workload) -> bool:
    """A request-only peer sits out the fan-out workloads; Socket.IO has no ping request."""
    if subject.workloads is not None and workload.name not in subject.workloads:
        return False
    return subject.dialect in workload.dialects


# main -----------------------------------------------------------------------------------------
def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--setup",
        action="store_true",
        help="pip install -r bench/requirements.txt and npm install, then exit",
    )
    p.add_argument(
        "--quick", action="store_true", help="smoke sizes (seconds per pass), one repeat by default"
    )
    p.add_argument("--repeats", type=int, default=0, help="default: 1 with --quick, else 3")
    p.add_argument(
        "--peers",
        default=",".join(DEFAULT_PEERS),
        help=f"comma list of {', '.join(PEERS)} (default: {','.join(DEFAULT_PEERS)})",
    )
    p.add_argument(
        "--project",
        type=Path,
        help="generated project to bench (default: render examples/chat.yaml into .work)",
    )
    p.add_argument("--no-generated", action="store_true", help="bench the peers only")
    p.add_argument(
        "--transports",
        default="websockets,picows,picows+mypyc",
        help="transport adapters of the generated server to bench; +mypyc: on its compiled build; "
        "asgi: the chat example mounted in its Starlette host app under uvicorn; +socketio (e.g. "
        "websockets+socketio): the Socket.IO face of the chat example rendered with client_protocol: socketio",
    )
    p.add_argument("--workloads", default="", help="comma list (default: all)")
    p.add_argument("--out", type=Path, help="results folder (default bench/.work/results/<stamp>)")
    p.add_argument("--publish", action="store_true", help="also write bench/RESULTS.md and bench/plots/")
    p.add_argument("--report-only", type=Path, metavar="RESULTS_JSON", help="rebuild the report, run nothing")
    return p.parse_args()


def main() -> int:
    args = parse_args()
    if args.report_only:
        saved = json.loads(args.report_only.read_text())
        report.write(saved, args.report_only.parent, publish_to=BENCH if args.publish else None)
        return 0
    setup(args.setup)
    if args.setup:  # install only: a full run takes 25 minutes and wants a quiet machine
        print("bench: peers installed; `python bench/run.py --publish` runs the full benchmark", flush=True)
        return 0
    subjects = [] if args.no_generated else generated_subjects(args)
    subjects += [PEERS[name] for name in args.peers.split(",") if name]
    all_workloads = build(args.quick)
    chosen = [all_workloads[w] for w in (args.workloads.split(",") if args.workloads else all_workloads)]
    repeats = args.repeats or (1 if args.quick else 3)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or WORK / "results" / stamp
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    argv = ["python", "bench/run.py", *sys.argv[1:]]
    data: dict[str, Any] = {
        "command": " ".join(argv),
        "quick": args.quick,
        "repeats": repeats,
        "started": stamp,
        "environment": report.environment(),
        "subjects": [{"name": s.name, "title": s.title, "dialect": s.dialect} for s in subjects],
        "workloads": [{"name": w.name, "title": w.title, "notes": w.notes} for w in chosen],
        "runs": [],
    }
    failures = 0
    for workload in chosen:
        for rep in range(repeats):
            for subject in subjects:
                if not takes_part(subject, workload):
                    continue
                for index, passed in enumerate(workload.passes):
                    log(f"{workload.name} [{passed.label}] {subject.name} repeat {rep + 1}/{repeats}")
                    run: dict[str, Any] = {
                        "workload": workload.name, "pass": passed.label, "subject": subject.name, "repeat": rep,
                    }  # fmt: skip
                    try:
                        run["result"] = run_pass(subject, workload, index, logs)
                    except (
                        RuntimeError,
                        TimeoutError,
                        subprocess.TimeoutExpired,
                        json.JSONDecodeError,
                    ) as exc:
                        failures += 1
                        run["error"] = str(exc)
                        log(f"  FAILED: {exc}")
                    data["runs"].append(run)
                    (out / "results.json").write_text(json.dumps(data, indent=1))
    report.write(data, out, publish_to=BENCH if args.publish else None)
    log(f"results: {out / 'results.json'}; report: {out / 'RESULTS.md'}; failures: {failures}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
