"""The one API the CLI and the GUI call: a vault plus the keys derived from it."""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from kvdesk.core.errors import DiskFullError, KvdeskError, VaultBusyError, is_disk_full
from kvdesk.core.extract import Limits
from kvdesk.core.golden.protocol import GoldenEvaluation, evaluate
from kvdesk.core.golden.store import GoldenStore
from kvdesk.core.keys.manager import DenseStatus, KeyManager, KeySet
from kvdesk.core.keys.sets import KeySets
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

log = logging.getLogger("kvdesk")

__all__ = ["DenseStatus", "KeySet", "KnowledgeBase", "SearchResult"]


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
        self._vault = vault
        self._keys = KeyManager(vault, model=model, threads=threads)
        self._retriever = Retriever(vault, self._keys, fusion)

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
        return self._vault.path

    # -- the managers: what the CLI and the GUI hold ------------------------------------------

    @functools.cached_property
    def settings(self) -> SettingStore:
        return SettingStore(self._vault)

    @functools.cached_property
    def pilot(self) -> PilotLog:
        def dense_key_set() -> int | None:  # recorded with each pilot query
            key_set = self._keys.active_key_set()
            return None if key_set is None else key_set.id

        return PilotLog(self._vault, key_set=dense_key_set)

    @functools.cached_property
    def golden(self) -> GoldenStore:
        return GoldenStore(self._vault, self._vault.values, self.pilot)

    def close(self) -> None:
        self._keys.close()
        self._vault.close()

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
        with self._disk_full_said_once(), self._writing():
            return self._importer(limits, progress, cancel).import_paths(paths)

    def import_records(
        self,
        records_file: str | os.PathLike[str],
        *,
        limits: Limits | None = None,
        progress: ProgressSink = no_progress,
        cancel: CancelToken | None = None,
    ) -> ImportReport:
        with self._disk_full_said_once(), self._writing():
            return self._importer(limits, progress, cancel).import_records(records_file)

    def _importer(
        self, limits: Limits | None, progress: ProgressSink, cancel: CancelToken | None
    ) -> Importer:
        """An importer whose every committed value gets its lexical keys at once."""
        return Importer(
            self._vault,
            limits=limits,
            progress=progress,
            cancel=cancel,
            on_values=self._keys.values_changed,
        )

    @contextmanager
    def _disk_full_said_once(self) -> Iterator[None]:
        """A full disk is one clear message (not a chain of tracebacks); commits are kept."""
        try:
            yield
        except KvdeskError:
            raise
        except Exception as exc:
            if not is_disk_full(exc):
                raise
            raise DiskFullError(
                f"disk full while writing to {self._vault.path.parent}: the import stopped;"
                " every document committed before is kept. Free some space and run the same"
                " import again to complete it."
            ) from None

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """The vault's writer lock first, then the key index's writer, released together.

        The vault lock is what a second writer waits on; the key index writer is only ever
        taken inside it, and handed back afterwards so the next writer is not refused by it.
        """
        with self._vault.writing():
            deadline = time.monotonic() + WRITER_WAIT_SECONDS
            while True:
                try:
                    self._keys.open_writer()
                    break
                except VaultBusyError as exc:
                    # Another process still holds the key index (a search catching up, or a
                    # writer finishing): wait briefly, then say so in the vault's own words.
                    if time.monotonic() >= deadline:
                        raise VaultBusyError(
                            f"vault is busy: another kvdesk process is updating the keys of "
                            f"{self._vault.path}; try again when it has finished"
                        ) from exc
                    time.sleep(0.1)
            try:
                yield
            finally:
                self._keys.flush()
                self._keys.close()  # releases the key index writer; searches reopen it to read

    # -- tags -----------------------------------------------------------------------------------

    @functools.cached_property
    def tags(self) -> TagManager:
        return TagManager(
            self._vault,
            self._vault.values,
            self.settings,
            keys=self._keys,
            on_change=self._tags_changed,
        )

    def _tags_changed(self, value_ids: Collection[int]) -> None:
        """The one path from a tag change to its keys: re-key the values, then commit.

        Under the same writer protocol as an import, and the key index writer is handed back
        afterwards, so an idle app never keeps the command line from writing.
        """
        try:
            with self._writing():
                for value_id in value_ids:
                    self._keys.value_changed(value_id)
        except VaultBusyError:
            # The change itself is stored; its keys catch up on the next open or write (they
            # record what they were built from). Not a failure of the change.
            log.warning("keys of %d changed values will catch up later", len(value_ids))

    def set_tag(self, ref: str | int, tag: str, state: str = "accepted", actor: str = "") -> None:
        """Accept, suggest or reject a tag on a value; its tag and lexical keys update at once."""
        value_id = ref if isinstance(ref, int) else self._vault.values.resolve(ref)
        self.tags.set_state(value_id, tag, state, actor)

    def remove_tag(self, ref: str | int, tag: str) -> None:
        value_id = ref if isinstance(ref, int) else self._vault.values.resolve(ref)
        self.tags.remove(value_id, tag)

    def all_tags(self) -> list[str]:
        return self.tags.names()

    # -- keys -----------------------------------------------------------------------------------

    @functools.cached_property
    def key_sets(self) -> KeySets:
        """The dense key sets: list, build, rekey, activate, drop (see :class:`KeySets`)."""
        return KeySets(self._keys)

    def dense_status(self) -> DenseStatus:
        return self.key_sets.status()

    def build_dense_keys(
        self, *, progress: ProgressSink = no_progress, cancel: CancelToken | None = None
    ) -> int:
        """Compute missing dense keys of the active key set (resumable, cancellable)."""
        return self.key_sets.build(progress=progress, cancel=cancel)

    def rekey(
        self,
        model: str | Path = "default",
        *,
        activate: bool = True,
        progress: ProgressSink = no_progress,
        cancel: CancelToken | None = None,
    ) -> KeySet:
        """Build (or complete) a dense key set for ``model``; switch to it unless told not to."""
        return self.key_sets.rekey(model, activate=activate, progress=progress, cancel=cancel)

    # -- search ---------------------------------------------------------------------------------

    def search(
        self, query: str, *, k: int = 10, mode: str = "hybrid", details: bool = True
    ) -> SearchResult:
        return self._retriever.search(query, k=k, mode=mode, details=details)

    # -- for the command line: what it used to reach through vault/keys/retriever for ---------

    @property
    def values(self) -> ValueStore:
        """The stored values: resolve an identifier, get, versions, text, original bytes, list."""
        return self._vault.values

    def check(self) -> CheckReport:
        """Verify the vault: SQLite integrity and the sha256 of every stored byte string."""
        return self._vault.check()

    def rank_ids(
        self, query: str, *, mode: str = "hybrid", k: int = 100
    ) -> list[tuple[int, float]]:
        """Ranked (value id, score), no snippets or explanations: for evaluation runs."""
        return self._retriever.rank_ids(query, mode=mode, k=k)

    def key_notices(self) -> tuple[str, ...]:
        """Keys set aside and rebuilt since opening (damaged, or from another vault): say once."""
        return self._keys.notices

    def catch_up_keys(self) -> int:
        """Bring the lexical keys in step with the vault now (the app does this on open).

        Returns how many values were re-keyed; the key index writer is released afterwards.
        """
        with self._writing():
            return self._keys.sync_lexical()

    def evaluate_golden(
        self, name: str, key_set_ids: Sequence[int] | None = None, *, mode: str = "hybrid"
    ) -> GoldenEvaluation:
        """A/B the key sets on the golden set ``name`` (see :mod:`kvdesk.core.golden.protocol`)."""
        return evaluate(self.golden, self._vault, self._keys, name, key_set_ids, mode=mode)

    def wait_for_writers(
        self, patience: float, on_wait: Callable[[str], None] | None = None
    ) -> None:
        """Writes wait their turn up to ``patience`` s behind another writer (the app, an
        import), saying so once through ``on_wait``, instead of failing after 3 s."""
        self._vault.wait_for_writers(patience, on_wait)
