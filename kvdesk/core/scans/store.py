"""The OCR tables (ocr_page, ocr_state): all of their SQL.

OCR output is derived, like keys: it is read from a value's original bytes, never written into
the value, and redone when the value's version or the engine changes. It lives in the vault
(not in the key folder) because it costs seconds a page to make, and ``check`` verifies it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kvdesk.core.db import Connection, Database, SchemaStep
from kvdesk.core.scans.media import OCR_MEDIA_TYPES

if TYPE_CHECKING:
    from kvdesk.core.vault.values import ValueStore

SCHEMA: tuple[SchemaStep, ...] = (
    SchemaStep(
        9,
        "scans",
        """
        CREATE TABLE IF NOT EXISTS ocr_page (
            value_id INTEGER NOT NULL REFERENCES value(id) ON DELETE CASCADE,
            page INTEGER NOT NULL,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            text TEXT NOT NULL,
            words TEXT NOT NULL CHECK (json_valid(words)),
            digest TEXT NOT NULL,
            PRIMARY KEY (value_id, page)
        );
        CREATE TABLE IF NOT EXISTS ocr_state (
            value_id INTEGER PRIMARY KEY REFERENCES value(id) ON DELETE CASCADE,
            version INTEGER NOT NULL,
            engine TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('done', 'failed')),
            pages INTEGER NOT NULL,
            error TEXT NOT NULL DEFAULT '',
            digest TEXT NOT NULL DEFAULT '',
            at TEXT NOT NULL
        );
        """,
        engines=frozenset({"sqlite"}),
    ),
)


@dataclass(frozen=True)
class StoredWord:
    text: str
    box: tuple[int, int, int, int]
    confidence: float


@dataclass(frozen=True)
class StoredPage:
    value_id: int
    page: int
    width: int
    height: int
    text: str
    words: tuple[StoredWord, ...]


def page_digest(page: int, width: int, height: int, text: str, words: str) -> str:
    payload = json.dumps([page, width, height, text, words], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()


class ScanStore:
    """Every statement on ocr_page and ocr_state."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def pending(self, values: ValueStore) -> list[int]:
        """Scans and photos among ``values`` whose current version has not been read yet
        (oldest first)."""
        current = values.versions_of_types(OCR_MEDIA_TYPES)
        done = self.states()
        return sorted(v for v, version in current.items() if done.get(v, (0, ""))[0] != version)

    # writing

    def record(
        self,
        tx: Connection,
        value_id: int,
        version: int,
        engine: str,
        pages: Sequence[tuple[int, int, int, str, list[dict[str, Any]]]],
        at: str,
    ) -> None:
        """Replace a value's OCR pages (number, width, height, text, words) and mark it done."""
        tx.execute("DELETE FROM ocr_page WHERE value_id = ?", (value_id,))
        digests = []
        for number, width, height, text, words in pages:
            words_json = json.dumps(words, ensure_ascii=False)
            digest = page_digest(number, width, height, text, words_json)
            digests.append(digest)
            tx.execute(
                "INSERT INTO ocr_page(value_id, page, width, height, text, words, digest)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (value_id, number, width, height, text, words_json, digest),
            )
        whole = hashlib.sha256("".join(digests).encode()).hexdigest() if digests else ""
        self._state(tx, value_id, version, engine, "done", len(pages), "", whole, at)

    def record_failure(
        self, tx: Connection, value_id: int, version: int, engine: str, error: str, at: str
    ) -> None:
        tx.execute("DELETE FROM ocr_page WHERE value_id = ?", (value_id,))
        self._state(tx, value_id, version, engine, "failed", 0, error, "", at)

    def _state(
        self,
        tx: Connection,
        value_id: int,
        version: int,
        engine: str,
        state: str,
        pages: int,
        error: str,
        digest: str,
        at: str,
    ) -> None:
        tx.execute(
            "INSERT INTO ocr_state(value_id, version, engine, state, pages, error, digest, at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(value_id) DO UPDATE SET"
            " version = excluded.version, engine = excluded.engine, state = excluded.state,"
            " pages = excluded.pages, error = excluded.error, digest = excluded.digest,"
            " at = excluded.at",
            (value_id, version, engine, state, pages, error, digest, at),
        )

    def forget(self, value_ids: Sequence[int] | None = None) -> int:
        """Forget OCR results (all, or of ``value_ids``): they are read again."""
        with self._db.transaction() as tx:
            if value_ids is None:
                count = int(tx.execute("SELECT count(*) FROM ocr_state").fetchone()[0])
                tx.execute("DELETE FROM ocr_page")
                tx.execute("DELETE FROM ocr_state")
                return count
            count = 0
            for value_id in value_ids:
                count += tx.execute(
                    "DELETE FROM ocr_state WHERE value_id = ?", (value_id,)
                ).rowcount
                tx.execute("DELETE FROM ocr_page WHERE value_id = ?", (value_id,))
            return count

    # reading

    def states(self) -> dict[int, tuple[int, str]]:
        """``value id`` → (version, engine) its OCR was made for (done or failed)."""
        rows = self._db.conn.execute("SELECT value_id, version, engine FROM ocr_state")
        return {int(r[0]): (int(r[1]), str(r[2])) for r in rows}

    def texts(self, value_ids: Collection[int]) -> dict[int, tuple[int, str, str]]:
        """``value id`` → (version, OCR text of every page, digest) for values OCR'd."""
        wanted = sorted(set(value_ids))
        out: dict[int, tuple[int, str, str]] = {}
        for start in range(0, len(wanted), 500):
            part = wanted[start : start + 500]
            marks = ", ".join("?" * len(part))
            states = {
                int(r[0]): (int(r[1]), str(r[2]))
                for r in self._db.conn.execute(
                    f"SELECT value_id, version, digest FROM ocr_state"
                    f" WHERE state = 'done' AND value_id IN ({marks})",
                    part,
                )
            }
            pages: dict[int, list[str]] = {}
            for r in self._db.conn.execute(
                f"SELECT value_id, text FROM ocr_page WHERE value_id IN ({marks})"
                " ORDER BY value_id, page",
                part,
            ):
                pages.setdefault(int(r[0]), []).append(str(r[1]))
            for value_id, (version, digest) in states.items():
                out[value_id] = (version, "\n\n".join(pages.get(value_id, [])), digest)
        return out

    def digests(self) -> dict[int, tuple[int, str]]:
        """``value id`` → (version, digest) of every finished OCR (what keys are built from)."""
        rows = self._db.conn.execute(
            "SELECT value_id, version, digest FROM ocr_state WHERE state = 'done'"
        )
        return {int(r[0]): (int(r[1]), str(r[2])) for r in rows}

    def pages(self, value_id: int) -> list[StoredPage]:
        rows = self._db.conn.execute(
            "SELECT page, width, height, text, words FROM ocr_page WHERE value_id = ?"
            " ORDER BY page",
            (value_id,),
        ).fetchall()
        return [
            StoredPage(
                value_id,
                int(r[0]),
                int(r[1]),
                int(r[2]),
                str(r[3]),
                tuple(
                    StoredWord(w["text"], tuple(w["box"]), float(w["confidence"]))  # type: ignore[arg-type]
                    for w in json.loads(r[4])
                ),
            )
            for r in rows
        ]

    def failures(self) -> dict[int, str]:
        rows = self._db.conn.execute("SELECT value_id, error FROM ocr_state WHERE state = 'failed'")
        return {int(r[0]): str(r[1]) for r in rows}

    def check(self) -> list[str]:
        """Problems: OCR pages whose stored digest no longer matches their content."""
        problems = []
        for r in self._db.conn.execute(
            "SELECT value_id, page, width, height, text, words, digest FROM ocr_page"
        ):
            if page_digest(int(r[1]), int(r[2]), int(r[3]), str(r[4]), str(r[5])) != r[6]:
                problems.append(f"value {r[0]}: OCR page {r[1]} fails its digest")
        return problems
