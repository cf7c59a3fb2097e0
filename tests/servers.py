"""Real Redis and PostgreSQL servers for the tests, started on loopback in a temporary folder.

Both come from Debian's packages (redis-server, postgresql; `make test` installs them when
missing: scripts/install-system-packages.sh). Each helper returns None with the reason when the server cannot be found, so a
test can skip naming it. PostgreSQL refuses to run as root: as root the cluster is created
and run as the ``postgres`` user the Debian package adds.
"""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen | None, what: str, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f} s")


@dataclass
class Server:
    url: str
    stop: callable
    folder: Path


def start_redis() -> Server | str:
    """redis-server on a free loopback port, nothing persisted; or why it cannot start."""
    exe = shutil.which("redis-server")
    if not exe:
        return "redis-server is not installed (Debian package redis-server; make test installs it)"
    folder = Path(tempfile.mkdtemp(prefix="guardrail-redis-"))
    port = free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(folder), "--protected-mode", "yes"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_port(port, proc, "redis-server")

    def stop():
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(folder, ignore_errors=True)
    return Server(f"redis://127.0.0.1:{port}/0", stop, folder)


def _pg_bin() -> Path | None:
    for name in ("initdb", "pg_ctl"):
        found = shutil.which(name)
        if found and Path(found).resolve().parent.joinpath("postgres").exists():
            return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(versions[-1]).parent if versions else None


def start_postgres() -> Server | str:
    """A throwaway PostgreSQL cluster on a free loopback port (trust auth, loopback only)."""
    bindir = _pg_bin()
    if bindir is None:
        return "PostgreSQL is not installed (Debian package postgresql; make test installs it)"
    as_root = os.geteuid() == 0
    folder = Path(tempfile.mkdtemp(prefix="guardrail-pg-"))
    data = folder / "data"
    prefix: list[str] = []
    if as_root:
        try:
            import pwd
            pw = pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres user to run PostgreSQL as"
        os.chown(folder, pw.pw_uid, pw.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    user = "postgres" if as_root else os.environ.get("USER", "postgres")
    run = lambda *cmd: subprocess.run([*prefix, *cmd], check=True, capture_output=True, text=True)  # noqa: E731
    try:
        run(str(bindir / "initdb"), "-D", str(data), "-U", user, "-A", "trust", "--no-sync", "-E", "UTF8")
    except subprocess.CalledProcessError as e:
        return f"initdb failed: {e.stderr.strip()[-300:]}"
    port = free_port()
    log = folder / "server.log"
    proc = subprocess.Popen([*prefix, str(bindir / "postgres"), "-D", str(data), "-p", str(port),
                             "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={folder}",
                             "-c", "fsync=on"], stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    try:
        _wait_port(port, proc, "postgres")
        time.sleep(0.3)
    except RuntimeError as e:
        proc.kill()
        return f"{e}: {log.read_text()[-300:]}"

    def stop():
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(folder, ignore_errors=True)
    return Server(f"postgresql://{user}@127.0.0.1:{port}/postgres", stop, folder)
