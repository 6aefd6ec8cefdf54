"""Lexical keys: a tantivy BM25 index whose every score is explained term by term.

The query is built programmatically (never with tantivy's query parser, whose syntax errors would
reach the user), with the same analyzers the fields were indexed with. English-like text goes to
stemmed ``title``/``body`` fields; Chinese/Japanese/Korean text additionally goes to character
n-gram fields (tantivy ships no dictionary-based Japanese tokenizer), queried by bigram.

Each hit's score is the sum of its :class:`TermScore` parts, read from tantivy's own
``Query.explain`` so the numbers shown to the user are the numbers that ranked the hit.

Longer than most modules on purpose: the tantivy schema, its analyzers, the query builder and
the parser of tantivy's explanations must agree field by field, so they live together.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import html
import json
import logging
import math
import mimetypes
import re
import shutil
import string
import threading
from collections import OrderedDict
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kvdesk.core.errors import KvdeskError, VaultBusyError, VaultFormatError
from kvdesk.core.keys.japanese import japanese_words
from kvdesk.core.keys.quotes import NO_CONTEXT, Context
from kvdesk.core.keys.stamped import save_record
from kvdesk.core.search.identifiers import Identifier
from kvdesk.core.search.identifiers import decode as decode_identifiers
from kvdesk.core.search.identifiers import encode as encode_identifiers
from kvdesk.core.search.query import CJK_CHAR_CLASS, ParsedQuery, has_cjk
from kvdesk.core.search.stopwords import is_function_word

log = logging.getLogger(__name__)

__all__ = [
    "LexicalDoc",
    "LexicalHit",
    "LexicalIndex",
    "TermScore",
    "cjk_grams",
    "media_types_for",
]

_ALNUM_RUN_RE = re.compile(r"[^\W_]+")
_TERM_CONTEXT_RE = re.compile(r'^Term=Term\(field=(\d+), type=Str, "(.*)"\)$', re.DOTALL)
_RUST_ESCAPE_RE = re.compile(r"\\(u\{[0-9a-fA-F]+\}|.)")
_SNIPPET_CHARS = 200
_WRITER_HEAP = 50_000_000
_WRITER_THREADS = 1

# Field names, in schema order: tantivy's explanations name fields by this position.
_FIELDS = (
    "value_id",
    "version",
    "identifier",
    "ext_id",
    "title",
    "body",
    "title_cjk",
    "body_cjk",
    "tags",
    "tag_exact",
    "path",
    "media_type",
    "updated",
    "ja_words",
    "built",  # a fingerprint of what the document was built from (see KeyManager)
    "ids",  # identifier keys, canonical (kvdesk.core.search.identifiers)
    "ids_raw",  # the same identifiers as the document writes them (to verify and show)
    "context",  # the text around this value's quotes in other values (short values only)
    "context_cjk",
    "context_fp",  # fingerprint of that context (see quotes.Context)
    "context_of",  # the values that context came from (to find it when one changes)
)
_CONTEXT_FIELDS = ("context", "context_cjk")
_EN = "kv_en"  # simple + remove_long(40) + lowercase + ascii_fold + english stemmer
_PLAIN = "kv_plain"  # simple + remove_long(40) + lowercase + ascii_fold (tags, paths)
_CJK = "kv_cjk"  # character 1- and 2-grams + lowercase
_TAG = "kv_tag"  # whole tag, lowercased (exact filters)

#: ``type:`` short names; an entry ending in ``/*`` matches every subtype.
TYPE_ALIASES: dict[str, tuple[str, ...]] = {
    "pdf": ("application/pdf",),
    "image": ("image/*",),
    "images": ("image/*",),
    "img": ("image/*",),
    "picture": ("image/*",),
    "photo": ("image/*",),
    "html": ("text/html", "application/xhtml+xml"),
    "web": ("text/html", "application/xhtml+xml"),
    "text": ("text/plain",),
    "txt": ("text/plain",),
    "md": ("text/markdown",),
    "markdown": ("text/markdown",),
    "rst": ("text/x-rst",),
    "man": ("text/troff",),
    "word": (
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/msword",
    ),
    "docx": ("application/vnd.openxmlformats-officedocument.wordprocessingml.document",),
    "doc": ("application/msword",),
    "jpg": ("image/jpeg",),
    "jpeg": ("image/jpeg",),
    "audio": ("audio/*",),
    "video": ("video/*",),
}


def media_types_for(name: str) -> tuple[str, ...]:
    """Media types a ``type:`` filter value stands for (``pdf`` → ``application/pdf``).

    Full media types pass through; other short names are looked up as file extensions in
    Python's built-in table (not the system's, so results do not vary by machine).
    """
    name = name.strip().lower().lstrip(".")
    if not name:
        return ()
    if name in TYPE_ALIASES:
        return TYPE_ALIASES[name]
    if "/" in name:
        return (name,)
    guessed, _ = mimetypes.MimeTypes().guess_type(f"file.{name}", strict=False)
    return (guessed,) if guessed else (name,)


@dataclass(frozen=True)
class LexicalDoc:
    """What the lexical key space indexes for one value (one version of it)."""

    value_id: int
    version: int
    identifier: str
    external_id: str | None
    title: str
    text: str
    tags: tuple[str, ...]
    media_type: str
    path: str
    updated: datetime.datetime
    built: int = 0  # fingerprint of the value state and tags these keys were built from
    identifiers: tuple[Identifier, ...] = ()
    context: Context = NO_CONTEXT  # the words around where other values quote this one


@dataclass(frozen=True)
class TermScore:
    """One BM25 part of a hit's score: ``term`` as the user typed it, matched in ``field``.

    Phrases appear as ``"two words"`` and CJK text as the matched character bigram.
    """

    field: str
    term: str
    score: float


@dataclass(frozen=True)
class LexicalHit:
    """A lexical match; ``score == math.fsum(t.score for t in terms)`` whenever terms are given.

    Hits come in tantivy's order; its float32 score differs from the exact sum of the parts
    by rounding only (about 1e-7 relative).
    """

    value_id: int
    score: float
    terms: tuple[TermScore, ...]
    snippet_html: str
    quoted_in: tuple[int, ...] = ()  # when context keys matched: the values quoting it


@dataclass(frozen=True)
class _Part:
    """A scored clause the query is built from, with the label its explanation gets."""

    field: str
    token: str
    label: str
    query: Any


@dataclass(frozen=True)
class _Plan:
    """A query's clauses built for tantivy once (they do not depend on the searcher): reused
    by the ranking pass and by the explanation pass of the same search, and by a repeat."""

    fixed: list[tuple[Any, Any]]  # filters and exclusions: (occur, query)
    phrase_clauses: list[tuple[Any, Any]]  # one Must clause per quoted phrase
    terms_required: bool  # the words must match (else they only add to phrase matches)
    term_parts: list[_Part]
    phrase_parts: list[_Part]
    by_recency: bool  # filters only: every value that passes them, newest first
    matches_nothing: bool = False  # words that analyze to nothing ("((", "--")


@dataclass
class _Ranked:
    """One ranking of a plan on one searcher: what the explanation pass needs again."""

    top: Any  # the query ranked (None: nothing can match), explained and highlighted
    hits: list[tuple[float, Any]]
    value_ids: list[int]
    words_scored: bool = True  # False: only quoted phrases score (their parts are the hit's)
    snippets: _Snippets | None = None


@dataclass
class _Generation:
    """One reload generation of the index: its searcher, and what was ranked on it."""

    searcher: Any
    meta: bytes  # meta.json as loaded (a commit by any process rewrites it)
    ranked: OrderedDict[tuple[Any, ...], _Ranked] = field(default_factory=OrderedDict)


_PLANS_KEPT = 64
_RANKINGS_KEPT = 8
_IN_STEP_FILE = "in-step.json"  # beside the schema folders: tantivy manages only those


def _unescape_rust(text: str) -> str:
    """Undo Rust's ``{:?}`` string escaping, as found in explanation contexts."""

    def repl(m: re.Match[str]) -> str:
        esc = m.group(1)
        if esc.startswith("u{"):
            return chr(int(esc[2:-1], 16))
        return {"n": "\n", "t": "\t", "r": "\r", "0": "\0"}.get(esc, esc)

    return _RUST_ESCAPE_RE.sub(repl, text)


