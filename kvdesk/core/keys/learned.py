"""Learned keys: searches that found a value become keys of that value, never touching it.

Every pilot session that ended "found" with a document, and every golden case, is a pair
(query -> value). A *learned key set* (space ``learned`` in ``key_set``) stores those queries as
rows of ``learned_key`` (who searched, where the pair came from, when) with each query's vector
from the active dense model. Retrieval uses them as a fourth key space:

- meaning (hybrid and dense mode): the query's best cosine to a learned search of a value; above
  a threshold it earns the value a share (a paraphrase of a search that found it before);
- words (lexical mode): BM25 over the learned searches' words, in a separate small tantivy index
  under the key folder, added like words appended to the value (the query-log expansion).

Measured on SciFact (bench/bench_learn.py, README): learned *words* in hybrid mode also lift the
test split, but they pull learned values above the right answer for queries whose answer was
never learned (held-out "novel" nDCG drops), while thresholded meaning keys leave those queries
exactly where they were. So hybrid and dense mode use meaning only; lexical mode uses words.

``learn`` splits the pairs' queries (seeded) into a fit part and a held-out part, tunes the
weights on an inner split of the fit part, and reports nDCG@10 on the fit queries (memorised),
the held-out queries, and the held-out queries whose answers were not among the learned
values (generalisation proper); it activates the key set only if held-out quality did not drop.
After the check the key set keeps every pair (the check measured the procedure; what users did
is not thrown away).

Longer than most modules: the table, the words index, the read-out and the fit-and-check loop
must agree on what a learned key is, so they live together.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import re
import shutil
import statistics
import tempfile
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kvdesk.core.db import Database, SchemaStep
from kvdesk.core.errors import KvdeskError, NotFoundError
from kvdesk.core.golden.evaluation import ndcg_at
from kvdesk.core.keys.lexical import english_keys
from kvdesk.core.keys.store import KeySet, KeySetState, KeyStore
from kvdesk.core.search.identifiers import extract as extract_identifiers
from kvdesk.core.search.query import parse_query
from kvdesk.core.search.retrieval import (
    Gathered,
    LearnedEvidence,
    LearnedSource,
    LearnedWeights,
    Retriever,
)
from kvdesk.core.search.stopwords import is_function_word
from kvdesk.core.vault.records import now_iso

if TYPE_CHECKING:
    from kvdesk.core.keys.manager import KeyManager
    from kvdesk.core.vault.vault import Vault

log = logging.getLogger("kvdesk.keys.learned")

SPACE = "learned"
# The setting that lets learned searches of other users be shown in explanations. Unset: shown
# on a vault of one's own, hidden on a team desk (a curator may allow them).
SHOW_OTHERS = "learned.show_others"
HELD_OUT_SHARE = 0.2
SEED = 7
# Weights tried when tuning (on an inner split of the fit part only). Meaning thresholds below
# 0.5 let loosely related searches pull their values up (SciFact learning split).
MEANING_GRID = (0.4, 0.6, 0.8, 1.0, 1.5, 2.0, 3.0)
THRESHOLD_GRID = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75)
# Learned keys can only push down a query whose answer was never learned. Tuning accepts a
# weighting only if it costs such queries at most this much mean nDCG@10. SciFact test
# (bench/bench_learn.py): 0 gives hybrid 0.7296 -> 0.8023 with the 179 queries whose answers
# were not learned unchanged (0.7371); 0.001 picked a lower threshold: 0.806, but those
# queries lost 0.004.
NOVEL_TOLERANCE = 1e-9
WORDS_GRID = (0.25, 0.5, 1.0)
# Learned words count only when one learned search holds this share of the query's words:
# loose word overlap lifts learned values over answers that were never learned.
COVERAGE_GRID = (0.0, 0.5, 0.75, 1.0)
DEPTH = 100

SCHEMA: tuple[SchemaStep, ...] = (
    SchemaStep(
        10,
        "learned",
        """
        CREATE TABLE IF NOT EXISTS learned_key (
            id INTEGER PRIMARY KEY,
            key_set_id INTEGER NOT NULL REFERENCES key_set(id) ON DELETE CASCADE,
            value_id INTEGER NOT NULL REFERENCES value(id) ON DELETE CASCADE,
            query TEXT NOT NULL,
            source TEXT NOT NULL,
            "user" TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            vector BLOB
        );
        CREATE INDEX IF NOT EXISTS learned_key_set ON learned_key(key_set_id, value_id);
        """,
        engines=frozenset({"sqlite"}),  # keys are per desk
    ),
)


@dataclass(frozen=True)
class LearnedPair:
    """One success: ``query`` found ``value_id`` (a pilot session or a golden case)."""

    query: str
    value_id: int
    source: str  # "pilot:<session id>" or "golden:<set>:<query key>"
    user: str = ""  # the pilot user; "" for golden cases (curated)


@dataclass(frozen=True)
class LearnedKey:
    id: int
    value_id: int
    query: str
    source: str
    user: str
    created_at: str


@dataclass(frozen=True)
class Quality:
    """nDCG@10 on some queries, with and without the learned keys."""

    queries: int
    ndcg10: float
    baseline: float

    def to_json(self) -> dict[str, Any]:
        return {
            "queries": self.queries,
            "ndcg@10": round(self.ndcg10, 4),
            "baseline_ndcg@10": round(self.baseline, 4),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Quality:
        return cls(int(data["queries"]), float(data["ndcg@10"]), float(data["baseline_ndcg@10"]))


@dataclass(frozen=True)
class LearnReport:
    key_set: KeySet
    pairs: int
    learn: Quality  # the fit queries, with keys learned from them: memorised
    held_out: Quality
    held_out_novel: Quality  # held-out queries whose answers were never learned
    weights: LearnedWeights
    activated: bool
    reason: str  # why it was (not) activated

    @property
    def gap(self) -> float:
        """Memorisation: quality on the learning queries minus on held-out ones."""
        return self.learn.ndcg10 - self.held_out.ndcg10

    def to_json(self) -> dict[str, Any]:
        """The command-line contract: exactly these keys."""
        return {
            "key_set": self.key_set.id,
            "pairs": self.pairs,
            "learn": {"ndcg@10": round(self.learn.ndcg10, 4)},
            "held_out": {"ndcg@10": round(self.held_out.ndcg10, 4)},
            "gap": round(self.gap, 4),
        }


@dataclass(frozen=True)
class AuditFinding:
    key: LearnedKey
    reasons: tuple[str, ...]  # "identifier", "number", "e-mail", "name", "single user"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.key.id,
            "value_id": self.key.value_id,
            "query": self.key.query,
            "source": self.key.source,
            "user": self.key.user,
            "reasons": list(self.reasons),
        }


# -- the table ---------------------------------------------------------------------------------


class LearnedStore:
    """Every statement on learned_key."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def add(
        self,
        key_set_id: int,
        pairs: Sequence[LearnedPair],
        vectors: Sequence[bytes | None],
    ) -> None:
        stamp = now_iso()
        with self._db.transaction() as tx:
            tx.executemany(
                'INSERT INTO learned_key(key_set_id, value_id, query, source, "user",'
                " created_at, vector) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (key_set_id, p.value_id, p.query, p.source, p.user, stamp, v)
                    for p, v in zip(pairs, vectors, strict=True)
                ],
            )

    def keys(self, key_set_id: int) -> list[LearnedKey]:
        return [
            LearnedKey(int(r[0]), int(r[1]), str(r[2]), str(r[3]), str(r[4]), str(r[5]))
            for r in self._db.conn.execute(
                'SELECT id, value_id, query, source, "user", created_at FROM learned_key'
                " WHERE key_set_id = ? ORDER BY id",
                (key_set_id,),
            )
        ]

    def vectors(self, key_set_id: int) -> list[bytes | None]:
        return [
            r[0]
            for r in self._db.conn.execute(
                "SELECT vector FROM learned_key WHERE key_set_id = ? ORDER BY id", (key_set_id,)
            )
        ]


