"""The one API the CLI and the GUI call: a vault plus the keys derived from it."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from kvdesk.core.errors import VaultBusyError
from kvdesk.core.extract import Limits
from kvdesk.core.golden.sets import GoldenStore
from kvdesk.core.keys.manager import DenseStatus, KeyManager, KeySet
from kvdesk.core.paths import default_vault_path
from kvdesk.core.pilot.log import PilotLog
from kvdesk.core.progress import CancelToken, ProgressSink, no_progress
from kvdesk.core.search.retrieval import FusionParams, Retriever, SearchResult
from kvdesk.core.settings import SettingStore
from kvdesk.core.vault.importer import Importer, ImportReport
from kvdesk.core.vault.vault import WRITER_WAIT_SECONDS, Vault


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
        create: bool = True,
    ) -> KnowledgeBase:
        """Open the vault at ``path``; with ``create=False`` a missing vault is an error."""
        vault_path = Path(path) if path is not None else default_vault_path()
        vault = Vault.open(vault_path, create=create)
        return cls(vault, model=model, threads=threads)

    @property
    def path(self) -> Path:
        return self.vault.path

    # -- the managers: what the CLI and the GUI hold ------------------------------------------

    @functools.cached_property
    def settings(self) -> SettingStore:
        return SettingStore(self.vault)

    @functools.cached_property
    def pilot(self) -> PilotLog:
        return PilotLog(self.vault)

    @functools.cached_property
    def golden(self) -> GoldenStore:
        return GoldenStore(self.vault)

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
        with self._writing():
            return self._importer(limits, progress, cancel).import_paths(paths)

    def import_records(
        self,
        records_file: str | os.PathLike[str],
        *,
        limits: Limits | None = None,
        progress: ProgressSink = no_progress,
        cancel: CancelToken | None = None,
    ) -> ImportReport:
        with self._writing():
            return self._importer(limits, progress, cancel).import_records(records_file)

    def _importer(
        self, limits: Limits | None, progress: ProgressSink, cancel: CancelToken | None
    ) -> Importer:
        """An importer whose every committed value gets its lexical keys at once."""
        return Importer(
            self.vault,
            limits=limits,
            progress=progress,
            cancel=cancel,
            on_value=self.keys.value_changed,
        )

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """The vault's writer lock first, then the key index's writer, released together.

        The vault lock is what a second writer waits on; the key index writer is only ever
        taken inside it, and handed back afterwards so the next writer is not refused by it.
        """
        with self.vault.writing():
            deadline = time.monotonic() + WRITER_WAIT_SECONDS
            while True:
                try:
                    self.keys.open_writer()
                    break
                except VaultBusyError as exc:
                    # Another process still holds the key index (a search catching up, or a
                    # writer finishing): wait briefly, then say so in the vault's own words.
                    if time.monotonic() >= deadline:
                        raise VaultBusyError(
                            f"vault is busy: another kvdesk process is updating the keys of "
                            f"{self.vault.path}; try again when it has finished"
                        ) from exc
                    time.sleep(0.1)
            try:
                yield
            finally:
                self.keys.flush()
                self.keys.close()  # releases the key index writer; searches reopen it to read

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
