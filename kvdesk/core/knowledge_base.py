"""The one API the CLI and the GUI call: a vault plus the keys derived from it."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from kvdesk.core.errors import VaultBusyError
from kvdesk.core.extract import Limits
from kvdesk.core.golden.store import GoldenStore
from kvdesk.core.keys.manager import DenseStatus, KeyManager, KeySet
from kvdesk.core.paths import default_vault_path
from kvdesk.core.pilot.log import PilotLog
from kvdesk.core.progress import CancelToken, ProgressSink, no_progress
from kvdesk.core.search.retrieval import FusionParams, Retriever, SearchResult
from kvdesk.core.settings import SettingStore
from kvdesk.core.tags.manager import TagManager
from kvdesk.core.vault.importer import Importer, ImportReport
from kvdesk.core.vault.records import CheckReport
from kvdesk.core.vault.values import ValueStore
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
        def dense_key_set() -> int | None:  # recorded with each pilot query
            key_set = self.keys.active_key_set()
            return None if key_set is None else key_set.id

        return PilotLog(self.vault, key_set=dense_key_set)

    @functools.cached_property
    def golden(self) -> GoldenStore:
        return GoldenStore(self.vault, self.vault.values, self.pilot)

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

    @functools.cached_property
    def tags(self) -> TagManager:
        return TagManager(
            self.vault,
            self.vault.values,
            self.settings,
            keys=self.keys,
            on_change=self._tags_changed,
        )

    def _tags_changed(self, value_ids: Collection[int]) -> None:
        """The one path from a tag change to its keys: re-key the values, then commit."""
        with self.vault.writing():
            for value_id in value_ids:
                self.keys.value_changed(value_id)
            self.keys.flush()

    def set_tag(self, ref: str | int, tag: str, state: str = "accepted", actor: str = "") -> None:
        """Accept, suggest or reject a tag on a value; its tag and lexical keys update at once."""
        value_id = ref if isinstance(ref, int) else self.vault.values.resolve(ref)
        self.tags.set_state(value_id, tag, state, actor)

    def remove_tag(self, ref: str | int, tag: str) -> None:
        value_id = ref if isinstance(ref, int) else self.vault.values.resolve(ref)
        self.tags.remove(value_id, tag)

    def all_tags(self) -> list[str]:
        return self.tags.names()

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

    # -- for the command line: what it used to reach through vault/keys/retriever for ---------

    @property
    def values(self) -> ValueStore:
        """The stored values: resolve an identifier, get, versions, text, original bytes, list."""
        return self.vault.values

    def check(self) -> CheckReport:
        """Verify the vault: SQLite integrity and the sha256 of every stored byte string."""
        return self.vault.check()

    def key_set_status(self, key_set: KeySet) -> DenseStatus:
        """How many values ``key_set`` has keyed (any key set, not only the active one)."""
        return self.keys.dense_status(key_set)

    def passage_count(self, key_set: KeySet) -> int:
        return self.keys.passage_count(key_set)

    def rank_ids(
        self, query: str, *, mode: str = "hybrid", k: int = 100
    ) -> list[tuple[int, float]]:
        """Ranked (value id, score), no snippets or explanations: for evaluation runs."""
        return self.retriever.rank_ids(query, mode=mode, k=k)

    def key_notices(self) -> tuple[str, ...]:
        """Keys set aside and rebuilt since opening (damaged, or from another vault): say once."""
        return self.keys.notices