# -- the words index ---------------------------------------------------------------------------


class LearnedWords:
    """A small tantivy BM25 index of learned searches (one document per search), separate from
    the lexical keys: learning never touches the values' own index."""

    def __init__(self, directory: Path, keys: Sequence[LearnedKey]) -> None:
        import tantivy

        self._t = tantivy
        self.directory = directory
        builder = tantivy.SchemaBuilder()
        builder.add_integer_field("value_id", stored=True, fast=True, indexed=True)
        builder.add_text_field("text", stored=False, tokenizer_name="kv_learned")
        self._schema = builder.build()
        fresh = not (directory / "meta.json").exists()
        directory.mkdir(parents=True, exist_ok=True)
        self._index = tantivy.Index(self._schema, path=str(directory))
        tb, tf = tantivy.TextAnalyzerBuilder, tantivy.Filter
        analyzer = (
            tb(tantivy.Tokenizer.simple())
            .filter(tf.remove_long(40))
            .filter(tf.lowercase())
            .filter(tf.ascii_fold())
            .filter(tf.stemmer("english"))
            .build()
        )
        self._index.register_tokenizer("kv_learned", analyzer)
        if fresh:
            writer = self._index.writer(heap_size=15_000_000, num_threads=1)
            for key in keys:
                writer.add_document(tantivy.Document(value_id=key.value_id, text=key.query))
            writer.commit()
            writer.wait_merging_threads()
        self._index.reload()

    def search(self, text: str, limit: int = DEPTH) -> dict[int, float]:
        """Best BM25 of a learned search per value (the value's closest learned search)."""
        t = self._t
        tokens = list(dict.fromkeys(content_keys(text)))
        if not tokens:
            return {}
        query = t.Query.boolean_query(
            [(t.Occur.Should, t.Query.term_query(self._schema, "text", tok)) for tok in tokens]
        )
        searcher = self._index.searcher()
        if searcher.num_docs == 0:
            return {}
        hits = searcher.search(query, limit * 4, count=False).hits
        ids = searcher.fast_field_values("value_id", [address for _, address in hits])
        best: dict[int, float] = {}
        for (score, _), value_id in zip(hits, ids, strict=True):
            if value_id is not None:
                best[int(value_id)] = max(best.get(int(value_id), 0.0), float(score))
        return best


