"""Profile a subject under one load-generator pass with py-spy; print the top self-time functions.

    python bench/profile.py --transport picows --workload fanout -- --subs 1000
    python bench/profile.py --transport picows --compiled --workload reqrep -- --clients 50
    python bench/profile.py --peer picows --workload reqrep -- --clients 50

Starts the server pinned to core 0, attaches ``py-spy record`` (sampling, native frames off) for
the load generator's run on core 1, and writes ``bench/.work/profiles/<name>.txt`` (collapsed
stacks, loadable in speedscope) plus a summary of self time by function. ``pip install py-spy``.
"""

from __future__ import annotations

import argparse
import collections
import signal
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from procs import free_port  # noqa: E402
from run import JWT_SECRET, LOADGEN_CORE, started  # noqa: E402
from subjects import PEERS, WORK, compiled_copy, generated, render_chat  # noqa: E402


def summarize(collapsed: Path, top: int) -> list[tuple[float, str]]:
    """Self-time share per function from py-spy's collapsed (``--format raw``) output."""
    self_time: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        leaf = stack.split(";")[-1]
        self_time[leaf] += int(count)
        total += int(count)
    return [(100 * n / max(1, total), name) for name, n in self_time.most_common(top)]


def py_spy() -> str:
    """py-spy of this interpreter's environment, found even when its venv is not activated."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else "py-spy"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--transport", help="generated server with this transport adapter")
    who.add_argument("--peer", choices=[n for n in PEERS if n != "ws-node"])
    p.add_argument("--workload", choices=["fanout", "reqrep", "idle"], required=True)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--project", type=Path)
    p.add_argument("--compiled", action="store_true", help="the project's mypyc build (compiled in a copy)")
    p.add_argument("loadgen_args", nargs="*", help="extra load-generator flags (after --)")
    args = p.parse_args()
    if args.transport:
        out = WORK / ("chat-demo" if args.transport == "websockets" else f"chat-demo-{args.transport}")
        project = (args.project or render_chat(BENCH.parent, out, transport=args.transport)).resolve()
        if args.compiled:
            project = compiled_copy(project)
        subject = generated(project, args.transport, compiled=args.compiled)
    else:
        subject = PEERS[args.peer]
    out_dir = WORK / "profiles"
    out_dir.mkdir(parents=True, exist_ok=True)
    name = f"{subject.name}-{args.workload}"
    collapsed = out_dir / f"{name}.txt"
    port = free_port()
    argv, env = subject.command(port, jwt_secret=JWT_SECRET, heartbeat=20)
    with started(argv, env, subject.cwd, port, out_dir / f"{name}.log") as pid:
        spy = subprocess.Popen(
            [
                py_spy(),
                "record",
                "--pid",
                str(pid),
                "--format",
                "raw",
                "--output",
                str(collapsed),
                "--rate",
                "250",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(out_dir / f"{name}.py-spy.log", "wb"),  # noqa: SIM115 - closed with the process
        )
        cmd = ["taskset", "-c", str(LOADGEN_CORE), sys.executable, str(BENCH / "loadgen" / "main.py"), args.workload,
               "--urls", f"127.0.0.1:{port}", "--server-pids", str(pid), "--dialect", subject.dialect,
               "--path", subject.path, "--jwt-secret", JWT_SECRET, "--warmup", "1", "--measure", "4",
               *args.loadgen_args]  # fmt: skip
        subprocess.run(cmd, check=True, capture_output=True, timeout=300)
        spy.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        spy.wait(60)
    lines = [f"{name}: self time by function (py-spy --rate 250; load generator args: {' '.join(cmd[3:])})"]
    lines += [f"{share:6.1f} %  {func}" for share, func in summarize(collapsed, args.top)]
    (BENCH / "profiles").mkdir(exist_ok=True)
    (BENCH / "profiles" / f"{name}.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
