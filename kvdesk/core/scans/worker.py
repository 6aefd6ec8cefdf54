"""`OcrWorker`: OCR in a reusable child process, bounded in time and memory.

OCR decodes hostile images with Pillow, PDFium and OpenCV and runs two ONNX models for
seconds a page. In a child process a decoder that crashes, hangs or swells costs one document
(recorded as failed, with the reason) and never the app; and the GUI thread's interpreter
never competes with OCR for the GIL. The child loads the engine once and reads one document per
request, sending a progress message per page, so a cancel or an overrun is noticed within a
fraction of a second and answered by ending the child.

Started with "spawn", like the extractor (`kvdesk.core.extract.sandbox`), so the child imports
this module afresh; everything it runs is importable from here at module level.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path

from kvdesk.core.errors import ExtractionError, KvdeskError
from kvdesk.core.extract.ocr import OcrEngine, OcrPage, ocr_document
from kvdesk.core.extract.sandbox import start_child, stop_child
from kvdesk.core.progress import CancelToken, Progress, ProgressSink, no_progress

_STARTUP_SECONDS = 120.0
_POLL_SECONDS = 0.2


@dataclass(frozen=True)
class OcrLimits:
    """What one document's OCR may cost before it is stopped and recorded as failed."""

    max_pages: int = 200
    seconds: float = 900.0
    #: Resident memory of the OCR process (engine ~0.3 GB, peak ~0.65 GB on an A4 page).
    max_memory_bytes: int = 2 * 1024 * 1024 * 1024
    dpi: int = 150
    #: Grace on top of ``seconds`` before the child is ended: the deadline is checked between
    #: pages, and one A4 page takes 5-6 CPU-s (more on a loaded machine).
    page_grace_seconds: float = 120.0


@dataclass(frozen=True)
class _Request:
    data: bytes
    media_type: str
    limits: OcrLimits
    pages: tuple[int, ...] | None
    debug_sleep: float = 0.0


def _worker_main(conn: Connection, threads: int | None, prefer_gpu: bool) -> None:
    """Child loop: one engine, one document per request, a message per page."""
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    engine = OcrEngine(threads=threads, prefer_gpu=prefer_gpu)
    conn.send(("ready", engine.name))
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):  # the parent went away: exit instead of lingering
            return
        if not isinstance(request, _Request):
            return

        def page_done(p: Progress) -> None:
            conn.send(("progress", p.done, p.total))

        if request.debug_sleep:
            time.sleep(request.debug_sleep)
        try:
            pages = ocr_document(
                request.data,
                request.media_type,
                engine=engine,
                max_pages=request.limits.max_pages,
                dpi=request.limits.dpi,
                deadline_s=request.limits.seconds,
                progress=page_done,
                pages=request.pages,
            )
            reply: tuple[str, object] = ("ok", pages)
        except ExtractionError as exc:
            reply = ("error", str(exc))
        except MemoryError:
            reply = ("error", "OCR ran out of memory on this document")
        except KvdeskError as exc:  # the engine could not load: every document would fail
            reply = ("broken", str(exc))
        except BaseException as exc:  # noqa: BLE001 - a decoder on a hostile file: this file
            reply = ("error", f"OCR failed ({type(exc).__name__}: {exc})")
        try:
            conn.send(reply)
        except (OSError, ValueError):
            return