def content_keys(text: str) -> list[str]:
    """The stemmed content words of ``text`` (function words earn nothing, as in lexical)."""
    out: list[str] = []
    for word in re.findall(r"\w+", text.lower()):
        if not is_function_word(word):
            out.extend(english_keys(word))
    return out


# -- the read-out ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Visibility:
    """Whose learned searches a reader may see in explanations."""

    user: str  # the reader ("" = unknown)
    show_others: bool

    def shows(self, key: LearnedKey) -> bool:
        return self.show_others or not key.user or key.user == self.user


class LearnedKeys:
    """One learned key set in memory: its searches' vectors and words, read by retrieval."""

    def __init__(
        self,
        keys: Sequence[LearnedKey],
        vectors: np.ndarray | None,
        words: LearnedWords | None,
        weights: LearnedWeights,
        visibility: Visibility,
        *,
        floor: float | None = None,
    ) -> None:
        self.keys = list(keys)
        self._vectors = vectors  # [n, dim] float32, row i = keys[i]; None: no meaning keys
        self._words = words
        self._weights = weights
        self._visibility = visibility
        self._floor = weights.threshold if floor is None else floor
        self._value_ids = sorted({k.value_id for k in self.keys})
        position = {v: i for i, v in enumerate(self._value_ids)}
        self._owner = np.array([position[k.value_id] for k in self.keys], dtype=np.int64)
        self._by_value: dict[int, list[int]] = {}
        for i, key in enumerate(self.keys):
            self._by_value.setdefault(key.value_id, []).append(i)
        self._words_of: list[set[str]] | None = None  # each search's content keys, on first use

    @property
    def weights(self) -> LearnedWeights:
        return self._weights

    @property
    def value_ids(self) -> list[int]:
        return list(self._value_ids)

    def match(
        self, text: str, vector: np.ndarray | None, *, words: bool
    ) -> dict[int, LearnedEvidence]:
        if not self.keys:
            return {}
        sims: np.ndarray | None = None
        best: dict[int, float] = {}
        if vector is not None and self._vectors is not None and len(self._vectors):
            sims = self._vectors @ vector.astype(np.float32)
            per_value = np.full(len(self._value_ids), -1.0, dtype=np.float64)
            np.maximum.at(per_value, self._owner, sims)
            for i in np.nonzero(per_value > self._floor)[0]:
                best[self._value_ids[int(i)]] = float(per_value[int(i)])
        bm25 = self._words.search(text) if words and self._words is not None else {}
        wanted = set(content_keys(text)) if bm25 else set()
        out: dict[int, LearnedEvidence] = {}
        for value_id in best.keys() | bm25.keys():
            rows = self._by_value.get(value_id, [])
            if sims is not None:
                rows = sorted(rows, key=lambda i: -float(sims[i]))
            shown = [self.keys[i] for i in rows if self._visibility.shows(self.keys[i])]
            matched: list[str] = []
            coverage = 0.0
            if wanted and value_id in bm25:
                if self._words_of is None:
                    self._words_of = [set(content_keys(k.query)) for k in self.keys]
                found = [self._words_of[i] & wanted for i in rows]
                matched = sorted(set().union(*found))
                coverage = max(len(f) for f in found) / len(wanted)
            out[value_id] = LearnedEvidence(
                value_id=value_id,
                similarity=best.get(value_id),
                bm25=bm25.get(value_id, 0.0),
                searches=len(rows),
                queries=tuple(dict.fromkeys(k.query for k in shown)),
                hidden=len(rows) - len(shown),
                words=tuple(matched),
                coverage=coverage,
            )
        return out