@functools.cache
def _analyzers() -> dict[str, Any]:
    """The index's analyzers by name (built once per process: they are stateless)."""
    import tantivy as t

    tb, tf = t.TextAnalyzerBuilder, t.Filter

    def plain() -> Any:
        return tb(t.Tokenizer.simple()).filter(tf.remove_long(40)).filter(tf.lowercase())

    return {
        _EN: plain().filter(tf.ascii_fold()).filter(tf.stemmer("english")).build(),
        _PLAIN: plain().filter(tf.ascii_fold()).build(),
        _CJK: tb(t.Tokenizer.ngram(1, 2, False)).filter(tf.lowercase()).build(),
        _TAG: tb(t.Tokenizer.raw()).filter(tf.lowercase()).build(),
    }


def english_keys(word: str) -> list[str]:
    """The keys the English fields index for ``word`` (lowercase, ASCII-folded, stemmed)."""
    return [str(tok) for tok in _analyzers()[_EN].analyze(word)]


def cjk_grams(text: str) -> list[str]:
    """Query n-grams for the ``*_cjk`` fields, as the n-gram analyzer indexed them.

    Bigrams of each letter/digit run of a word holding CJK (a lone character stays a unigram):
    digits and Latin letters next to kana count too (``1941年`` gives ``41`` and ``1年``),
    which measurably helps on JaQuAD; punctuation and spaces split runs.
    """
    grams: list[str] = []
    if not has_cjk(text):
        return grams
    for run in _ALNUM_RUN_RE.findall(text.lower()):
        if len(run) == 1:
            grams.append(run)
        else:
            grams.extend(run[k : k + 2] for k in range(len(run) - 1))
    return grams


def _strip_cjk(text: str) -> str:
    return _cjk_run_re().sub(" ", text)


@functools.cache
def _cjk_run_re() -> re.Pattern[str]:
    return re.compile(f"[{CJK_CHAR_CLASS}]+")  # compiled on first use: not at start-up


def _tag_paths(tag: str) -> list[str]:
    """A tag and its ancestors, lowercased: ``A::B::C`` → ``a``, ``a::b``, ``a::b::c``."""
    parts = [p.strip().lower() for p in tag.split("::") if p.strip()]
    return ["::".join(parts[: k + 1]) for k in range(len(parts))]


def _utc(moment: datetime.datetime) -> datetime.datetime:
    """``moment`` in UTC (naive means UTC), clamped to what tantivy dates can hold."""
    moment = moment.replace(tzinfo=datetime.UTC) if moment.tzinfo is None else moment
    low = datetime.datetime(1678, 1, 1, tzinfo=datetime.UTC)
    high = datetime.datetime(2261, 12, 31, tzinfo=datetime.UTC)
    return min(max(moment, low), high).astimezone(datetime.UTC)


def _day_start(day: datetime.date) -> datetime.datetime:
    """Midnight UTC of ``day``, clamped to the years tantivy dates can hold (1678–2261)."""
    day = min(max(day, datetime.date(1678, 1, 1)), datetime.date(2261, 12, 31))
    return datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.UTC)