def _resident_bytes(pid: int) -> int | None:
    """A process's resident memory (Linux /proc); None where it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/statm").read_text().split()
        return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class OcrWorker:
    """Reads documents in a child process that keeps its engine loaded between them.

    ``read`` raises `ExtractionError` for a document that cannot be read (damaged, a bomb, too
    slow, too much memory, a crashed decoder): the caller records it and goes on. It raises
    `Cancelled` when the token is set, and `KvdeskError` when the engine itself cannot load.
    Calls are serialised by a lock.
    """

    def __init__(
        self,
        *,
        threads: int | None = 1,
        prefer_gpu: bool = True,
        limits: OcrLimits = OcrLimits(),  # noqa: B008
    ) -> None:
        self.threads = threads
        self.prefer_gpu = prefer_gpu  # CUDA only where a session really loads on it
        self.limits = limits
        self.engine_name = OcrEngine(threads=threads).name  # naming does not load the models
        self._ctx = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._proc: BaseProcess | None = None
        self._conn: Connection | None = None
        self._closed = False
        self._debug_sleep = 0.0  # test seam: the child sleeps before reading

    def __enter__(self) -> OcrWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pid(self) -> int | None:
        """The child's process id while one runs (diagnostics and tests)."""
        return self._proc.pid if self._proc is not None else None

    def read(
        self,
        data: bytes,
        media_type: str,
        *,
        pages: Sequence[int] | None = None,
        progress: ProgressSink = no_progress,
        cancel: CancelToken | None = None,
    ) -> list[OcrPage]:
        """OCR the pages of one image or PDF that need it (see `ocr_document`)."""
        request = _Request(
            data, media_type, self.limits, tuple(pages) if pages is not None else None,
            self._debug_sleep,
        )  # fmt: skip
        with self._lock:
            if self._closed:
                raise ExtractionError("the OCR worker has been closed")
            conn = self._ensure_started()
            try:
                conn.send(request)
            except (OSError, ValueError):  # an idle child had died: not this file's fault
                self._stop(graceful=False)
                conn = self._ensure_started()
                conn.send(request)
            return self._await(conn, progress, cancel)

    def close(self) -> None:
        """End the child and reap it; safe to call twice."""
        with self._lock:
            self._closed = True
            self._stop(graceful=True)

    def _await(
        self, conn: Connection, progress: ProgressSink, cancel: CancelToken | None
    ) -> list[OcrPage]:
        started = time.monotonic()
        hard_limit = self.limits.seconds + self.limits.page_grace_seconds
        while True:
            if cancel is not None and cancel.cancelled:
                self._stop(graceful=False)  # mid-page: ending the child is the quick way
                cancel.raise_if_cancelled()
            try:
                ready = conn.poll(_POLL_SECONDS)
            except (OSError, EOFError, ValueError):
                ready = True  # recv below reports how the child ended
            if not ready:
                if time.monotonic() - started > hard_limit:
                    self._stop(graceful=False)
                    raise ExtractionError(f"OCR took longer than {self.limits.seconds:g} s")
                self._check_memory()
                continue
            try:
                kind, *payload = conn.recv()
            except (OSError, EOFError):
                code = self._stop(graceful=False)
                raise ExtractionError(
                    f"the OCR process stopped while reading this file (exit code {code})"
                ) from None
            if kind == "progress":
                done, total = payload
                progress(Progress("ocr", int(done), int(total) if total is not None else None))
                continue
            if kind == "ok" and isinstance(payload[0], list):
                return payload[0]
            if kind == "broken":
                self._stop(graceful=False)
                raise KvdeskError(str(payload[0]))
            raise ExtractionError(str(payload[0]))

    def _check_memory(self) -> None:
        pid = self.pid
        used = _resident_bytes(pid) if pid is not None else None
        if used is not None and used > self.limits.max_memory_bytes:
            self._stop(graceful=False)
            limit_mib = self.limits.max_memory_bytes // (1024 * 1024)
            raise ExtractionError(f"OCR needed more than {limit_mib} MiB of memory for this file")

    def _ensure_started(self) -> Connection:
        if self._proc is not None and self._conn is not None and self._proc.is_alive():
            return self._conn
        self._stop(graceful=False)
        try:
            proc, parent, first = start_child(
                self._ctx,
                _worker_main,
                (self.threads, self.prefer_gpu),
                "kvdesk-ocr",
                _STARTUP_SECONDS,
            )
        except Exception as exc:
            raise KvdeskError(f"could not start the OCR process ({exc})") from None
        self._proc, self._conn = proc, parent
        if not (isinstance(first, tuple) and first[0] == "ready"):
            self._stop(graceful=False)
            raise KvdeskError("the OCR process failed to start")
        return parent

    def _stop(self, graceful: bool) -> int | None:
        """End the child (politely if asked) and always join it, so no zombie remains."""
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        return stop_child(proc, conn, graceful=graceful)
