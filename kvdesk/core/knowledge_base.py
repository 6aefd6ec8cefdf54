"""The one API the CLI and the GUI call: a vault plus the keys derived from it."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from kvdesk.core.extract import Limits
from kvdesk.core.importer import Importer, ImportReport
from kvdesk.core.keys.manager import DenseStatus, KeyManager, KeySet
from kvdesk.core.paths import default_vault_path
from kvdesk.core.progress import CancelToken, ProgressSink, no_progress
from kvdesk.core.retrieval import FusionParams, Retriever, SearchResult
from kvdesk.core.vault import Vault


class KnowledgeBase:
    """A vault and its key spaces. Open with :meth:`open`; close when done.

    Writes (import, keys, tags) must come from one thread at a time; searches may run on any
    thread (each thread gets its own SQLite connection).
    """

    def __init__(
        self,
        vault: Vault,
        *,
        model: str | Path = "default",
        threads: int | None = None,
        fusion: FusionParams | None = None,
    ) -> None:
        self.vault = vault
        self.keys = KeyManager(vault, model=model, threads=threads)
        self.retriever = Retriever(vault, self.keys, fusion)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        model: str | Path = "default",
        threads: int | None = None,
    ) -> KnowledgeBase:
        vault = Vault.open(Path(path) if path is not None else default_vault_path())
        return cls(vault, model=model, threads=threads)

    @property
    def path(self) -> Path:
        return self.vault.path

    def close(self) -> None:
        self.keys.close()
        self.vault.close()

    def __enter__(self) -> KnowledgeBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- values ---------------------------------------------------------------------------------

    def import_paths(
        self,
        paths: Iterable[str | os.PathLike[str]],
        *,
        limits: Limits | None = None,
        progress: ProgressSink = no_progress,
        cancel: CancelToken | None = None,
    ) -> ImportReport:
        """Store values and write their lexical keys (searchable at once). Dense keys follow."""
        self.keys.open_writer()
        importer = Importer(
            self.vault,
            limits=limits,
            progress=progress,
            cancel=cancel,
            on_value=self.keys.value_changed,
        )
        try:
            return importer.import_paths(paths)
        finally:
            self.keys.flush()

    def import_records(
        self,
        records_file: str | os.PathLike[str],
        *,
        progress: ProgressSink = no_progress,
        cancel: CancelToken | None = None,
    ) -> ImportReport:
        self.keys.open_writer()
        importer = Importer(
            self.vault, progress=progress, cancel=cancel, on_value=self.keys.value_changed
        )
        try:
            return importer.import_records(records_file)
        finally:
            self.keys.flush()

    # -- tags -----------------------------------------------------------------------------------

    def set_tag(self, ref: str | int, tag: str, state: str = "accepted", actor: str = "") -> None:
        """Accept, suggest or reject a tag on a value; its tag and lexical keys update at once."""
        value_id = ref if isinstance(ref, int) else self.vault.resolve(ref)
        with self.vault.transaction() as tx:
            self.vault.set_tag_state(tx, value_id, tag, state, actor)
        self.keys.value_changed(value_id)
        self.keys.flush()

    def remove_tag(self, ref: str | int, tag: str) -> None:
        value_id = ref if isinstance(ref, int) else self.vault.resolve(ref)
        with self.vault.transaction() as tx:
            tag_id = self.vault.tag_id(tx, tag, create=False)
            if tag_id is not None:
                tx.execute(
                    "DELETE FROM value_tag WHERE value_id = ? AND tag_id = ?", (value_id, tag_id)
                )
        self.keys.value_changed(value_id)
        self.keys.flush()

    def all_tags(self) -> list[str]:
        return [r[0] for r in self.vault.conn.execute("SELECT name FROM tag ORDER BY name")]

    # -- keys -----------------------------------------------------------------------------------

    def dense_status(self) -> DenseStatus:
        return self.keys.dense_status()

    def build_dense_keys(
        self, *, progress: ProgressSink = no_progress, cancel: CancelToken | None = None
    ) -> int:
        """Compute missing dense keys of the active key set (resumable, cancellable)."""
        return self.keys.build_dense(progress=progress, cancel=cancel)

    def rekey(
        self,
        model: str | Path = "default",
        *,
        activate: bool = True,
        progress: ProgressSink = no_progress,
        cancel: CancelToken | None = None,
    ) -> KeySet:
        """Build (or complete) a dense key set for ``model``; switch to it unless told not to."""
        return self.keys.rekey(model, activate=activate, progress=progress, cancel=cancel)

    def key_sets(self) -> list[KeySet]:
        return self.keys.key_sets()

    def activate_key_set(self, key_set_id: int) -> KeySet:
        """Atomically switch search to a complete key set (candidate or retired); no rebuild."""
        return self.keys.activate(key_set_id)

    def drop_key_set(self, key_set_id: int) -> int:
        """Delete a non-active key set's vectors; returns the number of passages removed."""
        return self.keys.drop(key_set_id)

    # -- search ---------------------------------------------------------------------------------

    def search(
        self, query: str, *, k: int = 10, mode: str = "hybrid", details: bool = True
    ) -> SearchResult:
        return self.retriever.search(query, k=k, mode=mode, details=details)