def _matrix(blobs: Sequence[bytes | None], dim: int) -> np.ndarray | None:
    if not blobs or any(b is None or len(b) != dim * 4 for b in blobs):
        return None
    return np.frombuffer(b"".join(b for b in blobs if b is not None), dtype=np.float32).reshape(
        -1, dim
    )


# -- the manager -------------------------------------------------------------------------------


class Learned:
    """The learned key sets of one vault: learn, activate, read out, audit."""

    def __init__(
        self,
        vault: Vault,
        keys: KeyManager,
        *,
        reader: Callable[[], str] = lambda: "",
        team: Callable[[], bool] = lambda: False,
    ) -> None:
        self._vault = vault
        self._keys = keys
        self._store = KeyStore(vault)
        self._rows = LearnedStore(vault)
        self._reader = reader
        self._team = team
        self._lock = threading.Lock()
        self._loaded: tuple[tuple[int, str, bool], LearnedKeys] | None = None
        self._texts: dict[str, str] = {}  # while learning: normal form -> the query as typed

    # -- settings ----------------------------------------------------------------------------

    def visibility(self) -> Visibility:
        from kvdesk.core.settings import SettingStore

        value = SettingStore(self._vault).get(SHOW_OTHERS)
        show = (value == "1") if value else not self._team()
        return Visibility(self._reader(), show)

    def set_show_others(self, show: bool) -> None:
        from kvdesk.core.settings import SettingStore

        SettingStore(self._vault).set(SHOW_OTHERS, "1" if show else "0")
        self._loaded = None

    # -- key sets ----------------------------------------------------------------------------

    def key_sets(self) -> list[KeySet]:
        return self._store.key_sets(SPACE)

    def active_key_set(self) -> KeySet | None:
        return next((k for k in self.key_sets() if k.state == KeySetState.ACTIVE), None)

    def key_set(self, key_set_id: int) -> KeySet:
        for key_set in self.key_sets():
            if key_set.id == key_set_id:
                return key_set
        raise NotFoundError(f"no learned key set {key_set_id} (see `kvdesk keys list`)")

    def activate(self, key_set_id: int) -> KeySet:
        self.key_set(key_set_id)
        self._store.activate(SPACE, key_set_id)
        self._loaded = None
        return self.key_set(key_set_id)

    def keys(self, key_set_id: int) -> list[LearnedKey]:
        return self._rows.keys(key_set_id)

    def drop(self, key_set_id: int) -> int:
        """Delete a learned key set (active or not: dropping the active one turns learned keys
        off) with its rows and words index; returns how many learned keys went."""
        count = len(self._rows.keys(self.key_set(key_set_id).id))
        self._store.drop(key_set_id)  # its learned_key rows go with it (ON DELETE CASCADE)
        shutil.rmtree(self.words_dir(key_set_id), ignore_errors=True)
        self._loaded = None
        return count

    def words_dir(self, key_set_id: int) -> Path:
        return self._keys.directory / "learned" / str(key_set_id)

    def source(self) -> LearnedSource | None:
        """The active learned key set, loaded once per key set and reader (None: none)."""
        active = self.active_key_set()
        if active is None:
            return None
        visibility = self.visibility()
        stamp = (active.id, visibility.user, visibility.show_others)
        with self._lock:
            if self._loaded is None or self._loaded[0] != stamp:
                self._loaded = (stamp, self.load(active, visibility))
            return self._loaded[1]

    def load(self, key_set: KeySet, visibility: Visibility | None = None) -> LearnedKeys:
        keys = self._rows.keys(key_set.id)
        vectors = None
        dense = self._keys.active_key_set()
        # Meaning keys count only under the model that embedded them.
        if dense is not None and dense.params.get("model_sha256") == key_set.params.get(
            "model_sha256"
        ):
            vectors = _matrix(self._rows.vectors(key_set.id), int(dense.params.get("dim") or 0))
        try:
            words = LearnedWords(self.words_dir(key_set.id), keys)
        except Exception as exc:  # noqa: BLE001 - a damaged words index: rebuilt from the rows
            log.warning("learned words of key set %d are rebuilt: %s", key_set.id, exc)
            shutil.rmtree(self.words_dir(key_set.id), ignore_errors=True)
            words = LearnedWords(self.words_dir(key_set.id), keys)
        weights = LearnedWeights(**key_set.params.get("weights", {}))
        return LearnedKeys(keys, vectors, words, weights, visibility or self.visibility())

    # -- pairs -------------------------------------------------------------------------------

    def pairs_from_golden(self, golden: Any, name: str) -> list[LearnedPair]:
        return [
            LearnedPair(q.text, value_id, f"golden:{name}:{q.key}", "")
            for q in golden.queries(name)
            for value_id, relevance in sorted(q.judgements.items())
            if relevance > 0 and q.text.strip()
        ]

    def pairs_from_pilot(self, sessions: Iterable[Any]) -> list[LearnedPair]:
        """Sessions that ended "found" with a document: their last query found it."""
        present = set(self._vault.values.current_versions())
        out = []
        for s in sessions:
            if str(s.outcome) != "found" or s.found_value_id is None or not s.queries:
                continue
            if s.found_value_id not in present:
                continue
            query = s.queries[-1].query
            if query.strip():
                out.append(LearnedPair(query, s.found_value_id, f"pilot:{s.id}", s.user))
        return out

    # -- learning ----------------------------------------------------------------------------

    def learn(
        self,
        pairs: Sequence[LearnedPair],
        *,
        activate: bool = True,
        seed: int = SEED,
        held_out_share: float = HELD_OUT_SHARE,
        progress: Callable[[str, int, int], None] | None = None,
    ) -> LearnReport:
        """Fit learned keys on a seeded part of ``pairs``, check them on the rest, store them
        as a key set, and activate it unless told not to or held-out quality dropped."""
        pairs = [p for p in pairs if p.query.strip()]
        queries = _group(pairs)
        self._texts = {q: ps[0].query for q, ps in queries.items()}
        if len(queries) < 2:
            raise KvdeskError(
                f"learning needs at least 2 different successful queries (there are"
                f" {len(queries)}): one to learn from and one to check on"
            )
        order = sorted(queries)
        random.Random(seed).shuffle(order)
        held_n = max(1, round(len(order) * held_out_share))
        fit, held = order[held_n:], order[:held_n]
        embed = self._embedder()
        # One vector per distinct query (keyed by its normal form), from the active model.
        vectors = {q: embed(queries[q][0].query) for q in order} if embed is not None else {}
        sink = progress or (lambda _stage, _done, _total: None)

        fit_pairs = [p for q in fit for p in queries[q]]
        # Gathered once with every learned search above the lowest threshold tried; each
        # weighting is then a cheap re-fusion of the same evidence.
        fitted = self._scorer(fit_pairs, vectors, LearnedWeights(), floor=min(THRESHOLD_GRID))
        try:
            fit_runs = fitted.gather(fit, "hybrid", sink, "learning queries")
            held_runs = fitted.gather(held, "hybrid", sink, "held-out queries")
            weights = self._tune(fitted, queries, fit, fit_runs, vectors, seed, sink)
        finally:
            fitted.close()
        learned_values = {p.value_id for p in fit_pairs}
        novel = [q for q in held if not {p.value_id for p in queries[q]} & learned_values]
        learn_q = fitted.quality(fit_runs, fit, queries, weights)
        held_q = fitted.quality(held_runs, held, queries, weights)
        novel_q = fitted.quality(held_runs, novel, queries, weights)

        # The check measured the procedure; the key set keeps every pair.
        model_sha = self._model_sha()
        params = {
            "pairs": len(pairs),
            "queries": len(order),
            "seed": seed,
            "held_out_share": held_out_share,
            "model_sha256": model_sha,
            "weights": dataclasses.asdict(weights),
            "sources": sorted({p.source.split(":", 1)[0] for p in pairs}),
            "quality": {
                "learn": learn_q.to_json(),
                "held_out": held_q.to_json(),
                "held_out_novel": novel_q.to_json(),
                "gap": round(learn_q.ndcg10 - held_q.ndcg10, 4),
            },
        }
        with self._vault.transaction():
            key_set_id = self._store.create(SPACE, "learned", params, KeySetState.BUILDING)
            blobs = [
                vectors[_normal(p.query)].astype(np.float32).tobytes()
                if _normal(p.query) in vectors
                else None
                for p in pairs
            ]
            self._rows.add(key_set_id, pairs, blobs)
        dropped = held_q.ndcg10 < held_q.baseline - 1e-9
        if not activate:
            reason = "not activated (--no-activate)"
        elif dropped:
            reason = (
                f"not activated: held-out nDCG@10 would drop from {held_q.baseline:.4f}"
                f" to {held_q.ndcg10:.4f}"
            )
        else:
            reason = f"activated: held-out nDCG@10 {held_q.baseline:.4f} -> {held_q.ndcg10:.4f}"
        if activate and not dropped:
            self.activate(key_set_id)
        key_set = self.key_set(key_set_id)
        return LearnReport(
            key_set=key_set,
            pairs=len(pairs),
            learn=learn_q,
            held_out=held_q,
            held_out_novel=novel_q,
            weights=weights,
            activated=key_set.state == KeySetState.ACTIVE,
            reason=reason,
        )

    def _tune(
        self,
        fitted: _Scorer,
        queries: dict[str, list[LearnedPair]],
        fit: list[str],
        fit_runs: dict[str, Gathered],
        vectors: dict[str, np.ndarray],
        seed: int,
        sink: Callable[[str, int, int], None],
    ) -> LearnedWeights:
        """Weights chosen on the fit part only, each fit query scored by keys learned from the
        *other* fit queries (meaning: leave one query out; words: five folds): the best mean
        nDCG@10 among weightings that do not lower the queries whose answers no other query
        taught (learned keys can only push those down). Defaults for a tiny fit part."""
        if len(fit) < 5:
            return LearnedWeights()
        chosen = LearnedWeights(meaning=0.0, words=0.0)
        if vectors:
            runs, novel = _leave_one_out(fit_runs, queries, fit, vectors)
            grid = [LearnedWeights(words=0.0)] + [
                LearnedWeights(meaning=m, threshold=t, words=0.0)
                for t in THRESHOLD_GRID
                for m in MEANING_GRID
            ]
            chosen = _pick(fitted, runs, queries, fit, novel, grid, chosen)
        folds = list(fit)
        random.Random(seed + 1).shuffle(folds)
        word_runs: dict[str, Gathered] = {}
        novel_words: list[str] = []
        for k in range(5):
            probe = folds[k::5]
            teach = [p for q in folds if q not in set(probe) for p in queries[q]]
            taught = {p.value_id for p in teach}
            novel_words += [q for q in probe if not {p.value_id for p in queries[q]} & taught]
            scorer = self._scorer(teach, {}, LearnedWeights())
            try:
                word_runs.update(scorer.gather(probe, "lexical", sink, ""))
            finally:
                scorer.close()
            sink("tuning learned words", k + 1, 5)
        grid = [dataclasses.replace(chosen, words=LearnedWeights().words)] + [
            dataclasses.replace(chosen, words=w, coverage=c)
            for c in COVERAGE_GRID
            for w in WORDS_GRID
        ]
        return _pick(fitted, word_runs, queries, fit, novel_words, grid, chosen)

    def _scorer(
        self,
        pairs: Sequence[LearnedPair],
        vectors: dict[str, np.ndarray],
        weights: LearnedWeights,
        *,
        floor: float | None = None,
    ) -> _Scorer:
        keys = [
            LearnedKey(i, p.value_id, p.query, p.source, p.user, "") for i, p in enumerate(pairs)
        ]
        matrix = (
            np.stack([vectors[_normal(p.query)] for p in pairs]).astype(np.float32)
            if vectors and pairs
            else None
        )
        folder = Path(tempfile.mkdtemp(prefix="kvdesk-learn-"))
        words = LearnedWords(folder / "words", keys)
        source = LearnedKeys(keys, matrix, words, weights, Visibility("", True), floor=floor)
        return _Scorer(self._vault, self._keys, source, folder, self._texts)

    def _embedder(self) -> Callable[[str], np.ndarray] | None:
        dense = self._keys.active_key_set()
        if dense is None:
            return None
        embedder = self._keys.embedder_for(dense)
        return embedder.embed_query

    def _model_sha(self) -> str | None:
        dense = self._keys.active_key_set()
        return None if dense is None else str(dense.params.get("model_sha256"))

    # -- evaluation: a learned key set vs none -------------------------------------------------

    def evaluate(
        self,
        key_set_id: int,
        cases: Sequence[tuple[str, str]],
        mode: str,
        *,
        external: dict[int, str] | None = None,
    ) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        """Runs (query key -> ranked "#<value id>") of ``cases`` (key, text) without and with
        the learned key set ``key_set_id``: the golden-set A/B. With ``external`` (a BEIR set),
        a value whose external id equals the query key is dropped, as the protocol says."""
        source = self.load(self.key_set(key_set_id))
        runs: tuple[dict[str, list[str]], dict[str, list[str]]] = ({}, {})
        retrievers = (
            Retriever(self._vault, self._keys),
            Retriever(self._vault, self._keys, learned=lambda: source),
        )
        for out, retriever in zip(runs, retrievers, strict=True):
            for key, text in cases:
                out[key] = [
                    f"#{v}"
                    for v, _s in retriever.rank_ids(text, mode=mode, k=DEPTH + 1)
                    if (external or {}).get(v) != key
                ][:DEPTH]
        return runs

    # -- audits -------------------------------------------------------------------------------

    def audit(self, key_set_id: int | None = None) -> list[AuditFinding]:
        """Learned keys that may leak: identifiers, numbers, e-mail addresses, names, or the
        words of a single user (the active key set, else the newest)."""
        sets = self.key_sets()
        if key_set_id is None:
            active = self.active_key_set()
            chosen = active or (sets[-1] if sets else None)
        else:
            chosen = self.key_set(key_set_id)
        if chosen is None:
            return []
        keys = self._rows.keys(chosen.id)
        users: dict[str, set[str]] = {}
        for key in keys:
            users.setdefault(_normal(key.query), set()).add(key.user)
        findings = []
        for key in keys:
            reasons = leaks(key.query)
            searchers = users[_normal(key.query)]
            if key.user and len(searchers) == 1:
                reasons = (*reasons, "single user")
            if reasons:
                findings.append(AuditFinding(key, reasons))
        return findings


