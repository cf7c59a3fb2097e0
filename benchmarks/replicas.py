"""Turns per second for 1, 2 and 4 workers sharing one Redis (a benchmark, not a test).

    python benchmarks/replicas.py                 # writes benchmarks/results/replicas.json
    python benchmarks/replicas.py --turns 100     # fewer turns per worker (bounded: the default is small)
    python benchmarks/replicas.py --real          # the shipped judge instead of the scripted one

Starts a throwaway redis-server and PostgreSQL on loopback (tests/servers.py), then N worker
processes (tests/replica_worker.py), each a Guard whose conversation state is that Redis and
whose audit log is that PostgreSQL. Every worker plays its own conversations, one turn at a
time, a crisis turn every tenth turn (so the audit log and sticky risk are exercised); the
figure is all workers' turns divided by the wall time of the run. Every ordinary turn's
text is new (the guard would answer a repeated turn in the same context from its cache).
With ``--real`` the cores are shared out: each worker's judge gets cores / workers threads.

With the scripted judge (the default) the figure is what shared state and audit cost: the
ceiling the servers put on a fleet. With ``--real`` each worker runs the judge too, and on a
machine with fewer cores than workers the judge, not Redis, sets the pace.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

os.environ.setdefault("NEMO_GUARDRAILS_NO_USAGE_STATS", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from replica_worker import CRISIS  # noqa: E402
from servers import start_postgres, start_redis  # noqa: E402

WORKER = ROOT / "tests" / "replica_worker.py"
TURNS = ["I had a long day at work", "what should I cook tonight?", "my sister is visiting on Sunday",
         "can you suggest a short walk route idea?", "thanks, that helps", "I'm a bit tired",
         "any tips for sleeping better?", "ok sounds good", "tell me a fun fact", CRISIS]


def run(n_workers: int, turns: int, state: str, audit: str, real: bool) -> dict:
    procs = [subprocess.Popen([sys.executable, str(WORKER), "--state", state, "--audit", audit,
                               *(["--real", "--threads", str(max(1, (os.cpu_count() or 1) // n_workers))] if real else [])], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)   # the operator hook's crisis lines
             for _ in range(n_workers)]
    for p in procs:
        json.loads(p.stdout.readline())   # ready
    done = [0] * n_workers

    def play(i: int) -> None:
        p = procs[i]
        cid = uuid.uuid4().hex
        for k in range(turns):
            if k % 20 == 0:
                cid = uuid.uuid4().hex   # a new conversation every 20 turns
            text = TURNS[k % len(TURNS)]
            if text != CRISIS:   # every ordinary turn new, so no cached verdict answers it
                text = f"{text} (turn {k} of worker {i})"
            p.stdin.write(json.dumps({"id": cid, "text": text}) + "\n")
            p.stdin.flush()
            json.loads(p.stdout.readline())
            done[i] += 1

    start = time.perf_counter()
    threads = [threading.Thread(target=play, args=(i,)) for i in range(n_workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    for p in procs:
        p.stdin.close()
        p.wait(30)
    return {"workers": n_workers, "turns": sum(done), "seconds": round(wall, 2),
            "turns_per_second": round(sum(done) / wall, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--turns", type=int, default=300, help="turns per worker (default 300)")
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--real", action="store_true", help="each worker runs the shipped judge")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "replicas.json"))
    args = ap.parse_args(argv)
    redis, pg = start_redis(), start_postgres()
    for what, server in (("redis-server", redis), ("PostgreSQL", pg)):
        if isinstance(server, str):
            sys.exit(f"error: {what}: {server}")
    try:
        results = []
        for n in [int(x) for x in args.workers.split(",")]:
            r = run(n, args.turns, redis.url, pg.url, args.real)
            print(f"{n} worker(s): {r['turns']} turns in {r['seconds']} s = {r['turns_per_second']} turns/s", flush=True)
            results.append(r)
    finally:
        redis.stop(), pg.stop()
    report = {"generated": time.strftime("%Y-%m-%d %H:%M"), "judge": "shipped" if args.real else "scripted stub",
              "turns_per_worker": args.turns, "cpu_count": os.cpu_count(), "python": platform.python_version(),
              "state": "redis (one server, loopback)", "audit": "postgresql (one server, loopback)",
              "results": results}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
