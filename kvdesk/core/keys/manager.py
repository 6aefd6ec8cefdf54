"""Keeps the derived key spaces in step with the vault: the vault always wins.

Lexical keys are written as values arrive; dense keys follow in batches (resumable: each value's
passages are committed with a ``keyed`` row, so an interrupted build continues where it stopped).
A key set records the model and chunking it was built with; ``rekey`` builds a new one beside
the active one and switches atomically.

Longer than most modules: it is the one place where values become keys (lexical catch-up by
fingerprint, key sets, dense builds and their switch-over), so the rule "the vault always wins"
is enforced in one file rather than spread over several.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from kvdesk.core.errors import (
    KvdeskError,
    NotFoundError,
    VaultBusyError,
    VaultFormatError,
    is_disk_full,
)
from kvdesk.core.keys import vector_sync
from kvdesk.core.keys.dense import (
    DEFAULT_MODEL_NAME,
    Embedder,
    ModelSpec,
    load_model_spec,
    make_passages,
    probe_providers,
)
from kvdesk.core.keys.folder import KeyFolder, key_fingerprint
from kvdesk.core.keys.lexical import LexicalDoc, LexicalIndex
from kvdesk.core.keys.models import INSTALLABLE
from kvdesk.core.keys.quotes import QuoteKeeper
from kvdesk.core.keys.stamped import counted, vault_files_stamp
from kvdesk.core.keys.store import KeySet, KeySetState, KeyStore
from kvdesk.core.keys.vectors import VectorMatrix
from kvdesk.core.paths import keys_dir_for
from kvdesk.core.progress import CancelToken, Progress, ProgressSink, no_progress
from kvdesk.core.scans.store import ScanStore
from kvdesk.core.scans.text import unwrap_cjk_lines
from kvdesk.core.search.identifiers import Identifier, canonical
from kvdesk.core.search.identifiers import extract as extract_identifiers
from kvdesk.core.settings import SettingStore
from kvdesk.core.tags.store import TagStore
from kvdesk.core.vault.records import KeySource, clean_text
from kvdesk.core.vault.vault import Vault

log = logging.getLogger("kvdesk.keys")

MAX_TOKENS = 256
OVERLAP_TOKENS = 32
LEXICAL_COMMIT_EVERY = 2000
# Small batches: with ~200-token passages on a CPU, batch 8 ran 1.2x faster than 32 (less memory
# traffic in the unfused attention); measure with bench/bench_embed.py --batch.
EMBED_BATCH = 8


def model_source(model: str | Path) -> str:
    """What a key set records as its model: the default's name, or an absolute folder path.

    A relative ``--model ./folder`` is resolved now, so the key set still finds its model when
    kvdesk later runs from another working directory.
    """
    if isinstance(model, str) and model in ("default", DEFAULT_MODEL_NAME):
        return model
    if isinstance(model, str) and model in INSTALLABLE:  # a converted model, by its name
        return model
    return str(Path(model).expanduser().resolve())


@dataclass(frozen=True)
class DenseStatus:
    key_set: KeySet | None
    keyed_values: int
    total_values: int

    @property
    def ready(self) -> bool:
        return self.key_set is not None and self.keyed_values >= self.total_values


class KeyManager:
    """The key spaces of one vault. Lexical writes need :meth:`open_writer` first."""

    def __init__(self, vault: Vault, *, model: str | Path = "default", threads: int | None = None):
        self.vault = vault
        self._store = KeyStore(vault)
        self.directory = keys_dir_for(vault.path)
        self._model_name = model_source(model)
        self._threads = threads
        self._provider: str | None = None
        self._lexical: LexicalIndex | None = None
        self._lexical_writable = False
        self._pending_lexical = 0
        self._quotes = QuoteKeeper()  # context keys of short values (quotes.py)
        self._embedders: dict[str, Embedder] = {}
        self._matrix: VectorMatrix | None = None
        self._matrix_key_set: int | None = None
        self._lock = threading.RLock()
        self._caught_up_at: tuple[int, int] | None = None  # see open_writer
        # dense_status per search, computed again after any write (see _dense_changed).
        self._dense_writes = 0
        self._status_cache: tuple[tuple[object, int], DenseStatus] | None = None
        self._folder = KeyFolder(self.directory, vault.path.name, SettingStore(vault).vault_id)

    # -- lexical --------------------------------------------------------------------------------

    @property
    def lexical(self) -> LexicalIndex:
        with self._lock:
            if self._lexical is None:
                self._open_lexical(writable=False)
                self._catch_up_if_stale()
            assert self._lexical is not None
            return self._lexical

    def _catch_up_if_stale(self) -> None:
        """The vault wins: if the lexical keys disagree with it, rebuild what differs now."""
        assert self._lexical is not None
        # The full check reads every value (~1 s at 100,000): skip it while neither the vault's
        # files nor the index changed since one found the keys in step.
        stamp = vault_files_stamp(self.vault.path)
        if stamp is not None and self._lexical.known_in_step(stamp):
            return
        try:
            indexed = self._lexical.indexed_fingerprints()
        except Exception as exc:  # noqa: BLE001 - unreadable fast fields: a damaged index
            self._set_aside("lexical", f"it could not be read ({exc})")
            self._open_lexical(writable=True)
            indexed = {}
        if indexed == self._fingerprints():
            self._record_identity()
            if stamp is not None:
                self._lexical.record_in_step(stamp)
            return
        try:
            self.sync_lexical()
        except VaultBusyError:
            log.warning("lexical keys are stale, and another kvdesk process is updating them")
            return
        except Exception as exc:  # noqa: BLE001 - a full disk, a killed index writer, ...
            # Search goes on with the keys there are; they catch up on the next write or open.
            log.warning("lexical keys are stale and could not be caught up now: %s", exc)
            self._open_lexical(writable=False)
            return
        # Hand the index writer back at once: a search must not keep other processes (an
        # import from the command line, say) from writing.
        self._open_lexical(writable=False)

    def _open_lexical(self, *, writable: bool) -> None:
        path = self.directory / "lexical"
        self._claim_directory()
        if not writable and not path.exists():
            writable = True  # first use: create it (and catch up below)
        if self._lexical is not None:
            self._lexical.close()
            self._lexical = None
        try:
            self._lexical = LexicalIndex.open(path, writable=writable)
        except VaultFormatError:
            if writable:
                raise
            # No index of this kvdesk's schema yet (first run after an upgrade): build it.
            self._lexical = LexicalIndex.open(path, writable=True)
            writable = True
        except (VaultBusyError, KvdeskError):
            raise
        except Exception as exc:  # noqa: BLE001 - tantivy: missing segment, bad meta.json
            self._set_aside("lexical", f"it could not be opened ({exc})")
            self._lexical = LexicalIndex.open(path, writable=True)
            writable = True
        self._lexical_writable = writable

    # -- binding keys to their vault ------------------------------------------------------------

    def _claim_directory(self) -> None:
        """The key folder is this vault's, or it is set aside (see :class:`KeyFolder`)."""
        self._folder.claim(before_move=self._close_lexical)

    def _record_identity(self) -> None:
        self._folder.record_identity()

    def _set_aside(self, part: str | None, why: str) -> None:
        self._close_lexical()
        self._folder.set_aside(part, why)

    def _close_lexical(self) -> None:
        if self._lexical is not None:
            self._lexical.close()
            self._lexical = None
            self._lexical_writable = False

    @property
    def notices(self) -> tuple[str, ...]:
        """What keys had to be set aside and rebuilt since this manager opened (say it once)."""
        return tuple(self._folder.notices)

    def _fingerprints(self) -> dict[int, int]:
        """``value id`` → fingerprint of what its lexical keys must be built from now."""
        states = self.vault.values.key_states()
        tags = TagStore(self.vault).accepted_tags(states)
        scans = ScanStore(self.vault).digests()
        return {
            value_id: key_fingerprint(
                _with_scan(digest, scans.get(value_id), version), ident, updated, tags[value_id]
            )
            for value_id, (digest, ident, updated, version) in states.items()
        }

    def open_writer(self) -> None:
        """Take the lexical index's writer (one process at a time) and catch up with the vault.

        The full catch-up reads every value's fingerprint (about 10 µs a value): it runs when
        this process first writes, and again only when another connection has committed to
        the vault since (SQLite's ``data_version``) or a write here failed half-way. Writes
        made here key their values themselves."""
        with self._lock:
            if not self._lexical_writable:
                self._open_lexical(writable=True)
            stamp = self._vault_stamp()
            if stamp is not None and stamp == self._caught_up_at:
                return
            self.sync_lexical()
            self._caught_up_at = self._vault_stamp()

    def _vault_stamp(self) -> tuple[int, int] | None:
        try:
            return self.vault.change_stamp()
        except Exception:  # noqa: BLE001 - no stamp: catch up in full
            return None

    def unsure(self) -> None:
        """A write failed between a value and its keys: catch up in full at the next writer."""
        self._caught_up_at = None
        self._dense_changed()

    def _dense_changed(self) -> None:
        """Values or dense keys changed through this process: dense_status counts again."""
        self._dense_writes += 1

    def sync_lexical(self, progress: ProgressSink = no_progress) -> int:
        """Re-index values whose lexical keys are missing or stale; drop keys of gone values.

        Stale means built from anything else than what the vault holds now: another version,
        text, title, identifier or tag state (a crash between a change and its keys), or
        another vault's documents.
        """
        with self._lock:
            if not self._lexical_writable:
                self._open_lexical(writable=True)
            index = self.lexical
            try:
                indexed = index.indexed_fingerprints()
            except Exception as exc:  # noqa: BLE001 - a damaged index: rebuild it whole
                self._set_aside("lexical", f"it could not be read ({exc})")
                self._open_lexical(writable=True)
                index = self.lexical
                indexed = {}
            current = self._fingerprints()
            stale = [vid for vid, built in current.items() if indexed.get(vid) != built]
            gone = [vid for vid in indexed if vid not in current]
            if gone:
                index.delete(gone)
            for done, value_id in enumerate(stale, start=1):
                try:
                    doc = self.lexical_doc(value_id)
                except KvdeskError as exc:  # one unreadable value must not stop the others
                    log.warning("no lexical keys for value %d: %s", value_id, exc)
                    continue
                index.add([doc])
                if done % 500 == 0:
                    progress(Progress("lexical keys", done, len(stale)))
            if stale or gone:
                index.commit()
                log.info("lexical keys caught up: %d re-indexed, %d removed", len(stale), len(gone))
                self._quotes.note([*stale, *gone])
            if not indexed:
                self._quotes.forget()  # a new index: every short value needs its context
            self._refresh_quotes()
            self._record_identity()
            return len(stale)

    def key_sources(self, value_ids: Sequence[int]) -> list[KeySource]:
        """What keys are built from: each value's text, and what OCR read from its pages
        (a scan's text is a key source: the value itself is never rewritten)."""
        sources = self.vault.values.key_sources(value_ids)
        scans = ScanStore(self.vault).texts([s.value_id for s in sources])
        out = []
        for src in sources:
            scan = scans.get(src.value_id)
            if scan is not None and scan[0] == src.version and scan[1].strip():
                read = unwrap_cjk_lines(scan[1])
                text = f"{src.text}\n\n{read}" if src.text.strip() else read
                src = replace(src, text=text, digest=_with_scan(src.digest, scan[::2], src.version))
            out.append(src)
        return out

    def forget_dense(self, value_ids: Sequence[int]) -> None:
        """Values whose text grew (a scan was read): their meaning keys are built again."""
        self._store.forget(value_ids)
        self._dense_changed()

    def lexical_doc(self, value_id: int) -> LexicalDoc:
        docs = self.lexical_docs([value_id])
        if not docs:
            raise KvdeskError(f"value {value_id} vanished while its keys were written")
        return docs[0]

    def lexical_docs(self, value_ids: Sequence[int]) -> list[LexicalDoc]:
        """What the lexical keys of ``value_ids`` hold now (two reads for the whole batch)."""
        return self._lexical_docs(self.key_sources(value_ids))

    def _lexical_docs(self, sources: Sequence[KeySource]) -> list[LexicalDoc]:
        tags = TagStore(self.vault).accepted_tags([src.value_id for src in sources])
        return [
            LexicalDoc(
                value_id=src.value_id,
                version=src.version,
                identifier=src.identifier,
                external_id=src.external_id,
                title=src.title,
                text=_with_image_words(src),
                tags=tags[src.value_id],
                media_type=src.media_type,
                path=clean_text(src.source_path or ""),
                updated=_key_date(src.source_mtime, src.updated_at),
                built=key_fingerprint(
                    src.digest, src.identifier, src.updated_at, tags[src.value_id]
                ),
                identifiers=_identifiers(src),
                context=self._quotes.context(src.value_id),
            )
            for src in sources
        ]

    def value_changed(self, value_id: int) -> None:
        """Called after a value commits: its lexical keys are written at once (searchable now)."""
        self.values_changed([value_id])

    def values_changed(self, value_ids: Sequence[int]) -> None:
        """Called after values commit: their lexical keys are written at once (searchable now)."""
        self._dense_changed()
        with self._lock:
            if not self._lexical_writable:
                self._open_lexical(writable=True)
            sources = self.key_sources(value_ids)
            docs = self._lexical_docs(sources)
            self.lexical.add(docs)
            self._quotes.note(value_ids, sources)
            self._pending_lexical += len(docs)
            if self._pending_lexical >= LEXICAL_COMMIT_EVERY:
                self.flush()

    def flush(self) -> None:
        self._dense_changed()  # every write of the facade ends here
        with self._lock:
            pending, self._pending_lexical = self._pending_lexical, 0
            if self._lexical is not None and self._lexical_writable and pending:
                self._lexical.commit()  # on failure the next open catches up (fingerprints)
                self._refresh_quotes()

    def _refresh_quotes(self) -> None:
        """Give short values the words around their quotes in other values (quotes.py).

        Runs after a commit, so the index finds every quoting value. A failure costs only
        these context keys: they are caught up at the next write."""
        if self._lexical is None or not self._lexical_writable or not self._quotes.due:
            return
        index = self._lexical
        try:
            ids = self._quotes.refresh(
                text_lengths=self.vault.values.text_lengths,
                sources=self.key_sources,
                holders=index.quote_holders,
                indexed=index.indexed_contexts,
                quoting_from=index.quoting_from,
            )
            if ids:
                index.add(self.lexical_docs(ids))
                index.commit()
                log.info("context keys of %d short values updated", len(ids))
        except Exception as exc:  # noqa: BLE001 - a derived extra: never fail a write for it
            if is_disk_full(exc):
                raise
            self._quotes.forget()
            log.warning("context keys of short values not updated now: %s", exc)

    # -- key sets -------------------------------------------------------------------------------

    def key_sets(self, space: str = "dense") -> list[KeySet]:
        return self._store.key_sets(space)

    def active_key_set(self, space: str = "dense") -> KeySet | None:
        for key_set in self.key_sets(space):
            if key_set.state == KeySetState.ACTIVE:
                return key_set
        return None

    def _params_for(self, spec: ModelSpec, source: str | Path) -> dict[str, Any]:
        source = model_source(source)
        dim = spec.dim
        if not dim:  # the manifest does not say: ask the model itself (and keep the session)
            dim = self._embedder(source, spec).dim
        return {
            "model": spec.name,
            "source": source,
            "model_sha256": spec.model_sha256,
            "tokenizer_sha256": spec.tokenizer_sha256,
            "pooling": spec.pooling,
            "query_prefix": spec.query_prefix,
            "passage_prefix": spec.passage_prefix,
            "max_tokens": min(MAX_TOKENS, spec.max_tokens),
            "overlap_tokens": OVERLAP_TOKENS,
            "dim": int(dim),
        }

    def ensure_dense_key_set(self) -> KeySet:
        """The active dense key set, created for the configured model on first use."""
        active = self.active_key_set()
        if active is not None:
            return active
        return self._create_key_set(self._model_name, state=KeySetState.ACTIVE)

    def _create_key_set(
        self, source: str | Path, *, state: KeySetState, params: dict[str, Any] | None = None
    ) -> KeySet:
        spec = load_model_spec(source)
        params = params or self._params_for(spec, source)
        key_set_id = self._store.create("dense", spec.name, params, state)
        found = [k for k in self.key_sets() if k.id == key_set_id]
        return found[0]

    def _embedder(self, source: str, spec: ModelSpec) -> Embedder:
        """The (cached) embedder of a model folder whose sha256s match ``spec``."""
        with self._lock:
            embedder = self._embedders.get(source)
            if embedder is None or (
                embedder.spec.model_sha256,
                embedder.spec.tokenizer_sha256,
            ) != (spec.model_sha256, spec.tokenizer_sha256):
                embedder = Embedder(spec, threads=self._threads)
                self._embedders[source] = embedder
                self._provider = embedder.provider_info.provider
            return embedder

    def embedder_for(self, key_set: KeySet) -> Embedder:
        """The model of ``key_set``, checked against the model and tokenizer it was built with."""
        with self._lock:
            source = str(key_set.params["source"])
            embedder = self._embedders.get(source)
            if embedder is not None and self._matches(embedder.spec, key_set):
                return embedder
            spec = load_model_spec(source)
            if not self._matches(spec, key_set):
                raise KvdeskError(
                    f"the model or tokenizer of key set {key_set.id} ({key_set.name}) has"
                    " changed on disk; run `kvdesk rekey` to rebuild the dense keys"
                )
            return self._embedder(source, spec)

    @staticmethod
    def _matches(spec: ModelSpec, key_set: KeySet) -> bool:
        return spec.model_sha256 == key_set.params.get(
            "model_sha256"
        ) and spec.tokenizer_sha256 == key_set.params.get("tokenizer_sha256")

    def provider_for(self, key_set: KeySet) -> str:
        """The execution provider ``key_set``'s model runs on (without loading it just for this).

        The loaded embedder's own provider when there is one, else what a session would really
        get here (``probe_providers``: a 138-byte model, probed once).
        """
        with self._lock:
            embedder = self._embedders.get(str(key_set.params.get("source", "")))
            if embedder is not None:
                return embedder.provider_info.provider
            if self._provider is None:
                try:
                    self._provider = probe_providers().provider
                except KvdeskError:
                    return "none"
            return self._provider

    # -- dense ----------------------------------------------------------------------------------

    def dense_status(self, key_set: KeySet | None = None) -> DenseStatus:
        """How many values have current keys in ``key_set`` (default: active). Asked by every
        search: counted again only after a write (here or by another process)."""
        key_set = key_set or self.active_key_set()
        stamp = (self._vault_stamp(), self._dense_writes)
        cached = self._status_cache
        if stamp[0] is not None and cached is not None and cached[0] == stamp:
            if cached[1].key_set == key_set:
                return cached[1]

        def count() -> dict[str, int]:
            current = self.vault.values.current_versions()
            done = 0
            if key_set is not None:  # each store reads its own table: compared here
                keyed = self._store.keyed_versions(key_set.id)
                done = sum(1 for v, version in current.items() if keyed.get(v) == version)
            return {"keyed": done, "total": len(current)}

        # Another process may have counted these very files (stamped.py).
        key = key_set.id if key_set is not None else None
        counts = counted(self.directory, "dense-status", self.vault.path, key, count)
        status = DenseStatus(key_set, counts["keyed"], counts["total"])
        self._status_cache = (stamp, status)
        return status

    def missing_dense(self, key_set: KeySet) -> list[int]:
        """Values whose current version lacks keys in ``key_set``, most recently modified first
        (the source file's mtime, else when it was stored; ties: newest id first), so a long
        first build makes the documents a user works on now searchable by meaning soonest."""
        keyed = self._store.keyed_versions(key_set.id)
        current = self.vault.values.current_versions()
        missing = [v for v, version in current.items() if keyed.get(v) != version]
        recency = self.vault.values.recency()
        return sorted(missing, key=lambda v: (recency.get(v, 0.0), v), reverse=True)

    def build_dense(
        self,
        key_set: KeySet | None = None,
        *,
        progress: ProgressSink = no_progress,
        cancel: CancelToken | None = None,
        batch_values: int = 32,
    ) -> int:
        """Compute the missing dense keys of ``key_set`` (default: the active one). Resumable."""
        key_set = key_set or self.ensure_dense_key_set()
        cancel = cancel or CancelToken()
        missing = self.missing_dense(key_set)
        if not missing:
            return 0
        embedder = self.embedder_for(key_set)
        max_tokens = int(key_set.params["max_tokens"])
        overlap = int(key_set.params["overlap_tokens"])
        total = len(missing)
        done = 0
        # The cost of a value grows with its text: the time-left estimate counts characters.
        lengths = self.vault.values.text_lengths()
        work = [lengths.get(v, 0) + 1 for v in missing]
        work_total, work_done = sum(work), 0
        progress(Progress("dense keys", 0, total, work_done=0, work_total=work_total))
        for start in range(0, total, batch_values):
            cancel.raise_if_cancelled()
            batch = missing[start : start + batch_values]
            sources = self.key_sources(batch)
            per_value = []
            texts: list[str] = []
            for src in sources:
                # A value with no text of its own (an image before OCR: only its file name) does
                # not compete on meaning with real text; its name stays a lexical key.
                passages = (
                    make_passages(
                        src.title, src.text, embedder, max_tokens=max_tokens, overlap_tokens=overlap
                    )
                    if src.text.strip()
                    else []
                )
                per_value.append((src.value_id, src.version, passages))
                texts.extend(p.text for p in passages)
            vectors = (
                embedder.embed_passages(texts, batch_size=EMBED_BATCH)
                if texts
                else np.zeros((0, embedder.dim))
            )
            offset = 0
            with self.vault.transaction() as tx:
                for value_id, version, passages in per_value:
                    n = len(passages)
                    self._store.write_passages(
                        tx,
                        key_set.id,
                        value_id,
                        version,
                        [
                            (
                                p.index,
                                p.start,
                                p.end,
                                vectors[offset + i].astype(np.float32).tobytes(),
                            )
                            for i, p in enumerate(passages)
                        ],
                    )
                    offset += n
            with self._lock:
                if self._matrix is not None and self._matrix_key_set == key_set.id:
                    offset = 0
                    for value_id, _version, passages in per_value:
                        n = len(passages)
                        self._matrix.upsert_value(value_id, vectors[offset : offset + n])
                        offset += n
            self._dense_changed()
            work_done += sum(work[start : start + batch_values])
            done += len(batch)
            current = sources[-1].title if sources else ""
            progress(Progress("dense keys", done, total, current, work_done, work_total))
        return total

    def matrix(self, key_set: KeySet | None = None) -> VectorMatrix:
        """The in-memory vectors of ``key_set`` (default: active), loaded on first use."""
        key_set = key_set or self.ensure_dense_key_set()
        with self._lock:
            if self._matrix is not None and self._matrix_key_set == key_set.id:
                return self._matrix
            matrix = _load_matrix(self._store, key_set, self._dense_directory())
            if key_set.state == KeySetState.ACTIVE:
                self._matrix, self._matrix_key_set = matrix, key_set.id
            return matrix

    def _dense_directory(self) -> Path:
        """The key folder, claimed for this vault: big key sets keep a vector file there."""
        self._claim_directory()
        return self.directory

    def passage_span(self, key_set: KeySet, value_id: int, index: int) -> tuple[int, int] | None:
        return self._store.passage_span(key_set.id, value_id, index)

    def rekey(
        self,
        model: str | Path = "default",
        *,
        activate: bool = True,
        progress: ProgressSink = no_progress,
        cancel: CancelToken | None = None,
    ) -> KeySet:
        """Build a dense key set for ``model`` beside the active one, then switch atomically.

        A non-active key set built with the same model and parameters (an interrupted build, a
        candidate, a retired set) is completed instead of starting over. ``activate=False``
        leaves it as a candidate (state ``building``, complete) for an A/B comparison; switch
        later with :meth:`activate`.
        """
        source = model_source(model)
        params = self._params_for(load_model_spec(source), source)
        active = self.active_key_set()
        if active is not None and active.params == params:
            key_set = active
        else:
            reusable = [
                k for k in self.key_sets() if k.state != KeySetState.ACTIVE and k.params == params
            ]
            key_set = (
                reusable[-1]
                if reusable
                else self._create_key_set(source, state=KeySetState.BUILDING, params=params)
            )
        self.build_dense(key_set, progress=progress, cancel=cancel)  # Cancelled: resumable later
        if activate and key_set.state != KeySetState.ACTIVE:
            return self.activate(key_set.id)
        return self.key_set(key_set.id)

    def key_set(self, key_set_id: int) -> KeySet:
        for key_set in self.key_sets():
            if key_set.id == key_set_id:
                return key_set
        raise NotFoundError(f"no dense key set {key_set_id} (see `kvdesk keys list`)")

    def activate(self, key_set_id: int) -> KeySet:
        """Switch search to a complete key set (a candidate or a retired one) atomically.

        Nothing is rebuilt: the key set must hold current keys for every value, and its vectors
        must load (checked before the switch, so a bad set never becomes the active one).
        """
        key_set = self.key_set(key_set_id)
        if key_set.state == KeySetState.ACTIVE:
            return key_set
        status = self.dense_status(key_set)
        if not status.ready:
            raise KvdeskError(
                f"key set {key_set.id} ({key_set.name}) has keys for {status.keyed_values} of"
                f" {status.total_values} values; complete it first with"
                f" `kvdesk rekey --model {key_set.params.get('source', '')} --no-activate`"
            )
        try:
            matrix = _load_matrix(self._store, key_set, self._dense_directory())
        except (ValueError, KeyError, TypeError) as exc:
            raise KvdeskError(
                f"key set {key_set.id} ({key_set.name}) does not load ({exc}); search keeps"
                " the active key set"
            ) from exc
        self._store.activate("dense", key_set.id)
        self._dense_changed()
        with self._lock:
            self._matrix = matrix
            self._matrix_key_set = key_set.id
        self._model_name = str(key_set.params.get("source", self._model_name))
        return self.key_set(key_set.id)

    def drop(self, key_set_id: int) -> int:
        """Delete a non-active key set and its vectors; returns how many passages went."""
        key_set = self.key_set(key_set_id)
        if key_set.state == KeySetState.ACTIVE:
            raise KvdeskError(
                f"key set {key_set.id} is active; activate another one before dropping it"
            )
        dropped = self._store.drop(key_set.id)
        self._dense_changed()
        vector_sync.remove_files(self.directory, key_set.id)
        return dropped

    def passage_count(self, key_set: KeySet) -> int:
        return self._store.passage_count(key_set.id)

    def close(self) -> None:
        with self._lock:
            try:
                self.flush()
            except Exception as exc:
                if not is_disk_full(exc):
                    raise
                # Uncommitted keys are dropped; they are rebuilt from the vault next time.
                log.warning("could not commit the last keys (disk full): %s", exc)
            if self._lexical is not None:
                self._lexical.close()
                self._lexical = None
            self._lexical_writable = False