class LexicalIndex:
    """A tantivy index of one vault's values; one writer process at a time.

    Args:
        directory: the folder owned by this index (a subfolder per schema version lives in it).
        writable: take the writer lock (only one process may).
    """

    #: Bump when the schema or analyzers change: the next writable open starts an empty index
    #: in a new subfolder and the caller reindexes from the vault.
    SCHEMA_VERSION: int = 7

    #: Field boosts (BM25 per field, summed). Title relative to body, SciFact test nDCG@10:
    #: 2.0 → 0.622, 1.0 → 0.665, 0.7 → 0.682, 0.5 → 0.691, 0.3 → 0.685 (one combined field:
    #: 0.687). A full-weight title field over-rewards short titles; half weight works best.
    #: JaQuAD (title in title_cjk and body_cjk): 0.5 → 0.608, 0.0 → 0.606.
    TITLE_BOOST: float = 0.5
    BODY_BOOST: float = 1.0
    TAGS_BOOST: float = 1.0
    PATH_BOOST: float = 0.3
    ID_BOOST: float = 5.0
    #: Japanese dictionary words (base forms) next to the bigrams: weight chosen on a seeded half
    #: of JaQuAD's queries (flat from 2 to 6); bench/bench_ja_words.py, japanese.py.
    JA_WORDS_BOOST: float = 3.0
    #: The words around a short value's quotes in other values (quotes.py): weight chosen on a
    #: seeded half of JaQuAD's queries (bench/bench_multilingual.py --parts quotes).
    CONTEXT_BOOST: float = 1.5
    #: Function words ("how", "do", "a") earn no BM25 credit (bench/bench_retrieval.py compares).
    DROP_FUNCTION_WORDS: bool = True

    def __init__(self, directory: Path, writable: bool) -> None:
        """Prefer :meth:`open`; this only prepares the schema and analyzers."""
        import tantivy

        self._t = tantivy
        self.directory = directory
        self.writable = writable
        self.rebuilt = False  # True when an index of an older schema was set aside
        self._lock = threading.RLock()
        self._writer: Any = None
        self._schema = self._build_schema()
        self._analyzers = self._build_analyzers()  # query-side twins of the registered ones
        self._index: Any = None
        self._generation: _Generation | None = None
        self._plans: OrderedDict[tuple[Any, ...], _Plan] = OrderedDict()
        self._title_terms: dict[str, list[Any]] = {}  # see quote_holders

    # ----------------------------------------------------------------------------------------
    # Opening

    @classmethod
    def open(cls, directory: Path, *, writable: bool) -> LexicalIndex:
        """Open (and when writable, create) the index in ``directory``.

        Raises:
            VaultBusyError: another process holds the writer lock.
            VaultFormatError: read-only open of a missing or outdated index.
        """
        self = cls(Path(directory), writable)
        self._open()
        return self

    @property
    def _data_dir(self) -> Path:
        return self.directory / f"schema-v{self.SCHEMA_VERSION}"

    def _open(self) -> None:
        t = self._t
        data = self._data_dir
        exists = data.is_dir() and t.Index.exists(str(data))
        if not self.writable:
            if not exists:
                raise VaultFormatError(f"no key index of version {self.SCHEMA_VERSION} in {data}")
            self._index = t.Index.open(str(data))
        else:
            data.mkdir(parents=True, exist_ok=True)
            if exists:
                self._index = t.Index.open(str(data))
            else:
                self._index = t.Index(self._schema, path=str(data), reuse=False)
                self.rebuilt = any(self._old_dirs())
        # Custom tokenizers are not persisted by tantivy: register them on every open.
        for name, analyzer in self._build_analyzers().items():
            self._index.register_tokenizer(name, analyzer)
        if self.writable:
            try:
                self._writer = self._index.writer(_WRITER_HEAP, _WRITER_THREADS)
            except ValueError as exc:
                if "Lock" in str(exc):
                    raise VaultBusyError(
                        "the key index is in use by another kvdesk process"
                    ) from exc
                raise KvdeskError(f"cannot open the key index: {exc}") from exc
            self._drop_old_dirs()
        self._index.reload()

    def _old_dirs(self) -> Iterator[Path]:
        for child in self.directory.glob("schema-v*"):
            if child.is_dir() and child != self._data_dir:
                yield child

    def _drop_old_dirs(self) -> None:
        """Delete indexes of other schema versions that no process is writing to."""
        for old in list(self._old_dirs()):
            try:
                idx = self._t.Index.open(str(old))
                writer = idx.writer(15_000_000, 1)  # proves no other process holds it
                del writer, idx
            except Exception:  # noqa: BLE001 - busy or unreadable: leave it for next time
                log.info("keeping old key index %s (busy or unreadable)", old)
                continue
            shutil.rmtree(old, ignore_errors=True)

    def _build_schema(self) -> Any:
        t = self._t
        sb = t.SchemaBuilder()
        for name in _FIELDS:
            if name in ("value_id", "version"):
                sb.add_integer_field(name, stored=True, indexed=name == "value_id", fast=True)
            elif name in ("built", "context_fp"):
                sb.add_integer_field(name, stored=False, indexed=False, fast=True)
            elif name in ("identifier", "ext_id"):
                # Lowercased (the stored text keeps its case): ``doc-3`` finds ``DOC-3``.
                sb.add_text_field(name, stored=True, tokenizer_name=_TAG, index_option="basic")
            elif name == "media_type":
                sb.add_text_field(name, stored=True, tokenizer_name="raw", index_option="basic")
            elif name in ("title", "body"):
                sb.add_text_field(name, stored=True, tokenizer_name=_EN, index_option="position")
            elif name == "context_of":  # stored: an explanation names where it is quoted
                sb.add_integer_field(name, stored=True, indexed=True, fast=False)
            elif name == "context":
                sb.add_text_field(name, tokenizer_name=_EN, index_option="freq")
            elif name in ("title_cjk", "body_cjk", "context_cjk"):
                # n-gram tokens all sit at position 0, so positions would buy nothing.
                sb.add_text_field(name, tokenizer_name=_CJK, index_option="freq")
            elif name == "tags":
                sb.add_text_field(name, stored=True, tokenizer_name=_PLAIN, index_option="position")
            elif name == "tag_exact":
                sb.add_text_field(name, tokenizer_name=_TAG, index_option="basic")
            elif name == "path":
                sb.add_text_field(name, stored=True, tokenizer_name=_PLAIN, index_option="freq")
            elif name == "updated":
                sb.add_date_field(name, stored=True, indexed=True, fast=True)
            elif name == "ids":
                sb.add_text_field(name, tokenizer_name="raw", index_option="basic")
            elif name == "ids_raw":
                sb.add_text_field(name, stored=True, tokenizer_name="raw", index_option="basic")
            elif name == "ja_words":
                # Already analysed (lowercased base forms joined by spaces).
                sb.add_text_field(name, tokenizer_name="whitespace", index_option="freq")
        return sb.build()

    def _build_analyzers(self) -> dict[str, Any]:
        return _analyzers()

    # ----------------------------------------------------------------------------------------
    # Writing

    def _require_writer(self) -> Any:
        if self._writer is None:
            raise KvdeskError("the key index was opened read-only")
        return self._writer

    def add(self, docs: Iterable[LexicalDoc]) -> None:
        """Add or replace (by ``value_id``) documents; visible after :meth:`commit`."""
        t = self._t
        with self._lock:
            writer = self._require_writer()
            for d in docs:
                doc = t.Document()
                doc.add_integer("value_id", int(d.value_id))
                doc.add_integer("version", int(d.version))
                doc.add_integer("built", int(d.built))
                doc.add_integer("context_fp", d.context.fingerprint)  # 0: none
                for host in d.context.hosts:
                    doc.add_integer("context_of", int(host))
                if d.context.text:
                    doc.add_text("context", d.context.text)
                    if has_cjk(d.context.text):
                        doc.add_text("context_cjk", d.context.text)
                doc.add_text("identifier", d.identifier)
                if d.external_id:
                    doc.add_text("ext_id", d.external_id)
                doc.add_text("title", d.title)
                doc.add_text("body", d.text)
                if has_cjk(d.title):
                    doc.add_text("title_cjk", d.title)
                if has_cjk(d.title) or has_cjk(d.text):
                    # The title also counts as body text here: JaQuAD nDCG@10 0.581 → 0.597.
                    doc.add_text("body_cjk", d.title)
                    doc.add_text("body_cjk", d.text)
                    words = japanese_words(d.title + "\n" + d.text)
                    if words:
                        doc.add_text("ja_words", " ".join(words))
                for tag in d.tags:
                    doc.add_text("tags", tag)
                    for path in _tag_paths(tag):
                        doc.add_text("tag_exact", path)
                if d.path:
                    doc.add_text("path", d.path)
                for ident in d.identifiers:
                    doc.add_text("ids", ident.canonical)
                if d.identifiers:
                    doc.add_text("ids_raw", encode_identifiers(d.identifiers))
                doc.add_text("media_type", d.media_type.lower())
                doc.add_date("updated", _utc(d.updated))
                # A delete only hits documents added before it, so delete-then-add is an upsert.
                writer.delete_documents_by_term("value_id", int(d.value_id))
                writer.add_document(doc)

    def delete(self, value_ids: Iterable[int]) -> None:
        """Remove documents by ``value_id``; visible after :meth:`commit`."""
        with self._lock:
            writer = self._require_writer()
            for vid in value_ids:
                writer.delete_documents_by_term("value_id", int(vid))

    def commit(self) -> None:
        """Make pending adds and deletes durable and visible to searches."""
        with self._lock:
            self._require_writer().commit()
            self._index.reload()
            self._generation = None

    def close(self) -> None:
        """Release the writer lock; uncommitted changes are dropped."""
        with self._lock:
            if self._writer is not None:
                writer, self._writer = self._writer, None
                writer.rollback()
                del writer

    def __enter__(self) -> LexicalIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------------------------------
    # Reading

    def _searcher(self) -> Any:
        return self._current().searcher

    def _current(self) -> _Generation:
        """The searcher of the index as last committed, by any process.

        One searcher (and its cached rankings) is kept per generation: reloading costs about
        1 ms, reading meta.json about 20 µs, and every commit rewrites meta.json (its opstamp),
        so a read-only index reloads only when another process has committed since.
        """
        with self._lock:
            generation = self._generation
            if self.writable:  # only this process commits, and commit() drops the generation
                if generation is None:
                    generation = _Generation(self._index.searcher(), b"")
                    self._generation = generation
                return generation
            meta = self._meta_bytes()
            if generation is None or meta is None or meta != generation.meta:
                self._index.reload()
                generation = _Generation(self._index.searcher(), meta or b"")
                self._generation = generation if meta is not None else None
            return generation

    def _meta_bytes(self) -> bytes | None:
        try:
            return (self._data_dir / "meta.json").read_bytes()
        except OSError:
            return None

    @staticmethod
    def _in_step_record(vault_stamp: list[Any], meta: bytes | None) -> dict[str, Any] | None:
        if meta is None:
            return None
        return {"vault": vault_stamp, "index": hashlib.sha256(meta).hexdigest()}

    def known_in_step(self, vault_stamp: list[Any]) -> bool:
        """Whether a full check found these keys in step with the vault, and neither the vault
        files (:func:`~kvdesk.core.keys.stamped.vault_files_stamp`) nor this index changed since."""
        try:
            recorded = json.loads((self.directory / _IN_STEP_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return recorded is not None and recorded == self._in_step_record(
            vault_stamp, self._meta_bytes()
        )

    def record_in_step(self, vault_stamp: list[Any]) -> None:
        """Say that a full check, begun at ``vault_stamp``, found the keys in step (the keys
        of the searcher it read: nothing is said when another process has committed since)."""
        generation = self._generation
        if self.writable or generation is None or generation.meta != self._meta_bytes():
            return
        record = self._in_step_record(vault_stamp, generation.meta)
        if record is None:
            return
        if not save_record(self.directory / _IN_STEP_FILE, record):
            # A read-only key folder: the next open checks in full again.
            log.debug("cannot record that the lexical keys are in step")

    def doc_count(self) -> int:
        """Number of live documents."""
        return int(self._searcher().num_docs)

    def indexed_fingerprints(self) -> dict[int, int]:
        """``value_id`` → the fingerprint its keys were built from (see ``LexicalDoc.built``)."""
        return self._indexed("built")

    def indexed_contexts(self) -> dict[int, int]:
        """``value_id`` → fingerprint of the context keys it holds (0: none)."""
        return self._indexed("context_fp")

    def quote_holders(self, text: str, title: str = "", limit: int = 16) -> list[int]:
        """Values whose text holds every word (or CJK bigram) of ``text``, those that share
        ``title`` first, then best BM25 first: the values that may quote ``text`` verbatim
        (the caller checks)."""
        t = self._t
        needed = self._word_terms(text, "body", "body_cjk")
        if not needed:
            return []
        query = self._all_of(needed)
        liked = self._title_terms.get(title)
        if liked is None:  # the short values of one document share its title: build once
            liked = self._word_terms(title, "title", "title_cjk")
            if len(self._title_terms) > 4096:
                self._title_terms.clear()
            self._title_terms[title] = liked
        if liked:
            query = t.Query.boolean_query(
                [(t.Occur.Must, query), (t.Occur.Should, self._boosted(self._any_of(liked), 10.0))]
            )
        searcher = self._searcher()
        hits = searcher.search(query, limit, count=False).hits
        ids = searcher.fast_field_values("value_id", [a for _, a in hits])
        return [int(i) for i in ids if i is not None]

    def _word_terms(self, text: str, en_field: str, cjk_field: str) -> list[Any]:
        """A term query per distinct analysed token of ``text`` (CJK words: their bigrams)."""
        terms: dict[tuple[str, str], Any] = {}
        for word in text.split():
            if has_cjk(word):  # the English analyzer keeps "1976年1月1日" whole: use grams
                keys = [(cjk_field, gram) for gram in cjk_grams(word)]
            else:
                keys = [(en_field, tok) for tok in self._analyze(_EN, word)]
            for key in keys:
                terms.setdefault(key, self._term(*key))
        return list(terms.values())

    def quoting_from(self, value_ids: Collection[int]) -> set[int]:
        """Values whose context keys came from one of ``value_ids``."""
        if not value_ids:
            return set()
        ids_of = [int(v) for v in value_ids]
        return self._every_match(self._t.Query.term_set_query(self._schema, "context_of", ids_of))

    def _every_match(self, query: Any) -> set[int]:
        """The value ids of every document ``query`` matches (no cap)."""
        searcher = self._searcher()
        n = int(searcher.num_docs)
        if n == 0:
            return set()
        hits = searcher.search(query, n, count=False).hits
        ids = searcher.fast_field_values("value_id", [a for _, a in hits])
        return {int(i) for i in ids if i is not None}

    def indexed_versions(self) -> dict[int, int]:
        """``value_id`` → indexed ``version``, so a restart can catch up with the vault."""
        return self._indexed("version")

    def _indexed(self, field_name: str) -> dict[int, int]:
        """``value_id`` → the fast field ``field_name`` of every live document."""
        searcher = self._searcher()
        n = int(searcher.num_docs)
        if n == 0:
            return {}
        hits = searcher.search(self._t.Query.all_query(), n, count=False).hits
        addrs = [a for _, a in hits]
        ids = searcher.fast_field_values("value_id", addrs)
        values = searcher.fast_field_values(field_name, addrs)
        return {int(i): int(v) for i, v in zip(ids, values, strict=True) if i is not None}

    def identifier_holders(
        self, canonicals: Collection[str], limit: int = 50
    ) -> dict[int, tuple[Identifier, ...]]:
        """Values holding an identifier of one of ``canonicals``, with every identifier each
        holds as stored (for verification); at most ``limit`` values."""
        queries = [self._term("ids", c) for c in dict.fromkeys(canonicals)]
        if not queries:
            return {}
        searcher = self._searcher()
        hits = searcher.search(self._any_of(queries), limit, count=False).hits
        out: dict[int, tuple[Identifier, ...]] = {}
        for _, addr in hits:
            doc = searcher.doc(addr)
            value_id = doc.get_first("value_id")
            stored = doc.get_first("ids_raw") or ""
            if value_id is not None:
                out[int(value_id)] = decode_identifiers(str(stored))
        return out

    def excluded_ids(self, words: Iterable[str]) -> set[int]:
        """Every value that a ``-word`` / ``-"phrase"`` exclusion of ``words`` drops (no cap)."""
        queries = self._excluded_queries(words)
        return self._every_match(self._any_of(queries)) if queries else set()

    # ----------------------------------------------------------------------------------------
    # Query building

    def _analyze(self, analyzer: str, text: str) -> list[str]:
        return [str(tok) for tok in self._analyzers[analyzer].analyze(text)]

    def _term(self, field: str, token: str) -> Any:
        return self._t.Query.term_query(self._schema, field, token)

    def _boosted(self, query: Any, boost: float) -> Any:
        return self._t.Query.boost_query(query, boost)

    def _all_of(self, queries: list[Any]) -> Any:
        t = self._t
        if len(queries) == 1:
            return queries[0]
        return t.Query.boolean_query([(t.Occur.Must, q) for q in queries])

    def _any_of(self, queries: list[Any]) -> Any:
        t = self._t
        if len(queries) == 1:
            return queries[0]
        return t.Query.boolean_query([(t.Occur.Should, q) for q in queries])

    def _term_parts(self, words: Iterable[str]) -> list[_Part]:
        """One boosted term clause per distinct analyzed token and field."""
        parts: list[_Part] = []
        seen: set[tuple[str, str]] = set()

        def add(field: str, token: str, label: str, boost: float) -> None:
            if (field, token) in seen or boost <= 0:
                return
            seen.add((field, token))
            q = self._boosted(self._term(field, token), boost)
            parts.append(_Part(field, token, label, q))

        for word in words:
            latin = _strip_cjk(word) if has_cjk(word) else word
            tokens = self._analyze(_EN, latin)
            for token in tokens:
                # Show the word as typed ("studies"), not its stem ("studi"), when it is one.
                label = latin.strip().strip(string.punctuation) if len(tokens) == 1 else token
                add("title", token, label or token, self.TITLE_BOOST)
                add("body", token, label or token, self.BODY_BOOST)
                add("context", token, label or token, self.CONTEXT_BOOST)
            for token in self._analyze(_PLAIN, word):
                add("tags", token, token, self.TAGS_BOOST)
                add("path", token, token, self.PATH_BOOST)
            for gram in cjk_grams(word):
                add("title_cjk", gram, gram, self.TITLE_BOOST)
                add("body_cjk", gram, gram, self.BODY_BOOST)
                add("context_cjk", gram, gram, self.CONTEXT_BOOST)
            if has_cjk(word):
                for ja in japanese_words(word):
                    if " " not in ja:
                        add("ja_words", ja, ja, self.JA_WORDS_BOOST)
        return parts

    def _phrase_in(self, phrase: str, en_field: str, cjk_field: str) -> Any | None:
        """A query for ``phrase`` in one field pair, or None when it has no tokens."""
        t = self._t
        if has_cjk(phrase):  # n-grams have no positions: require every bigram instead
            grams = list(dict.fromkeys(cjk_grams(phrase)))
            return self._all_of([self._term(cjk_field, g) for g in grams]) if grams else None
        tokens = self._analyze(_EN, phrase)
        if not tokens:
            return None
        if len(tokens) == 1:
            return self._term(en_field, tokens[0])
        return t.Query.phrase_query(self._schema, en_field, tokens)

    def _phrase_parts(self, phrase: str) -> list[_Part]:
        parts = []
        for en_field, cjk_field, boost in (
            ("title", "title_cjk", self.TITLE_BOOST),
            ("body", "body_cjk", self.BODY_BOOST),
        ):
            q = self._phrase_in(phrase, en_field, cjk_field)
            if q is not None:
                field = cjk_field if has_cjk(phrase) else en_field
                parts.append(_Part(field, "", f'"{phrase}"', self._boosted(q, boost)))
        return parts

    def _excluded_queries(self, words: Iterable[str]) -> list[Any]:
        out: list[Any] = []
        for word in words:
            for en_field, cjk_field in (("title", "title_cjk"), ("body", "body_cjk")):
                q = self._phrase_in(word, en_field, cjk_field)
                if q is not None:
                    out.append(q)
            tag_tokens = self._analyze(_PLAIN, word)
            if len(tag_tokens) == 1:
                out.append(self._term("tags", tag_tokens[0]))
        return out

    def _filter_queries(self, pq: ParsedQuery) -> list[Any]:
        """Must-clauses for tag/type/date filters (each scores 0)."""
        t = self._t
        filters: list[Any] = []
        for tag in pq.tags:
            paths = _tag_paths(tag)
            filters.append(self._term("tag_exact", paths[-1]) if paths else t.Query.empty_query())
        if pq.types:
            alts: list[Any] = []
            for name in pq.types:
                for mt in media_types_for(name):
                    if mt.endswith("/*"):
                        pattern = re.escape(mt[:-1]) + ".*"
                        alts.append(t.Query.regex_query(self._schema, "media_type", pattern))
                    else:
                        alts.append(self._term("media_type", mt))
            filters.append(self._any_of(alts) if alts else t.Query.empty_query())
        if pq.before or pq.after:
            lower = _day_start(pq.after) if pq.after else None
            upper = _day_start(pq.before) if pq.before else None
            if lower is not None and upper is not None and lower >= upper:
                filters.append(t.Query.empty_query())
            else:
                filters.append(
                    t.Query.range_query(
                        self._schema,
                        "updated",
                        t.FieldType.Date,
                        lower,
                        upper,
                        include_lower=True,
                        include_upper=upper is None,
                    )
                )
        return [t.Query.const_score_query(f, 0.0) for f in filters]

    # ----------------------------------------------------------------------------------------
    # Searching

    def search(
        self,
        query: ParsedQuery,
        limit: int = 100,
        *,
        details: bool = True,
        detail_ids: Collection[int] | None = None,
    ) -> list[LexicalHit]:
        """Best ``limit`` values for ``query``, best first; never raises on odd queries.

        A query with no words (only filters, or nothing) lists the matching values newest
        first, all with score 0. ``details=False`` skips explanations and snippets (for
        evaluation runs): ``terms`` is then empty and ``snippet_html`` is ``""``.
        ``detail_ids`` limits explanations and snippets to those values (the hits shown).
        """
        if limit <= 0:
            return []
        key = self._plan_key(query)
        plan = self._plan(key, query)
        generation = self._current()
        searcher = generation.searcher
        if searcher.num_docs == 0 or plan.matches_nothing:
            return []
        ranked = self._ranked(generation, key, plan, limit)
        if ranked.top is None:
            return []
        return self._finish(searcher, plan, ranked, details, detail_ids)

    def _plan_key(self, query: ParsedQuery) -> tuple[Any, ...]:
        """What a built query depends on: the parsed query and the tunable class settings."""
        return (
            query,
            self.DROP_FUNCTION_WORDS,
            self.TITLE_BOOST,
            self.BODY_BOOST,
            self.TAGS_BOOST,
            self.PATH_BOOST,
            self.ID_BOOST,
            self.JA_WORDS_BOOST,
            self.CONTEXT_BOOST,
        )

    def _plan(self, key: tuple[Any, ...], query: ParsedQuery) -> _Plan:
        with self._lock:
            plan = self._plans.get(key)
            if plan is not None:
                self._plans.move_to_end(key)
                return plan
        plan = self._build_plan(query)
        with self._lock:
            self._plans[key] = plan
            while len(self._plans) > _PLANS_KEPT:
                self._plans.popitem(last=False)
        return plan

    def _build_plan(self, query: ParsedQuery) -> _Plan:
        t = self._t
        filters = self._filter_queries(query)
        must_not = self._excluded_queries(query.excluded)
        words = list(query.terms)
        if self.DROP_FUNCTION_WORDS:
            # "how do I put a package on hold" is about put, package, hold: function words earn
            # nothing unless they are all there is (or sit inside a quoted phrase).
            content = [w for w in words if not is_function_word(w)]
            if content or query.phrases:
                words = content
        term_parts = self._term_parts(words)
        ident = query.text.strip()
        if ident and not query.phrases:
            for field_name in ("identifier", "ext_id"):
                q = self._boosted(self._term(field_name, ident.lower()), self.ID_BOOST)
                term_parts.append(_Part(field_name, ident.lower(), ident, q))
        phrase_groups = [g for g in (self._phrase_parts(p) for p in query.phrases) if g]

        clauses: list[tuple[Any, Any]] = [(t.Occur.Must, f) for f in filters]
        clauses += [(t.Occur.MustNot, q) for q in must_not]
        has_words = bool(words or query.phrases)
        if not has_words:
            # Filters only: every value that passes them, newest first.
            clauses.append((t.Occur.Must, t.Query.const_score_query(t.Query.all_query(), 0.0)))
            return _Plan(clauses, [], True, [], [], by_recency=True)
        if not term_parts and not phrase_groups:
            return _Plan([], [], True, [], [], by_recency=False, matches_nothing=True)
        phrases = [(t.Occur.Must, self._any_of([p.query for p in g])) for g in phrase_groups]
        phrase_parts = [p for g in phrase_groups for p in g]
        return _Plan(
            clauses, phrases, not phrase_groups, term_parts, phrase_parts, by_recency=False
        )

    def _top(self, searcher: Any, plan: _Plan) -> tuple[Any | None, bool]:
        """The plan's query on this searcher, without term clauses no document holds.

        A term in no segment scores nothing and matches nothing, so dropping its clause changes
        no score, no order and no explanation; it halves the cost of ranking and explaining
        (most words are in no ``tags``/``path`` field and the whole query in no identifier).
        None when nothing can match; beside it, whether any word clause is left.
        """
        t = self._t
        clauses = list(plan.fixed)
        live: list[_Part] = []
        if plan.term_parts:
            live = [p for p in plan.term_parts if searcher.doc_freq(p.field, p.token) > 0]
            if live:
                occur = t.Occur.Must if plan.terms_required else t.Occur.Should
                clauses.append((occur, self._any_of([p.query for p in live])))
            elif plan.terms_required:
                return None, False
        clauses += plan.phrase_clauses  # after the words, as the scores are summed
        return (t.Query.boolean_query(clauses) if clauses else None), bool(live)

    def _ranked(
        self, generation: _Generation, key: tuple[Any, ...], plan: _Plan, limit: int
    ) -> _Ranked:
        """The best ``limit`` hits of ``plan`` on this generation's searcher (ranked once: the
        explanation pass of the same search finds them here)."""
        rank_key = (key, limit)
        with self._lock:
            ranked = generation.ranked.get(rank_key)
            if ranked is not None:
                generation.ranked.move_to_end(rank_key)
                return ranked
        searcher = generation.searcher
        top, words_scored = self._top(searcher, plan)
        if top is None:
            hits = []
        elif plan.by_recency:
            found = searcher.search(top, limit, count=False, order_by_field="updated").hits
            hits = [(0.0, a) for _, a in found]
        else:
            hits = searcher.search(top, limit, count=False).hits
        ids = searcher.fast_field_values("value_id", [a for _, a in hits]) if hits else []
        ranked = _Ranked(top, hits, [int(i) for i in ids], words_scored)
        with self._lock:
            generation.ranked[rank_key] = ranked
            while len(generation.ranked) > _RANKINGS_KEPT:
                generation.ranked.popitem(last=False)
        return ranked

    def _finish(
        self,
        searcher: Any,
        plan: _Plan,
        ranked: _Ranked,
        details: bool,
        detail_ids: Collection[int] | None = None,
    ) -> list[LexicalHit]:
        hits, ids = ranked.hits, ranked.value_ids
        if not details:
            return [
                LexicalHit(vid, float(score), (), "")
                for (score, _), vid in zip(hits, ids, strict=True)
            ]
        labels = {(p.field, p.token): p.label for p in plan.term_parts}
        if ranked.snippets is None:
            ranked.snippets = _Snippets(self, searcher, ranked.top)
        snippets = ranked.snippets
        out = []
        for (score, addr), vid in zip(hits, ids, strict=True):
            if detail_ids is not None and vid not in detail_ids:
                out.append(LexicalHit(vid, float(score), (), ""))
                continue
            terms: tuple[TermScore, ...] = ()
            if score and not ranked.words_scored:
                terms = self._explain_phrases(searcher, addr, plan.phrase_parts, score)
            if score and not terms:
                terms = self._explain(searcher, ranked.top, addr, labels, plan.phrase_parts)
            if terms:
                # tantivy sums in float32; report the exact sum of the parts so explanations
                # add up (it differs from tantivy's score by float32 rounding only).
                score = math.fsum(t.score for t in terms)
            doc = searcher.doc(addr)
            quoted_in: tuple[int, ...] = ()
            if any(t.field in _CONTEXT_FIELDS for t in terms):
                quoted_in = tuple(int(v) for v in doc.get_all("context_of"))
            out.append(LexicalHit(vid, float(score), terms, snippets.make(doc), quoted_in))
        return out

    def _explain_phrases(
        self, searcher: Any, addr: Any, phrase_parts: list[_Part], score: float
    ) -> tuple[TermScore, ...]:
        """A hit of quoted phrases only: each phrase clause explained on its own, when they sum
        to the hit's score (what :meth:`_explain` finds too, without explaining the whole
        query first); empty when they do not (then :meth:`_explain` says what it can)."""
        found = self._phrase_scores(searcher, addr, phrase_parts)
        if found and abs(sum(f.score for f in found) - score) <= 1e-4 * max(1.0, score):
            return tuple(found)
        return ()

    @staticmethod
    def _phrase_scores(searcher: Any, addr: Any, phrase_parts: list[_Part]) -> list[TermScore]:
        found: list[TermScore] = []
        for p in phrase_parts:
            try:
                sub = json.loads(p.query.explain(searcher, addr).to_json())
            except ValueError:  # this clause does not match this document
                continue
            found.append(TermScore(p.field, p.label, float(sub["value"])))
        return found

    def _explain(
        self,
        searcher: Any,
        top: Any,
        addr: Any,
        labels: dict[tuple[str, str], str],
        phrase_parts: list[_Part],
    ) -> tuple[TermScore, ...]:
        """Split a hit's score into labelled parts that sum to it."""
        tree = json.loads(top.explain(searcher, addr).to_json())
        terms: list[TermScore] = []
        unlabelled = 0.0
        for value, context in _scored_leaves(tree):
            m = _TERM_CONTEXT_RE.match(context) if context else None
            if m is None:
                unlabelled += value
                continue
            field_no, token = int(m.group(1)), _unescape_rust(m.group(2))
            field = _FIELDS[field_no] if field_no < len(_FIELDS) else f"field{field_no}"
            terms.append(TermScore(field, labels.get((field, token), token), value))
        if unlabelled:
            # Phrase scorers carry no term context: explain each phrase clause on its own.
            found = self._phrase_scores(searcher, addr, phrase_parts)
            if abs(sum(f.score for f in found) - unlabelled) <= 1e-4 * max(1.0, unlabelled):
                terms.extend(found)
            else:
                terms.append(TermScore("phrase", "phrases", unlabelled))
        return tuple(terms)


class _Snippets:
    """Builds highlighted fragments: body first, then its CJK n-grams, then the title."""

    def __init__(self, index: LexicalIndex, searcher: Any, query: Any) -> None:
        self._ix = index
        self._searcher = searcher
        self._query = query
        self._gens: dict[str, Any] = {}

    def _gen(self, field: str) -> Any:
        if field not in self._gens:
            t = self._ix._t
            gen = t.SnippetGenerator.create(self._searcher, self._query, self._ix._schema, field)
            gen.set_max_num_chars(_SNIPPET_CHARS)
            self._gens[field] = gen
        return self._gens[field]

    def _try(self, field: str, text: str, cjk_field: str, stored: Any) -> str:
        """``stored``: the hit's stored document, which holds ``text`` as its ``field``."""
        if not text:
            return ""
        t = self._ix._t
        snippet = self._gen(field).snippet_from_doc(stored)
        if snippet.highlighted():
            return str(snippet.to_html())
        if has_cjk(text):
            doc = t.Document()
            doc.add_text(cjk_field, text)
            snippet = self._gen(cjk_field).snippet_from_doc(doc)
            if snippet.highlighted():
                return str(snippet.to_html())
        return ""

    def make(self, doc: Any) -> str:
        body = str(doc.get_first("body") or "")
        title = str(doc.get_first("title") or "")
        html_text = self._try("body", body, "body_cjk", doc) or self._try(
            "title", title, "title_cjk", doc
        )
        if html_text:
            return html_text
        head = body[:_SNIPPET_CHARS]
        return html.escape(head + ("…" if len(body) > _SNIPPET_CHARS else ""), quote=False)


def _scored_leaves(node: dict[str, Any]) -> Iterator[tuple[float, str | None]]:
    """``(value, term context)`` of each clause kvdesk boosted; zero-score filters are skipped.

    Every scored clause is wrapped in a boost query, so a ``Boost x…`` node is one part; its
    child's ``context`` names the term (phrase scorers have none).
    """
    desc = str(node.get("description", ""))
    value = float(node.get("value", 0.0))
    if desc.startswith("Boost x"):
        if value:
            children = node.get("details") or [{}]
            context = (children[0].get("context") or [None])[0]
            yield value, context
        return
    for child in node.get("details") or []:
        if "details" in child or str(child.get("description", "")).startswith("Boost x"):
            yield from _scored_leaves(child)
