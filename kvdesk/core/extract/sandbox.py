"""`Extractor`: runs `extract()` in a reusable child process so that a parser that hangs or
crashes costs one file, not the whole import.

The child is started with the "spawn" method: it imports this module afresh and runs
`_worker_main`, so everything the worker needs is importable from here at module level.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnContext
from multiprocessing.process import BaseProcess

from kvdesk.core.errors import ExtractionError
from kvdesk.core.extract.formats import extract
from kvdesk.core.extract.limits import Extracted, Limits
from kvdesk.core.extract.sniff import IN_PROCESS_TYPES, media_type_for

_STARTUP_SECONDS = 60.0


def _worker_main(conn: Connection) -> None:
    """Child loop: import the parsers once, then extract one request at a time."""
    import docx  # noqa: F401  (warm imports so each file pays only for parsing)
    import pypdf  # noqa: F401
    import pypdfium2  # noqa: F401
    from PIL import Image  # noqa: F401
    from selectolax.lexbor import LexborHTMLParser  # noqa: F401

    conn.send(("ready", None))
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):  # parent went away: exit instead of lingering
            return
        if request is None:
            return
        data, filename, limits, debug_sleep, debug_crash = request
        if debug_sleep:
            time.sleep(debug_sleep)
        if debug_crash:
            os._exit(70)  # test seam: die mid-file the way a segfaulting parser would
        try:
            reply: tuple[str, object] = ("ok", extract(data, filename, limits))
        except ExtractionError as exc:
            reply = ("error", str(exc))
        except BaseException as exc:  # extract() should not let these through; be safe
            reply = ("error", f"extraction failed ({type(exc).__name__})")
        try:
            conn.send(reply)
        except (OSError, ValueError):
            return


class Extractor:
    """Runs extract() in a reusable child process, bounded by limits.max_seconds.

    On timeout or crash the worker is killed (and reaped) and a fresh one starts on the next
    call. Text, Markdown, CSV and JSON are extracted in the calling process. Calls are
    serialised by a lock, so one Extractor may be shared between threads.
    """

    def __init__(self, limits: Limits = Limits()) -> None:  # noqa: B008
        self.limits = limits
        self._ctx = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._proc: BaseProcess | None = None
        self._conn: Connection | None = None
        self._closed = False
        # Test seams: the worker sleeps this long before extracting / exits abruptly instead.
        self._debug_sleep = 0.0
        self._debug_crash = False

    def __enter__(self) -> Extractor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def extract(self, data: bytes, filename: str) -> Extracted:
        """Extract one file; raises ExtractionError only."""
        media_type = media_type_for(filename, data[:4096])
        if media_type is None or media_type in IN_PROCESS_TYPES:
            return extract(data, filename, self.limits)
        if len(data) > self.limits.max_file_bytes:
            return extract(data, filename, self.limits)  # raises the size error, no transfer
        with self._lock:
            if self._closed:
                raise ExtractionError("the extractor has been closed")
            return self._run(data, filename)

    def close(self) -> None:
        """Stop the worker and reap it; safe to call twice."""
        with self._lock:
            self._closed = True
            self._stop(graceful=True)

    @property
    def worker_pid(self) -> int | None:
        """The worker's process id while one runs (for diagnostics and tests)."""
        return self._proc.pid if self._proc is not None else None

    def _run(self, data: bytes, filename: str) -> Extracted:
        request = (data, filename, self.limits, self._debug_sleep, self._debug_crash)
        conn = self._ensure_worker()
        resend = False
        try:
            conn.send(request)
        except (OSError, ValueError):  # the idle worker had died: the file is not to blame
            self._stop(graceful=False)
            conn = self._ensure_worker()
            resend = True
        try:
            if resend:
                conn.send(request)
            ready = conn.poll(self.limits.max_seconds)
        except (OSError, EOFError, ValueError):
            self._stop(graceful=False)
            raise ExtractionError("the extractor process stopped unexpectedly") from None
        if not ready:
            self._stop(graceful=False)
            raise ExtractionError(f"took longer than {self.limits.max_seconds:g} s")
        try:
            status, payload = conn.recv()
        except (OSError, EOFError):
            code = self._stop(graceful=False)
            raise ExtractionError(
                f"the extractor process crashed while reading the file (exit code {code})"
            ) from None
        if status == "ok" and isinstance(payload, Extracted):
            return payload
        raise ExtractionError(str(payload))

    def _ensure_worker(self) -> Connection:
        if self._proc is not None and self._conn is not None and self._proc.is_alive():
            return self._conn
        self._stop(graceful=False)
        try:
            proc, parent, first = start_child(
                self._ctx, _worker_main, (), "kvdesk-extract", _STARTUP_SECONDS
            )
        except Exception as exc:
            raise ExtractionError(f"could not start the extractor process ({exc})") from None
        self._proc, self._conn = proc, parent
        if first != ("ready", None):
            self._stop(graceful=False)
            raise ExtractionError("the extractor process failed to start")
        return parent

    def _stop(self, graceful: bool) -> int | None:
        """Ends the worker (politely if asked), always joins it so no zombie remains."""
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        return stop_child(proc, conn, graceful=graceful)


def start_child(
    ctx: SpawnContext,
    target: Callable[..., None],
    args: tuple[object, ...],
    name: str,
    timeout: float,
) -> tuple[BaseProcess, Connection, object]:
    """Start a daemon child that talks over a pipe (its end comes first in ``target``'s
    arguments) and wait for its first message: None when none came within ``timeout``.
    Raises what ``Process.start`` raises; the pipe is closed then."""
    parent, child = ctx.Pipe(duplex=True)
    proc = ctx.Process(target=target, args=(child, *args), name=name, daemon=True)
    try:
        proc.start()
    except Exception:
        parent.close()
        child.close()
        raise
    child.close()
    try:
        first = parent.recv() if parent.poll(timeout) else None
    except (OSError, EOFError):
        first = None
    return proc, parent, first


def stop_child(proc: BaseProcess | None, conn: Connection | None, *, graceful: bool) -> int | None:
    """End a child started by `start_child` (politely if asked: None asks it to exit) and always
    join it, so no zombie remains; its exit code."""
    if conn is not None:
        if graceful and proc is not None and proc.is_alive():
            try:
                conn.send(None)
            except (OSError, ValueError):
                pass
        conn.close()
    if proc is None:
        return None
    if graceful:
        proc.join(2.0)
    if proc.is_alive():
        proc.kill()
    proc.join(5.0)
    code = proc.exitcode
    if code is not None:
        proc.close()
    return code
