"""Reading scans: which values still need OCR, and OCR of one value at a time.

OCR runs outside the vault's writer lock (a page takes seconds) and only its result is written
under it, so an import or a tag change never waits behind a scan. A value that cannot be read
(damaged, a decompression bomb, too slow) is recorded as failed with the reason, once per
version: it stays findable by name and is not retried until it changes.
"""

from __future__ import annotations

from dataclasses import dataclass

from kvdesk.core.errors import ExtractionError, KvdeskError
from kvdesk.core.extract.ocr import OCR_MEDIA_TYPES, OcrEngine, OcrPage, ocr_document
from kvdesk.core.progress import CancelToken
from kvdesk.core.scans.store import ScanStore
from kvdesk.core.vault.records import now_iso
from kvdesk.core.vault.vault import Vault

MAX_OCR_PAGES = 200  # pages read per document (a 30,000-page PDF is read up to here)
OCR_SECONDS_PER_DOCUMENT = 900.0


@dataclass(frozen=True)
class ScanResult:
    value_id: int
    version: int
    pages: tuple[OcrPage, ...] = ()
    error: str = ""


class ScanReader:
    """OCR for one vault's scans and photos; the engine loads on the first page."""

    def __init__(self, vault: Vault, engine: OcrEngine | None = None) -> None:
        self.vault = vault
        self.store = ScanStore(vault)
        self._engine = engine

    @property
    def engine(self) -> OcrEngine:
        if self._engine is None:
            self._engine = OcrEngine()
        return self._engine

    def pending(self) -> list[int]:
        """Values whose current version has not been read yet (oldest first)."""
        candidates = self.vault.values.versions_of_types(OCR_MEDIA_TYPES)
        done = self.store.states()
        return sorted(v for v, version in candidates.items() if done.get(v, (0, ""))[0] != version)

    def read(self, value_id: int, cancel: CancelToken | None = None) -> ScanResult:
        """OCR one value's current version (no lock held); failures become a result."""
        record = self.vault.values.get(value_id)
        version = record.version
        try:
            data = self.vault.values.original_bytes(value_id)
            pages = ocr_document(
                data,
                record.media_type,
                engine=self.engine,
                max_pages=MAX_OCR_PAGES,
                deadline_s=OCR_SECONDS_PER_DOCUMENT,
                cancel=cancel,
            )
        except ExtractionError as exc:
            return ScanResult(value_id, version, error=str(exc))
        except KvdeskError:
            raise  # cancelled, or the vault itself failing: not this document's fault
        except Exception as exc:  # noqa: BLE001 - the engine on a hostile image: fail this one
            return ScanResult(value_id, version, error=f"OCR failed ({type(exc).__name__}: {exc})")
        return ScanResult(value_id, version, tuple(pages))

    def save(self, result: ScanResult) -> None:
        """Write one result (the caller holds the vault's writer)."""
        with self.vault.transaction() as tx:
            if self.vault.values.current_version(result.value_id) != result.version:
                return  # changed while it was read: the next run reads the new version
            if result.error:
                self.store.record_failure(
                    tx, result.value_id, result.version, self.engine.name, result.error, now_iso()
                )
                return
            self.store.record(
                tx,
                result.value_id,
                result.version,
                self.engine.name,
                [
                    (
                        p.number,
                        p.width,
                        p.height,
                        p.text,
                        [
                            {"text": w.text, "box": list(w.box),
                             "confidence": round(w.confidence, 4)}
                            for w in p.words
                        ],  # fmt: skip
                    )
                    for p in result.pages
                ],
                now_iso(),
            )