_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_NUMBER = re.compile(r"\d")
_TITLE = re.compile(r"\b(?:Mr|Mrs|Ms|Dr|Prof|Herr|Frau)\.?\s+[A-Z][\w'-]+")
_TWO_CAPITALS = re.compile(r"\b[A-Z][a-z][\w'-]*\s+[A-Z][a-z][\w'-]*")


def leaks(query: str) -> tuple[str, ...]:
    """What in a learned search could identify someone or something private."""
    reasons = []
    if _EMAIL.search(query):
        reasons.append("e-mail")
    if extract_identifiers(_EMAIL.sub(" ", query)):  # an address is said once, as such
        reasons.append("identifier")
    if _NUMBER.search(query):
        reasons.append("number")
    # A heuristic: a title before a capitalised word, or two capitalised words in a row that
    # do not start the query ("invoice from Anna Meyer", "Dr Sato").
    rest = query.split(maxsplit=1)[1] if len(query.split()) > 1 else ""
    if _TITLE.search(query) or _TWO_CAPITALS.search(rest):
        reasons.append("name")
    return tuple(reasons)


def _normal(text: str) -> str:
    return " ".join(text.casefold().split())


def _group(pairs: Sequence[LearnedPair]) -> dict[str, list[LearnedPair]]:
    """Pairs by query (normalised), so one query is never both learned and held out."""
    out: dict[str, list[LearnedPair]] = {}
    for p in pairs:
        out.setdefault(_normal(p.query), []).append(p)
    return out


