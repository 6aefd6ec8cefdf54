"""Scans and photos as values: findable by name at once, by their words once read (OCR), by
the identifiers on them, and never crashing on a hostile image."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from kvdesk.core.knowledge_base import KnowledgeBase
from kvdesk.core.scans.store import ScanStore

ROOT = Path(__file__).resolve().parents[2]
FONT = ROOT / "kvdesk" / "resources" / "fonts" / "KvdeskNotoSansJP-Subset.otf"


def _scan(path: Path, lines: list[str]) -> Path:
    font = ImageFont.truetype(str(FONT), 30)
    img = Image.new("L", (900, 80 + 60 * len(lines)), 255)
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((40, 40 + 60 * i), line, font=font, fill=0)
    img.save(path)
    return path


def test_a_scan_is_found_by_name_at_once_and_by_its_words_once_read(tmp_path: Path) -> None:
    folder = tmp_path / "inbox"
    folder.mkdir()
    _scan(folder / "scan0042.png", ["Invoice INV-2O24-0117", "Toner cartridges for the printer"])
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # truncated
    with KnowledgeBase.open(tmp_path / "v.kvdb") as kb:
        report = kb.import_paths([folder])
        assert [f["path"].endswith("broken.png") for f in report.failed] == [True]
        before = kb.search("toner cartridges", mode="lexical")
        assert before.ready.get("scans") is False and not before.hits
        assert kb.search("scan0042", mode="lexical").hits  # its name is a key at once
        assert kb.scans_pending() == 1 and kb.read_scans() == 1
        assert kb.scans_pending() == 0 and kb.read_scans() == 0  # read once per version
        after = kb.search("toner cartridges", mode="lexical")
        assert "scans" not in after.ready
        assert after.hits and after.hits[0].title.startswith("scan0042")
        by_number = kb.search("INV-2024-0117", mode="lexical")
        (match,) = by_number.hits[0].explanation.identifiers.matches  # type: ignore[union-attr]
        assert match.stored.upper().replace("O", "0") == "INV-2024-0117"
        store = ScanStore(kb._vault)
        value_id = after.hits[0].value_id
        (page,) = store.pages(value_id)
        word = next(w for w in page.words if "Toner" in w.text)
        x0, y0, x1, y1 = word.box
        assert 20 <= x0 < x1 <= 900 and 80 <= y0 < y1 <= 160  # where the line was drawn
        assert store.failures() == {}
        assert kb.check().ok
        # The value itself is untouched: OCR is a key source beside it.
        assert "Toner" not in kb.values.text(value_id)
        original = (folder / "scan0042.png").read_bytes()
        assert kb.values.original_bytes(value_id) == original
        assert io.BytesIO(original).getvalue()[:4] == b"\x89PNG"


def test_check_finds_a_damaged_ocr_page(tmp_path: Path) -> None:
    _scan(tmp_path / "note.png", ["Quarterly budget review"])
    with KnowledgeBase.open(tmp_path / "v.kvdb") as kb:
        kb.import_paths([tmp_path / "note.png"])
        kb.read_scans()
        assert kb.check().ok
        with kb._vault.transaction() as tx:
            tx.execute("UPDATE ocr_page SET text = 'forged'")
        report = kb.check()
        assert not report.ok and any("OCR page 1" in p for p in report.problems)


def test_tiff_and_webp_scans_and_a_photo_s_camera_are_keys(tmp_path: Path) -> None:
    first = Image.open(_scan(tmp_path / "p1.png", ["Delivery note for the warehouse"]))
    second = Image.open(_scan(tmp_path / "p2.png", ["Signature of the driver"]))
    first.save(tmp_path / "note.tif", save_all=True, append_images=[second])
    Image.open(_scan(tmp_path / "p3.png", ["Whiteboard plan for spring"])).save(
        tmp_path / "board.webp"
    )
    photo = Image.new("RGB", (320, 200), (200, 180, 160))
    exif = Image.Exif()
    exif[271], exif[272], exif[306] = "Canon", "EOS 80D", "2023:07:14 10:22:01"
    photo.save(tmp_path / "site.jpg", exif=exif)
    for name in ("p1.png", "p2.png", "p3.png"):
        (tmp_path / name).unlink()
    with KnowledgeBase.open(tmp_path / "v.kvdb") as kb:
        report = kb.import_paths([tmp_path])
        assert not report.failed and len(report.imported) == 3
        assert kb.search("canon 2023-07-14", mode="lexical").hits[0].title.startswith("site")
        kb.read_scans()
        assert kb.search("driver signature", mode="lexical").hits[0].title.startswith("note")
        tiff = kb.search("driver signature", mode="lexical").hits[0].value_id
        assert [p.page for p in kb.scan_pages(tiff)] == [1, 2]  # every page of the TIFF
        assert kb.search("whiteboard", mode="lexical").hits[0].title.startswith("board")


def test_a_page_scanned_twice_is_reported_as_a_near_duplicate(tmp_path: Path) -> None:
    first = _scan(tmp_path / "a.png", ["Contract of lease", "Signed in Osaka"])
    again = Image.open(first).convert("RGB").rotate(0.6, fillcolor="white")
    again.save(tmp_path / "b.jpg", quality=70)
    _scan(tmp_path / "c.png", ["Completely different", "text on this one", "and more lines"])
    with KnowledgeBase.open(tmp_path / "v.kvdb") as kb:
        kb.import_paths([tmp_path / "a.png"])
        report = kb.import_paths([tmp_path / "b.jpg", tmp_path / "c.png"])
        assert len(report.imported) == 2  # both kept: they are different files
        (similar,) = report.near_duplicates
        assert similar["path"].endswith("b.jpg") and similar["looks_like"]["id"] == "DOC-1"
        assert report.to_json()["imported"][0]["looks_like"]["id"] == "DOC-1"
        assert "1 like an image already stored" in report.summary()


def test_rescan_reads_a_scan_again_without_touching_its_bytes(tmp_path: Path) -> None:
    from tests.cli.runner import run

    path = _scan(tmp_path / "memo.png", ["Memo about parking permits"])
    vault = tmp_path / "v.kvdb"
    assert run("--vault", str(vault), "import", str(path), "--no-dense", "-q")[0] == 0
    with KnowledgeBase.open(vault) as kb:
        assert kb.scans_pending() == 0  # the CLI import read it before it exited
        before = kb.values.original_bytes(1)
    code, out = run("--vault", str(vault), "keys", "rescan", "DOC-1", "--json")
    assert code == 0 and '"rescanned": 1' in out
    with KnowledgeBase.open(vault) as kb:
        assert kb.scans_pending() == 0 and kb.values.original_bytes(1) == before
        assert kb.search("parking permits", mode="lexical").hits