_EXIF_WORDS = ("Make", "Model", "LensModel", "DateTimeOriginal", "DateTime", "Software")


def _with_image_words(src: KeySource) -> str:
    """A photo's camera, lens and date (EXIF) are lexical keys too: "canon 2023" finds it."""
    if not src.media_type.startswith("image/"):
        return src.text
    try:
        exif = json.loads(src.metadata).get("exif") or {}
    except (ValueError, AttributeError):
        return src.text
    words = [str(exif[k]) for k in _EXIF_WORDS if exif.get(k)]
    for key in ("DateTimeOriginal", "DateTime"):  # "2023:07:14 10:22:01" → also 2023-07-14
        stamp = str(exif.get(key) or "")
        if len(stamp) >= 10 and stamp[4] == ":" and stamp[7] == ":":
            words.append(stamp[:10].replace(":", "-"))
            break
    return "\n".join([src.text, *words]) if words else src.text


def _with_scan(digest: str | None, scan: tuple[int, str] | None, version: int | None) -> str | None:
    """The version's digest, extended by its OCR's digest when OCR has read it."""
    if scan is None or scan[0] != version or not scan[1]:
        return digest
    return f"{digest}+ocr2:{scan[1]}"  # ocr2: wrapped CJK lines are joined for keys


def _identifiers(src: KeySource) -> tuple[Identifier, ...]:
    """The value's own names (its ``DOC-`` id, its records ``_id``), then those in its text."""
    own = [Identifier(src.identifier, canonical(src.identifier), "kvdesk")]
    if src.external_id:
        own.append(Identifier(src.external_id, canonical(src.external_id), "external"))
    found = extract_identifiers(src.title + "\n" + src.text)
    seen = {i.canonical for i in own}
    return (*own, *(i for i in found if i.canonical not in seen))


