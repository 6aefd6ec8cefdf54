"""The one API the CLI and the GUI call: a vault plus the keys derived from it."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from kvdesk.core.errors import DiskFullError, KvdeskError, VaultBusyError, is_disk_full
from kvdesk.core.golden.protocol import GoldenEvaluation, evaluate
from kvdesk.core.golden.store import GoldenStore
from kvdesk.core.keys.confusable import MIN_DENSE, MIN_LEXICAL, ConfusableReport, find_confusable
from kvdesk.core.keys.learned import AuditFinding, Learned, LearnedPair, LearnReport
from kvdesk.core.keys.manager import DenseStatus, KeyManager, KeySet
from kvdesk.core.keys.sets import KeySets
from kvdesk.core.keys.stamped import counted
from kvdesk.core.paths import default_vault_path
from kvdesk.core.pilot.log import PilotLog
from kvdesk.core.progress import CancelToken, Progress, ProgressSink, no_progress
from kvdesk.core.scans.store import ScanStore, StoredPage
from kvdesk.core.search.retrieval import FusionParams, Retriever, SearchResult
from kvdesk.core.settings import SettingStore
from kvdesk.core.team.desk import Desk, SyncReport, TeamOfflineError
from kvdesk.core.vault.records import CheckReport
from kvdesk.core.vault.values import ValueStore
from kvdesk.core.vault.vault import WRITER_WAIT_SECONDS, Vault

if TYPE_CHECKING:  # imported where used: a search in a fresh process needs none of them
    from kvdesk.core.extract import Limits
    from kvdesk.core.scans.reader import ScanReader
    from kvdesk.core.tags.manager import TagManager
    from kvdesk.core.vault.importer import Importer, ImportReport

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
        self._desk = Desk.of(vault)
        self._learned = Learned(
            vault, self._keys, reader=self._reader, team=lambda: self._desk is not None
        )
        self._retriever = Retriever(vault, self._keys, fusion, learned=self._learned.source)
        self._writes = 0  # writes through _writing, for caches of what the vault holds
        self._scans_waiting_at: tuple[tuple[tuple[int, int], int], int] | None = None

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
        if self._desk is not None:
            team = self._desk.writes("change golden sets", "curator")
            return GoldenStore(team, team.values, self.pilot)
        return GoldenStore(self._vault, self._vault.values, self.pilot)

    def close(self) -> None:
        if self._desk is not None:
            self._desk.close()
        if "_scans" in self.__dict__:  # the OCR process, if one was started
            self._scans.close()
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
        """Store values and write their lexical keys (searchable at once). Dense keys follow.

        On a team desk the values go to the server (an admin's right) and come back through
        the desk's replica, as everyone else's do."""
        with self._disk_full_said_once(), self._writing():
            self._before_team_import()
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
            self._before_team_import()
            return self._importer(limits, progress, cancel).import_records(records_file)

    def _before_team_import(self) -> None:
        """On a desk: refuse early without the role, and catch up first (so a document the
        team already holds is recognised, even one this desk uploaded before a crash)."""
        if self._desk is not None:
            self._desk.require("admin", "import documents")
            self._desk.pull(action="import documents")
            self._key_values(self._desk.take_pulled())

    def _importer(
        self, limits: Limits | None, progress: ProgressSink, cancel: CancelToken | None
    ) -> Importer:
        """An importer whose every committed value gets its lexical keys at once."""
        from kvdesk.core.vault.importer import Importer  # with PostgreSQL's driver: ~0.1 s

        if self._desk is not None:
            desk = self._desk

            def key_pulled(value_ids: Sequence[int]) -> None:
                self._key_values(set(value_ids) | desk.take_pulled())

            return Importer(
                desk.writes("import documents", "admin"),
                limits=limits,
                progress=progress,
                cancel=cancel,
                on_values=key_pulled,
            )
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
    def _writing(self, *, timeout: float | None = None) -> Iterator[None]:
        """The vault's writer lock first, then the key index's writer, released together.

        The vault lock is what a second writer waits on; the key index writer is only ever
        taken inside it, and handed back afterwards so the next writer is not refused by it.
        """
        with self._vault.writing(timeout=timeout):
            deadline = time.monotonic() + (WRITER_WAIT_SECONDS if timeout is None else timeout)
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
            except BaseException:
                self._keys.unsure()  # a value may be stored without its keys
                raise
            finally:
                self._writes += 1
                self._keys.flush()
                self._keys.close()  # releases the key index writer; searches reopen it to read

    # -- tags -----------------------------------------------------------------------------------

    @functools.cached_property
    def tags(self) -> TagManager:
        from kvdesk.core.tags.manager import TagManager

        if self._desk is not None:
            team = self._desk.writes("change tags", "curator")
            return TagManager(
                team, team.values, self.settings, keys=self._keys, on_change=self._tags_changed
            )
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
        if self._desk is not None:
            value_ids = set(value_ids) | self._desk.take_pulled()
        try:
            with self._writing():
                self._key_values(value_ids)
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

    def _key_values(self, value_ids: Collection[int]) -> None:
        """Lexical keys for values just written or pulled (those gone lose theirs)."""
        if not value_ids:
            return
        present = self._vault.values.existing(value_ids)
        if len(present) < len(set(value_ids)):
            self._keys.sync_lexical()
        else:
            self._keys.values_changed(sorted(present))

    # -- the team (a desk of a team vault on PostgreSQL) ------------------------------------------

    @property
    def team(self) -> Desk | None:
        """The team this vault is a desk of (None: a vault on its own)."""
        return self._desk

    def join_team(self, conninfo: str, *, progress: ProgressSink = no_progress) -> SyncReport:
        """Make this (new) vault a desk of the team at ``conninfo`` and copy the team vault."""
        desk = Desk.join(self._vault, conninfo)
        if self._desk is not None:
            self._desk.close()
        self._desk = desk
        for name in ("tags", "golden"):  # rebuilt on the team's writes
            self.__dict__.pop(name, None)
        return self.sync_team()

    def sync_team(self, *, push: bool = True) -> SyncReport:
        """Deliver pilot sessions, apply the team's changes, and key what changed."""
        if self._desk is None:
            raise KvdeskError(f"{self._vault.path} is not a desk of a team (see 'team join')")
        if not (push and self._desk.pending()) and not self._desk.changes_waiting():
            return self._desk.touch()  # the app asks every few seconds: keep it cheap
        with self._writing():
            report = self._desk.sync(push=push)
            self._key_values(set(report.value_ids) | self._desk.take_pulled())
        return report

    def team_pilot(self) -> tuple[PilotLog, str]:
        """The pilot log a report covers, and a note when it is not the whole team's: on a
        curator's or admin's desk, every desk's sessions on the server; else this desk's."""
        if self._desk is None:
            return self.pilot, ""
        try:
            if self._desk.role() in ("curator", "admin"):
                self._desk.push()
                return PilotLog(self._desk.server), ""
            return self.pilot, "your role (reader) sees this desk's sessions only"
        except TeamOfflineError as exc:
            return self.pilot, str(exc).split(":")[0] + "; this desk's sessions only"

    def share_pilot_settings(self) -> str:
        """On a curator's desk: the pilot settings become every desk's (at their next sync).
        Returns a note for anyone else ('' when shared, or not a desk)."""
        if self._desk is None:
            return ""
        try:
            if self._desk.share_settings():
                return ""
            return "your role (reader) sets the pilot log for this desk only, until the next sync"
        except TeamOfflineError as exc:
            return str(exc).split(":")[0] + "; set for this desk only"

    def deliver_pilot(self) -> None:
        """Deliver this desk's pilot sessions now if the server answers (else they wait)."""
        if self._desk is not None:
            with contextlib.suppress(TeamOfflineError):
                self._desk.push()

    def catch_up_team(self, seconds: float = 2.0) -> str:
        """A bounded catch-up before a search ('': done or not a desk; else why not)."""
        if self._desk is None:
            return ""
        try:
            # Only if no one else is writing (the app syncs itself): never wait behind a writer.
            with self._writing(timeout=0.5):
                self._desk.pull(deadline=time.monotonic() + seconds)
                self._key_values(self._desk.take_pulled())
        except TeamOfflineError as exc:
            return str(exc).split(":")[0] + "; searching this desk's copy"
        except VaultBusyError:
            return ""
        return ""

    # -- keys -----------------------------------------------------------------------------------

    @functools.cached_property
    def key_sets(self) -> KeySets:
        """The dense key sets: list, build, rekey, activate, drop (see :class:`KeySets`)."""
        return KeySets(self._keys)

    def dense_status(self) -> DenseStatus:
        """The active key set's progress; a scan not read yet counts as not keyed (its text,
        and so its meaning keys, come with OCR), so whoever completes keys reads it first."""
        status = self.key_sets.status()
        waiting = self._scans_waiting()
        if waiting:
            keyed = min(status.keyed_values, max(0, status.total_values - waiting))
            status = dataclasses.replace(status, keyed_values=keyed)
        return status

    def build_dense_keys(
        self,
        *,
        progress: ProgressSink = no_progress,
        cancel: CancelToken | None = None,
        scans: bool = True,
    ) -> int:
        """Complete the keys that follow an import, in stages: scans and photos are read (OCR)
        first, since their text feeds the other keys, then the dense keys of the active key
        set are computed (resumable, cancellable). ``scans=False`` leaves OCR for later."""
        if scans:
            self.read_scans(progress=progress, cancel=cancel)
        return self.key_sets.build(progress=progress, cancel=cancel)

    @functools.cached_property
    def _scans(self) -> ScanReader:
        from kvdesk.core.scans.reader import ScanReader  # OCR and every extractor: not for search

        return ScanReader(self._vault)

    def scans_pending(self) -> int:
        """Scans and photos not read yet (a search says so: their words are not keys yet)."""
        return len(ScanStore(self._vault).pending(self._vault.values))

    def rescan(self, value_ids: Sequence[int] | None = None) -> int:
        """Forget what OCR read (all scans, or ``value_ids``) so it is read again, e.g. with
        another engine; returns how many. Original bytes are never touched."""
        with self._writing():
            return ScanStore(self._vault).forget(value_ids)

    def scan_failures(self) -> dict[str, str]:
        """Scans OCR could not read: identifier → why."""
        failures = ScanStore(self._vault).failures()
        return {self._vault.values.identifier(v): why for v, why in failures.items()}

    def scan_pages(self, value_id: int) -> list[StoredPage]:
        """What OCR read from a scan or photo, page by page, with word boxes (empty: not a
        scan, or not read yet)."""
        return ScanStore(self._vault).pages(value_id)

    def read_scans(
        self, *, progress: ProgressSink = no_progress, cancel: CancelToken | None = None
    ) -> int:
        """OCR every scan and photo not read yet; their text becomes lexical and dense keys.

        Each page is read without holding the vault's writer (seconds a page); each value's
        result is then written, and keyed, under it. Resumes where it stopped."""
        token = cancel or CancelToken()
        pending = self._scans.pending()
        for done, value_id in enumerate(pending, start=1):
            token.raise_if_cancelled()

            def page_read(p: Progress, done: int = done) -> None:
                where = f"page {min(p.done + 1, p.total or 1)} of {p.total}" if p.total else ""
                progress(Progress("reading scans", done - 1, len(pending), where))

            result = self._scans.read(value_id, cancel=token, progress=page_read)
            with self._writing():
                self._scans.save(result)
                if not result.error:
                    self._keys.forget_dense([value_id])
                    self._keys.values_changed([value_id])
            progress(Progress("reading scans", done, len(pending)))
        return len(pending)

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
        result = self._retriever.search(query, k=k, mode=mode, details=details)
        if self._scans_waiting():
            # Say it: the words of some scans and photos are not keys yet.
            result = dataclasses.replace(result, ready={**result.ready, "scans": False})
        return result

    def _scans_waiting(self) -> int:
        """Scans not read yet, counted once per write (searches run per keystroke)."""
        stamp = self._vault_stamp()
        cached = self._scans_waiting_at
        if cached is None or cached[0] != stamp:
            # Another process may have counted these very files (keys/stamped.py).
            counts = counted(
                self._keys.directory,
                "scans-pending",
                self._vault.path,
                None,
                lambda: {"pending": self.scans_pending()},
            )
            cached = (stamp, counts["pending"])
            self._scans_waiting_at = cached
        return cached[1]

    def _vault_stamp(self) -> tuple[tuple[int, int], int]:
        """Changes when anyone commits to the vault: another connection (the vault's change
        stamp) or this process, through its writer."""
        return self._vault.change_stamp(), self._writes

    # -- for the command line: what it used to reach through vault/keys/retriever for ---------

    @property
    def values(self) -> ValueStore:
        """The stored values: resolve an identifier, get, versions, text, original bytes, list."""
        return self._vault.values

    def check(self) -> CheckReport:
        """Verify the vault: SQLite integrity, the sha256 of every stored byte string, and
        the digest of every page OCR read."""
        report = self._vault.check()
        scans = ScanStore(self._vault).check()
        if not scans:
            return report
        return dataclasses.replace(report, ok=False, problems=(*report.problems, *scans))

    def rank_ids(
        self, query: str, *, mode: str = "hybrid", k: int = 100
    ) -> list[tuple[int, float]]:
        """Ranked (value id, score), no snippets or explanations: for evaluation runs."""
        return self._retriever.rank_ids(query, mode=mode, k=k)

    def key_notices(self) -> tuple[str, ...]:
        """Keys set aside and rebuilt since opening (damaged, or from another vault): say once."""
        return self._keys.notices

    def model_suggestion(self, sample: int = 200) -> str | None:
        """A better meaning-key model for this vault, if there is one: mostly Japanese documents
        keyed by the English-only default get ``multilingual-e5-small`` suggested (None: fine).
        Reads the first ``sample`` documents' text, a few ms."""
        from kvdesk.core.keys.models import language_suggestion

        active = self._keys.active_key_set()
        texts = [self.values.text(r.id)[:4000] for r in self.values.list_values(limit=sample)]
        return language_suggestion(texts, active.name if active is not None else None)

    def confusable_pairs(
        self,
        *,
        min_dense: float = MIN_DENSE,
        min_lexical: float = MIN_LEXICAL,
        among: Collection[int] | None = None,
        progress: ProgressSink = no_progress,
        cancel: CancelToken | None = None,
    ) -> ConfusableReport:
        """Pairs of different values whose keys collide (near-identical dense keys and word
        profiles), what tells them apart and a tag that would (see :mod:`~kvdesk.core.keys.
        confusable`). Reads only: keys are not built, nothing is tagged."""
        return find_confusable(
            self._keys,
            min_dense=min_dense,
            min_lexical=min_lexical,
            among=among,
            existing_tags=self.all_tags(),
            progress=progress,
            cancel=cancel,
        )

    def catch_up_keys(self) -> int:
        """Bring the lexical keys in step with the vault now (the app does this on open).

        Returns how many values were re-keyed; the key index writer is released afterwards.
        """
        with self._writing():
            return self._keys.sync_lexical()

    def evaluate_golden(
        self, name: str, key_set_ids: Sequence[int] | None = None, *, mode: str = "hybrid"
    ) -> GoldenEvaluation:
        """A/B the key sets on the golden set ``name`` (see :mod:`kvdesk.core.golden.protocol`).

        A learned key set among ``key_set_ids`` is compared with no learned keys at all (both
        on the active dense key set)."""
        learned = {k.id for k in self._learned.key_sets()}
        chosen = [i for i in key_set_ids or () if i in learned]
        if chosen:
            return self._evaluate_learned(name, chosen[0], mode)
        return evaluate(self.golden, self._vault, self._keys, name, key_set_ids, mode=mode)

    # -- learned keys: searches that found a value become its keys ------------------------------

    def _reader(self) -> str:
        """Who reads explanations: the team login on a desk, else the pilot user label."""
        if self._desk is not None:
            return self._desk.known_user()
        return self.pilot.settings().user

    def learning_pairs(
        self, *, golden: str | None = None, pilot: bool = False
    ) -> list[LearnedPair]:
        """(query -> value) pairs: a golden set's cases and/or pilot sessions marked found."""
        pairs: list[LearnedPair] = []
        if golden is not None:
            pairs += self._learned.pairs_from_golden(self.golden, golden)
        if pilot:
            log_, _note = self.team_pilot()
            pairs += self._learned.pairs_from_pilot(log_.sessions())
        return pairs

    def learn(
        self,
        pairs: Sequence[LearnedPair],
        *,
        activate: bool = True,
        progress: ProgressSink = no_progress,
    ) -> LearnReport:
        """Learn keys from ``pairs`` (see :mod:`kvdesk.core.keys.learned`): fit on a seeded part,
        check on the rest, activate only if held-out quality did not drop. Values untouched."""

        def said(stage: str, done: int, total: int) -> None:
            progress(Progress(stage, done, total))

        return self._learned.learn(pairs, activate=activate, progress=said)

    def learned_key_sets(self) -> list[KeySet]:
        return self._learned.key_sets()

    def activate_learned(self, key_set_id: int) -> KeySet:
        return self._learned.activate(key_set_id)

    def drop_learned(self, key_set_id: int) -> int:
        """Delete a learned key set; dropping the active one turns learned keys off."""
        return self._learned.drop(key_set_id)

    def learned_audit(self) -> list[AuditFinding]:
        """Learned keys that carry identifiers, numbers, e-mail addresses, names, or the words
        of one user only (the active learned key set, else the newest)."""
        return self._learned.audit()

    def learned_words_shown(self) -> bool:
        """Whether explanations show other users' learned searches."""
        return self._learned.visibility().show_others

    def show_learned_words(self, show: bool) -> None:
        """Allow or forbid other users' learned searches in explanations (a curator's call on a
        team desk)."""
        if self._desk is not None:
            self._desk.require("curator", "show other users' searches")
        self._learned.set_show_others(show)

    def _evaluate_learned(self, name: str, key_set_id: int, mode: str) -> GoldenEvaluation:
        from kvdesk.core.golden.protocol import compare_runs

        queries = self.golden.queries(name)
        if not queries:
            raise KvdeskError(f"golden set {name!r} has no queries")
        dense = self._keys.active_key_set()
        if dense is None:
            raise KvdeskError("this vault has no dense key set yet; build dense keys first")

        external = (
            self.values.external_ids()
            if self.golden.get_set(name).source.startswith("beir:")
            else {}
        )
        without, with_learned = self._learned.evaluate(
            key_set_id, [(q.key, q.text) for q in queries], mode, external=external
        )
        status = self._keys.dense_status(dense)
        learned = self._learned.key_set(key_set_id)
        return compare_runs(
            name, mode, queries, [(dense, status, without), (learned, status, with_learned)]
        )

    def wait_for_writers(
        self, patience: float, on_wait: Callable[[str], None] | None = None
    ) -> None:
        """Writes wait their turn up to ``patience`` s behind another writer (the app, an
        import), saying so once through ``on_wait``, instead of failing after 3 s."""
        self._vault.wait_for_writers(patience, on_wait)
