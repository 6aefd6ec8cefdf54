"""Reading scans: which values still need OCR, and OCR of one value at a time.

OCR runs in a child process (`OcrWorker`, bounded in time and memory) and outside the vault's
writer lock (a page takes seconds); only its result is written under it, so an import or a tag
change never waits behind a scan. A value that cannot be read
(damaged, a decompression bomb, too slow) is recorded as failed with the reason, once per
version: it stays findable by name and is not retried until it changes.
"""

from __future__ import annotations

from dataclasses import dataclass

from kvdesk.core.errors import ExtractionError
from kvdesk.core.extract.ocr import OcrPage
from kvdesk.core.progress import CancelToken, ProgressSink, no_progress
from kvdesk.core.scans.store import ScanStore
from kvdesk.core.scans.worker import OcrLimits, OcrWorker
from kvdesk.core.vault.records import now_iso
from kvdesk.core.vault.vault import Vault

MAX_OCR_PAGES = OcrLimits.max_pages  # pages read per document (a 30,000-page PDF: its first)


@dataclass(frozen=True)
class ScanResult:
    value_id: int
    version: int
    pages: tuple[OcrPage, ...] = ()
    error: str = ""


class ScanReader:
    """OCR for one vault's scans and photos; the worker process starts on the first read and
    keeps its engine loaded until `close`."""

    def __init__(self, vault: Vault, worker: OcrWorker | None = None) -> None:
        self.vault = vault
        self.store = ScanStore(vault)
        self._worker = worker

    @property
    def worker(self) -> OcrWorker:
        if self._worker is None:
            self._worker = OcrWorker()
        return self._worker

    @property
    def engine_name(self) -> str:
        return self.worker.engine_name

    def close(self) -> None:
        if self._worker is not None:
            self._worker.close()
            self._worker = None

    def pending(self) -> list[int]:
        """Values whose current version has not been read yet (oldest first)."""
        return self.store.pending(self.vault.values)

    def read(
        self,
        value_id: int,
        cancel: CancelToken | None = None,
        progress: ProgressSink = no_progress,
    ) -> ScanResult:
        """OCR one value's current version (no lock held); failures become a result."""
        record = self.vault.values.get(value_id)
        version = record.version
        try:
            data = self.vault.values.original_bytes(value_id)
            pages = self.worker.read(data, record.media_type, progress=progress, cancel=cancel)
        except ExtractionError as exc:
            return ScanResult(value_id, version, error=str(exc))
        return ScanResult(value_id, version, tuple(pages))

    def save(self, result: ScanResult) -> None:
        """Write one result (the caller holds the vault's writer)."""
        with self.vault.transaction() as tx:
            if self.vault.values.current_version(result.value_id) != result.version:
                return  # changed while it was read: the next run reads the new version
            if result.error:
                self.store.record_failure(
                    tx, result.value_id, result.version, self.engine_name, result.error, now_iso()
                )
                return
            self.store.record(
                tx,
                result.value_id,
                result.version,
                self.engine_name,
                [
                    (
                        p.number,
                        p.width,
                        p.height,
                        p.text,
                        [
                            {
                                "text": w.text,
                                "box": list(w.box),
                                "confidence": round(w.confidence, 4),
                            }
                            for w in p.words
                        ],  # fmt: skip
                    )
                    for p in result.pages
                ],
                now_iso(),
            )