def _pick(
    scorer: _Scorer,
    runs: dict[str, Gathered],
    queries: dict[str, list[LearnedPair]],
    probes: Sequence[str],
    novel: Sequence[str],
    grid: Sequence[LearnedWeights],
    fallback: LearnedWeights,
) -> LearnedWeights:
    """The best weighting of ``grid`` on ``probes`` that keeps ``novel`` probes where they
    were without learned keys (within NOVEL_TOLERANCE). The first of ``grid`` (the default)
    wins a tie with the unlearned system: a vault whose searches already succeed still
    learns; later ones must do better."""
    baseline = _mean(_ndcgs(scorer, runs, queries, None, novel))
    best, best_score = fallback, _mean(_ndcgs(scorer, runs, queries, None, probes))
    for rank, weights in enumerate(grid):
        if _mean(_ndcgs(scorer, runs, queries, weights, novel)) < baseline - NOVEL_TOLERANCE:
            continue
        score = _mean(_ndcgs(scorer, runs, queries, weights, probes))
        if score > best_score + 1e-9 or (rank == 0 and score >= best_score - 1e-9):
            best, best_score = weights, score
    return best


def _leave_one_out(
    runs: dict[str, Gathered],
    queries: dict[str, list[LearnedPair]],
    fit: Sequence[str],
    vectors: dict[str, np.ndarray],
) -> tuple[dict[str, Gathered], list[str]]:
    """Each fit query's evidence recomputed without its own learned searches (what keys
    learned from the other queries say), and the queries no other query taught."""
    keys = [(q, p.value_id) for q in fit for p in queries[q]]
    matrix = np.stack([vectors[q] for q, _v in keys]).astype(np.float32)
    key_query = np.array([q for q, _v in keys], dtype=object)
    value_ids = sorted({v for _q, v in keys})
    position = {v: i for i, v in enumerate(value_ids)}
    owner = np.array([position[v] for _q, v in keys], dtype=np.int64)
    taught_by: dict[int, set[str]] = {}
    for q, v in keys:
        taught_by.setdefault(v, set()).add(q)
    out: dict[str, Gathered] = {}
    novel = []
    for q in fit:
        sims = matrix @ vectors[q].astype(np.float32)
        sims[key_query == q] = -1.0
        best = np.full(len(value_ids), -1.0)
        np.maximum.at(best, owner, sims)
        g = runs[q]
        candidates = {}
        for value_id, c in g.candidates.items():
            i = position.get(value_id)
            similarity = float(best[i]) if i is not None and best[i] > -1.0 else None
            evidence = (
                None if similarity is None else LearnedEvidence(value_id, similarity, 0.0, 0, (), 0)
            )
            candidates[value_id] = dataclasses.replace(c, learned=evidence)
        out[q] = dataclasses.replace(g, candidates=candidates)
        if all(taught_by[p.value_id] == {q} for p in queries[q]):
            novel.append(q)
    return out, novel


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else 0.0