def _key_date(source_mtime: float | None, updated_at: str) -> dt.datetime:
    """The date a value is filtered by; a damaged stored date falls back to the epoch."""
    try:
        if source_mtime is not None:
            return dt.datetime.fromtimestamp(source_mtime, dt.UTC)
        return dt.datetime.fromisoformat(updated_at)
    except (ValueError, OverflowError, OSError):
        return dt.datetime.fromtimestamp(0, dt.UTC)


def _load_matrix(store: KeyStore, key_set: KeySet, directory: Path | None = None) -> VectorMatrix:
    dim = int(key_set.params.get("dim") or 0)
    if (
        directory is not None
        and dim > 0
        and store.passage_count(key_set.id) >= vector_sync.FILE_MIN_PASSAGES
    ):
        # A big key set is searched from a memory-mapped file: nothing like 1.5 GB of float32
        # in RAM, and no vector read before the first search (see vector_sync).
        path = vector_sync.vector_file_path(directory, key_set.id)
        try:
            return vector_sync.load_file_matrix(store, key_set, dim, path)
        except OSError as exc:  # a full disk, a read-only key folder: search still works
            log.warning("dense keys: no vector file (%s); holding the vectors in RAM", exc)
    rows = store.current_vectors(key_set.id)
    if dim <= 0:
        # Key sets made before the dim was always recorded: the stored vectors tell it.
        if not rows:
            raise KvdeskError(f"key set {key_set.id} records no vector size and has no vectors")
        dim = len(rows[0][2]) // 4
    matrix = VectorMatrix(dim)
    if rows:
        value_ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        idx = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
        vectors = np.frombuffer(b"".join(r[2] for r in rows), dtype=np.float32).reshape(-1, dim)
        matrix.replace_all(value_ids, idx, vectors)
    return matrix