class _Scorer:
    """Queries gathered once against an in-memory learned key set, then fused with any weights
    (no learned share: the unlearned baseline)."""

    def __init__(
        self,
        vault: Vault,
        keys: KeyManager,
        source: LearnedKeys,
        folder: Path,
        texts: dict[str, str],
    ) -> None:
        self.source = source
        self._texts = texts  # normal form -> the query as typed
        self._folder = folder
        self._retriever = Retriever(vault, keys, learned=lambda: source)
        self.has_words = bool(source.keys)

    def gather(
        self,
        queries: Sequence[str],
        mode: str,
        sink: Callable[[str, int, int], None],
        stage: str,
    ) -> dict[str, Gathered]:
        out = {}
        for done, key in enumerate(queries, start=1):
            text = self._texts.get(key, key)
            out[key] = self._retriever.gather(parse_query(text), mode, DEPTH, details=False)
            if stage and done % 20 == 0:
                sink(stage, done, len(queries))
        return out

    def ranked(self, g: Gathered, weights: LearnedWeights | None) -> list[int]:
        fused = dataclasses.replace(g, learned_weights=weights if weights else None)
        pool = self._retriever.fuse(fused, self._retriever.params)
        return [r.value_id for r in pool[:DEPTH]]

    def quality(
        self,
        runs: dict[str, Gathered],
        texts: Sequence[str],
        queries: dict[str, list[LearnedPair]],
        weights: LearnedWeights,
    ) -> Quality:
        if not texts:
            return Quality(0, 0.0, 0.0)
        return Quality(
            len(texts),
            _mean(_ndcgs(self, runs, queries, weights, texts)),
            _mean(_ndcgs(self, runs, queries, None, texts)),
        )

    def close(self) -> None:
        shutil.rmtree(self._folder, ignore_errors=True)


def _ndcgs(
    scorer: _Scorer,
    runs: dict[str, Gathered],
    queries: dict[str, list[LearnedPair]],
    weights: LearnedWeights | None,
    texts: Sequence[str],
) -> list[float]:
    out = []
    for text in texts:
        relevant = {str(p.value_id): 1 for p in queries[text]}
        ranked = [str(v) for v in scorer.ranked(runs[text], weights)]
        out.append(ndcg_at(ranked, relevant))
    return out
