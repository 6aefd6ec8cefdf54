"""Extraction against real files generated at test time, including hostile ones."""

from __future__ import annotations

import io
import json
import os
import random
import socket
import struct
import threading
import time
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from kvdesk.core.errors import ExtractionError
from kvdesk.core.extract import (
    DOCX_TYPE,
    SUPPORTED_SUFFIXES,
    Extracted,
    Extractor,
    Limits,
    extract,
    formats,
    media_type_for,
    mismatch_reason,
)

JA = "日本語の検索エンジンは文書を探すための道具です。"


# -- generators ----------------------------------------------------------------------------


def make_pdf(pages: list[list[str]], title: str = "", author: str = "", cjk: bool = False) -> bytes:
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=A4, invariant=1)
    if title:
        c.setTitle(title)
    if author:
        c.setAuthor(author)
    font = "Helvetica"
    if cjk:
        from reportlab.pdfbase import pdfmetrics
        from reportlab.pdfbase.cidfonts import UnicodeCIDFont

        pdfmetrics.registerFont(UnicodeCIDFont("HeiseiKakuGo-W5"))
        font = "HeiseiKakuGo-W5"
    for lines in pages:
        c.setFont(font, 12)
        for i, line in enumerate(lines):
            c.drawString(72, 770 - 16 * i, line)
        c.showPage()
    c.save()
    return buf.getvalue()


def encrypt_pdf(data: bytes, user: str, owner: str) -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password=user, owner_password=owner)  # RC4-128: no extra deps
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def make_docx(title: str = "", author: str = "") -> bytes:
    import docx

    document = docx.Document()
    document.add_heading("Quarterly report", level=1)
    document.add_paragraph("Revenue grew in every region.")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text = "Region"
    table.cell(0, 1).text = "Growth"
    table.cell(1, 0).text = "Kansai"
    table.cell(1, 1).text = "12%"
    document.add_paragraph(JA)
    document.core_properties.title = title
    document.core_properties.author = author
    buf = io.BytesIO()
    document.save(buf)
    return buf.getvalue()


def rezip(data: bytes, extra: dict[str, bytes] | None = None, drop: str = "") -> bytes:
    """Copy a zip, optionally adding members (deflated) or dropping one."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(data)) as src,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst,
    ):
        for info in src.infolist():
            if info.filename != drop:
                dst.writestr(info, src.read(info.filename))
        for name, payload in (extra or {}).items():
            dst.writestr(name, payload)
    return out.getvalue()


def make_image(fmt: str, size: tuple[int, int] = (40, 30), exif: bool = False) -> bytes:
    from PIL import Image

    img = Image.new("RGB", size, (200, 30, 30))
    buf = io.BytesIO()
    if exif:
        info = Image.Exif()
        info[271] = "Canon"
        info[272] = "EOS R5"
        info[306] = "2024:05:01 10:20:30"
        img.save(buf, format=fmt, exif=info)
    else:
        img.save(buf, format=fmt)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims huge dimensions, with almost no pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.fixture()
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to reach the network during extraction fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture(scope="module")
def extractor() -> Iterator[Extractor]:
    with Extractor() as ex:
        yield ex


def assert_json_safe(result: Extracted) -> None:
    assert json.loads(json.dumps(result.metadata)) == result.metadata


# -- media types ---------------------------------------------------------------------------


def test_media_type_for_checks_suffix_and_magic() -> None:
    pdf = make_pdf([["x"]])
    png = make_image("PNG")
    assert SUPPORTED_SUFFIXES == {
        ".txt",
        ".md",
        ".markdown",
        ".html",
        ".htm",
        ".pdf",
        ".docx",
        ".csv",
        ".json",
        ".png",
        ".jpg",
        ".jpeg",
    }
    assert media_type_for("a/b/Report.PDF", pdf[:4096]) == "application/pdf"
    assert media_type_for("notes.txt", b"hello") == "text/plain"
    assert media_type_for("x.markdown", b"# t") == "text/markdown"
    assert media_type_for("x.htm", b"<p>") == "text/html"
    assert media_type_for("x.json", b"{}") == "application/json"
    assert media_type_for("x.csv", b"a,b") == "text/csv"
    assert media_type_for("x.docx", make_docx()[:4096]) == DOCX_TYPE
    assert media_type_for("photo.jpg", png[:4096]) == "image/png"  # misnamed: real type wins
    assert media_type_for("fake.pdf", png[:4096]) is None
    assert media_type_for("fake.png", b"not an image") is None
    assert media_type_for("fake.docx", pdf[:4096]) is None
    assert media_type_for("program.exe", b"MZ") is None
    assert media_type_for("README", b"text") is None


def test_mismatched_content_and_unknown_type_raise_clear_errors() -> None:
    with pytest.raises(ExtractionError, match="not a PDF"):
        extract(b"GIF89a....", "x.pdf")
    with pytest.raises(ExtractionError, match="unsupported file type"):
        extract(b"MZ\x90\x00", "x.exe")
    with pytest.raises(ExtractionError, match="empty file"):
        extract(b"", "x.pdf")
    with pytest.raises(ExtractionError, match="encrypted or legacy Word"):
        extract(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600, "x.docx")


def test_mismatch_reason_words() -> None:
    assert mismatch_reason("a.pdf", b"<html>") == (
        "the content is HTML, not a PDF (the extension .pdf does not match)"
    )
    assert mismatch_reason("a.exe", b"MZ") == "unsupported file type (.exe)"


def test_file_size_limit() -> None:
    with pytest.raises(ExtractionError, match="too large"):
        extract(b"a" * 2000, "big.txt", Limits(max_file_bytes=1000))


# -- text ----------------------------------------------------------------------------------


def test_plain_text_newlines_and_nul_bytes() -> None:
    result = extract(b"caf\xc3\xa9 line1\r\nline2\rline3\x00 end\n", "notes.txt")
    assert result.media_type == "text/plain"
    assert result.title == "notes"
    assert result.text == "café line1\nline2\nline3 end\n"
    assert result.metadata["encoding"] == "utf-8"
    assert result.metadata["truncated"] is False


@pytest.mark.parametrize(
    ("payload", "encoding"),
    [
        ((JA * 3).encode("cp932"), "cp932"),
        ((JA * 3).encode("utf-16"), "utf-16"),
        (b"\xef\xbb\xbf" + JA.encode("utf-8"), "utf-8-sig"),
        (("Résumé of the café menu: crème brûlée " * 4).encode("utf-16-le"), "utf-16-le"),
    ],
)
def test_text_encodings_are_detected(payload: bytes, encoding: str) -> None:
    result = extract(payload, "doc.txt")
    assert result.metadata["encoding"] == encoding
    assert ("検索エンジン" in result.text) or ("crème brûlée" in result.text)
    assert "\ufeff" not in result.text


def test_euc_jp_text_is_decoded() -> None:
    result = extract((JA * 4).encode("euc_jp"), "euc.txt")
    assert "検索エンジン" in result.text
    assert "euc" in str(result.metadata["encoding"])


def test_invalid_utf8_falls_back_to_a_detected_encoding() -> None:
    latin = ("Le café était plein; la crème brûlée, délicieuse. " * 5).encode("latin-1")
    result = extract(latin, "fr.txt")
    assert result.metadata["encoding"] != "utf-8"
    assert "caf" in result.text and "plein" in result.text


def test_mostly_utf8_with_a_damaged_byte_stays_utf8() -> None:
    data = (JA * 5).encode("utf-8") + b"\xff" + b" tail"
    result = extract(data, "damaged.txt")
    assert result.metadata["encoding"] == "utf-8 (damaged bytes replaced)"
    assert result.text.startswith(JA) and result.text.endswith("\ufffd tail")


def test_binary_content_with_text_extension_is_refused() -> None:
    rng_bytes = random.Random(1).randbytes(40_000)
    with pytest.raises(ExtractionError, match="binary content in a text file"):
        extract(rng_bytes, "random.txt")
    with pytest.raises(ExtractionError, match="binary content in a text file"):
        extract(b"\x00\x00\x01\x00" * 1000 + b"text", "nuls.csv")
    with pytest.raises(ExtractionError, match="binary content in a text file"):
        extract(make_image("PNG"), "image.md")


def test_text_truncation_is_noted() -> None:
    result = extract(b"0123456789" * 10, "long.txt", Limits(max_text_chars=25))
    assert result.text == "0123456789012345678901234"
    assert result.metadata["truncated"] is True
    assert result.metadata["original_chars"] == 100


def test_markdown_title_from_first_heading() -> None:
    md = "intro line\n\n## Sub\n# Real Title #\n\ntext **bold**\n# Later\n"
    result = extract(md.encode(), "note.md")
    assert result.media_type == "text/markdown"
    assert result.title == "Real Title"
    assert result.text == md
    assert extract(b"no heading here", "plain-note.markdown").title == "plain-note"


def test_markdown_title_with_long_blank_run_is_fast() -> None:
    data = b"# a" + b" " * 40_000 + b"b\n\nbody"
    started = time.monotonic()
    result = extract(data, "long.md")
    assert time.monotonic() - started < 2.0  # the old regex took ~27 s here
    assert result.title == "a b"


@pytest.mark.parametrize(
    ("source", "title"),
    [
        ("# Travel policy ##\n", "Travel policy"),
        ("   #\tTabbed  title #  \n", "Tabbed title"),
        ("# C#\n", "C#"),
        ("#\n# \n# Second\n", "Second"),
        ("#NoSpace\n", "x"),
    ],
)
def test_markdown_title_rules_still_hold(source: str, title: str) -> None:
    assert extract(source.encode(), "x.md").title == title


def test_csv_text_kept_as_is() -> None:
    csv = f'name,city,note\r\nAlice,大阪,{JA}\r\nBob,"New York, NY",{JA}\r\n'
    result = extract(csv.encode("cp932"), "people.csv")
    assert result.media_type == "text/csv"
    assert result.text == csv.replace("\r\n", "\n")


# -- JSON ----------------------------------------------------------------------------------


def test_json_text_lists_keys_and_values() -> None:
    doc = {
        "title": "Trip",
        "tags": ["京都", "train"],
        "stops": [{"city": "Nara", "n": 2}],
        "ok": True,
        "none": None,
    }
    result = extract(json.dumps(doc, ensure_ascii=False).encode(), "trip.json")
    assert result.media_type == "application/json"
    assert result.title == "trip"
    lines = result.text.split("\n")
    assert lines == [
        "title: Trip",
        "tags:",
        "京都",
        "train",
        "stops:",
        "city: Nara",
        "n: 2",
        "ok: true",
        "none: null",
    ]


def test_json_lines_are_accepted_and_invalid_json_refused() -> None:
    result = extract(b'{"a": "x"}\n{"a": "y"}\n', "rows.json")
    assert result.text == "a: x\na: y"
    assert result.metadata["json_lines"] is True
    with pytest.raises(ExtractionError, match="invalid JSON"):
        extract(b'{"a": ', "broken.json")


def test_deeply_nested_json_is_a_clear_error_not_a_crash() -> None:
    deep = b'{"k":' * 200_000 + b"1" + b"}" * 200_000
    with pytest.raises(ExtractionError, match="nested too deeply"):
        extract(deep, "deep.json")
    moderate = b"[" * 200 + b'"leaf"' + b"]" * 200
    assert extract(moderate, "ok.json").text == "leaf"


# -- HTML ----------------------------------------------------------------------------------


def test_html_drops_scripts_and_loads_nothing(no_network: None) -> None:
    html = """<!doctype html><html lang="ja"><head><title>  Release
      notes </title><meta name="author" content="Kei">
      <script>var secret = "SCRIPTTEXT";</script><style>.x{color:red}/*STYLETEXT*/</style>
      <link rel="stylesheet" href="http://example.invalid/a.css"></head>
      <body><h1>Heading</h1><p>First <b>bold</b> paragraph.</p>
      <img src="http://example.invalid/pixel.png" alt="x"><iframe src="http://example.invalid/"></iframe>
      <noscript>NOSCRIPTTEXT</noscript><template>TEMPLATETEXT</template>
      <ul><li>one</li><li>two</li></ul><table><tr><td>c1</td><td>c2</td></tr></table>
      <pre>line a
line b</pre><script src="http://example.invalid/x.js"></script></body></html>"""
    result = extract(html.encode(), "page.html")
    assert result.media_type == "text/html"
    assert result.title == "Release notes"
    for hidden in ("SCRIPTTEXT", "STYLETEXT", "NOSCRIPTTEXT", "TEMPLATETEXT", "secret"):
        assert hidden not in result.text
    assert result.text.split("\n") == [
        "Heading",
        "First bold paragraph.",
        "one",
        "two",
        "c1",
        "c2",
        "line a",
        "line b",
    ]
    assert result.metadata["author"] == "Kei"
    assert result.metadata["lang"] == "ja"


def test_html_meta_charset_is_honoured() -> None:
    html = f'<html><head><meta charset="shift_jis"><title>{JA}</title></head><body><p>{JA}'
    result = extract(html.encode("cp932"), "ja.htm")
    assert result.title == JA
    assert JA in result.text
    assert result.metadata["encoding"] in {"shift_jis", "cp932"}


# -- PDF -----------------------------------------------------------------------------------


def test_pdf_text_title_and_pages() -> None:
    data = make_pdf([["Alpha retrieval page one"], ["Beta page two"]], "Search Notes", "Ann")
    result = extract(data, "notes.pdf")
    assert result.media_type == "application/pdf"
    assert result.title == "Search Notes"
    assert "Alpha retrieval page one" in result.text and "Beta page two" in result.text
    assert result.metadata["pages"] == 2
    assert result.metadata["author"] == "Ann"
    assert_json_safe(result)
    assert extract(make_pdf([["x"]]), "untitled.pdf").title == "untitled"


def test_pdf_japanese_wrapped_lines_are_joined() -> None:
    data = make_pdf([["日本語の検索エン", "ジンは文書を探す", "English line", "next"]], cjk=True)
    text = extract(data, "ja.pdf").text
    assert "日本語の検索エンジンは文書を探す" in text
    assert "English line\nnext" in text


def test_encrypted_pdf_is_refused_with_clear_message() -> None:
    data = encrypt_pdf(make_pdf([["top secret words"]]), user="secret", owner="owner")
    with pytest.raises(ExtractionError, match=r"^encrypted PDF \(password protected\)$"):
        extract(data, "locked.pdf")


def test_owner_only_encrypted_pdf_is_readable() -> None:
    data = encrypt_pdf(make_pdf([["readable words"]]), user="", owner="owner")
    result = extract(data, "restricted.pdf")
    assert "readable words" in result.text
    assert result.metadata["encrypted"] is True


def test_truncated_and_garbage_pdfs() -> None:
    data = make_pdf([["first page text"], ["second page text"], ["third page text"]])
    # Lost the xref table and trailer (e.g. an interrupted download): rebuilt, all text read.
    no_tail = data[: data.rindex(b"\nxref\n")]
    result = extract(no_tail, "cut.pdf")
    assert result.text.split("\n\n") == ["first page text", "second page text", "third page text"]
    assert result.metadata["repaired"] is True
    # Cut inside the last page's content stream: partial text, the failure is noted.
    partial = data[: data.rindex(b"stream\n") + 12]
    result = extract(partial, "partial.pdf")
    assert "first page text" in result.text and "third page text" not in result.text
    assert result.metadata["pages"] == 3
    assert result.metadata["repaired"] is True
    # Cut before any page content: nothing can be recovered -> a clear error.
    with pytest.raises(ExtractionError, match="PDF"):
        extract(data[:200], "stub.pdf")
    with pytest.raises(ExtractionError, match="PDF"):
        extract(b"%PDF-1.7\n" + random.Random(2).randbytes(3000), "noise.pdf")


# -- DOCX ----------------------------------------------------------------------------------


def test_docx_paragraphs_tables_and_properties() -> None:
    result = extract(make_docx(title="Q3 Report", author="Mio"), "q3.docx")
    assert result.media_type == DOCX_TYPE
    assert result.title == "Q3 Report"
    assert result.text.split("\n") == [
        "Quarterly report",
        "Revenue grew in every region.",
        "Region\tGrowth",
        "Kansai\t12%",
        JA,
    ]
    assert result.metadata["author"] == "Mio"
    assert result.metadata["tables"] == 1
    assert_json_safe(result)
    assert extract(make_docx(), "untitled.docx").title == "untitled"


def test_docx_zip_bomb_refused_by_ratio_before_parsing() -> None:
    zeros = b"\x00" * (16 * 1024 * 1024)  # 16 MiB deflates to ~16 KiB (ratio ~1000)
    bomb = rezip(make_docx(), {"word/media/bomb.bin": zeros})
    assert len(bomb) < 100_000
    with pytest.raises(ExtractionError, match="zip bomb"):
        extract(bomb, "bomb.docx")


def test_docx_total_decompressed_size_limit() -> None:
    # Incompressible (ratio ~1), so only the total-size check can trip.
    noise = random.Random(3).randbytes(2 * 1024 * 1024)
    data = rezip(make_docx(), {"word/media/noise.bin": noise})
    with pytest.raises(ExtractionError, match=r"zip bomb: it expands to \d+ MiB"):
        extract(data, "big.docx", Limits(max_decompressed_bytes=1024 * 1024))
    assert "Revenue" in extract(data, "big.docx").text  # within default limits it is fine


def test_docx_member_lying_about_its_size_cannot_inflate_past_it() -> None:
    """The checks trust declared sizes; zipfile stops at them, so a lie only breaks the file."""
    data = bytearray(make_docx())
    name = b"word/document.xml"
    pos = 0
    while (pos := data.find(b"PK\x01\x02", pos + 1)) != -1:  # central directory entries
        name_len = struct.unpack_from("<H", data, pos + 28)[0]
        if data[pos + 46 : pos + 46 + name_len] == name:
            struct.pack_into("<I", data, pos + 24, 100)  # claim 100 bytes uncompressed
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        assert archive.getinfo("word/document.xml").file_size == 100
    with pytest.raises(ExtractionError, match="Word document"):
        extract(bytes(data), "liar.docx")


def test_damaged_docx_variants() -> None:
    good = make_docx()
    with pytest.raises(ExtractionError, match="not a Word document"):
        extract(rezip(good, drop="word/document.xml"), "x.docx")
    broken_xml = rezip(good, drop="word/document.xml")
    broken_xml = rezip(broken_xml, {"word/document.xml": b"<w:document><unclosed"})
    with pytest.raises(ExtractionError, match="Word document"):
        extract(broken_xml, "x.docx")
    with pytest.raises(ExtractionError, match="Word document"):
        extract(good[: len(good) // 2], "half.docx")


# -- images --------------------------------------------------------------------------------


def test_png_metadata() -> None:
    result = extract(make_image("PNG", (64, 48)), "chart.png")
    assert result.media_type == "image/png"
    assert result.text == ""
    assert result.title == "chart"
    assert (result.metadata["width"], result.metadata["height"]) == (64, 48)
    assert result.metadata["format"] == "PNG"
    assert result.metadata["mode"] == "RGB"


def test_jpeg_exif_basics() -> None:
    result = extract(make_image("JPEG", (32, 32), exif=True), "photo.jpeg")
    assert result.media_type == "image/jpeg"
    assert result.metadata["exif"] == {
        "Make": "Canon",
        "Model": "EOS R5",
        "DateTime": "2024:05:01 10:20:30",
    }
    assert_json_safe(result)


def test_image_decompression_bomb_and_truncation() -> None:
    with pytest.raises(ExtractionError, match="image is too large"):
        extract(png_header_only(40_000, 40_000), "bomb.png")
    jpeg = make_image("JPEG", (256, 256))
    with pytest.raises(ExtractionError, match="JPEG"):
        extract(jpeg[: len(jpeg) // 2], "cut.jpg")
    png = make_image("PNG", (64, 64))
    with pytest.raises(ExtractionError, match="PNG"):
        extract(png[:-30], "cut.png")


# -- Extractor (worker process) ------------------------------------------------------------


def test_extractor_runs_parsers_in_a_reused_worker(extractor: Extractor) -> None:
    pdf = make_pdf([["worker pdf text"]], "W")
    first = extractor.extract(pdf, "a.pdf")
    pid = extractor.worker_pid
    assert pid is not None and pid != os.getpid()
    assert "worker pdf text" in first.text
    assert extractor.extract(make_docx(), "b.docx").title == "b"
    assert extractor.extract(make_image("PNG"), "c.png").metadata["width"] == 40
    assert extractor.worker_pid == pid  # reused, not restarted
    with pytest.raises(ExtractionError, match="encrypted PDF"):
        extractor.extract(encrypt_pdf(pdf, "pw", "pw"), "locked.pdf")
    assert extractor.worker_pid == pid  # an ordinary error keeps the worker


def test_extractor_handles_text_in_process(extractor: Extractor) -> None:
    result = extractor.extract("plain 検索".encode("cp932"), "t.txt")
    assert result.text == "plain 検索"
    with pytest.raises(ExtractionError, match="binary content"):
        extractor.extract(b"\x00\x01\x02\x03" * 100, "bin.json")


def test_extractor_started_and_used_from_worker_threads() -> None:
    results: list[Extracted] = []
    errors: list[BaseException] = []
    pids: set[int | None] = set()

    def work(ex: Extractor) -> None:
        try:
            for i in range(3):
                results.append(ex.extract(make_pdf([[f"thread page {i}"]]), f"{i}.pdf"))
                pids.add(ex.worker_pid)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    with Extractor() as ex:
        threads = [threading.Thread(target=work, args=(ex,)) for _ in range(2)]
        for thread in threads:  # the worker process is first started from a non-main thread
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not errors
        assert sorted(r.text for r in results) == sorted([f"thread page {i}" for i in range(3)] * 2)
        assert len(pids) == 1 and ex.worker_pid in pids  # one shared worker
        assert ex.extract(make_pdf([["main thread"]]), "m.pdf").text == "main thread"
    assert ex.worker_pid is None


def test_extractor_timeout_kills_and_restarts_the_worker() -> None:
    with Extractor(Limits(max_seconds=0.5)) as ex:
        ex.extract(b"<p>warm</p>", "warm.html")  # startup is not counted against the limit
        old_pid = ex.worker_pid
        assert old_pid is not None
        ex._debug_sleep = 5.0  # the worker stalls like a hung parser would
        with pytest.raises(ExtractionError, match=r"^took longer than 0.5 s$"):
            ex.extract(b"<p>slow</p>", "slow.html")
        with pytest.raises(ProcessLookupError):
            os.kill(old_pid, 0)  # killed and reaped: not even a zombie remains
        ex._debug_sleep = 0.0
        assert ex.extract(b"<p>after</p>", "after.html").text == "after"
        assert ex.worker_pid not in (None, old_pid)
        last_pid = ex.worker_pid
    assert ex.worker_pid is None
    assert last_pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(last_pid, 0)
    with pytest.raises(ExtractionError, match="closed"):
        ex.extract(b"<p>late</p>", "late.html")


def test_extractor_survives_a_crashing_worker() -> None:
    with Extractor() as ex:
        ex.extract(b"<p>warm</p>", "warm.html")
        pid = ex.worker_pid
        assert pid is not None
        ex._debug_crash = True  # the worker exits mid-file, as a segfaulting parser would
        with pytest.raises(ExtractionError, match=r"crashed .*exit code 70"):
            ex.extract(b"<p>boom</p>", "boom.html")
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        ex._debug_crash = False
        assert ex.extract(b"<p>again</p>", "again.html").text == "again"
        assert ex.worker_pid != pid


def test_in_process_extraction_respects_the_time_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    real = formats.decode_text

    def slow(data: bytes, declared: str | None = None) -> tuple[str, str]:
        time.sleep(0.3)
        return real(data, declared)

    monkeypatch.setattr(formats, "decode_text", slow)
    limits = Limits(max_seconds=0.1)
    for name in ("slow.txt", "slow.md", "slow.json", "slow.csv"):
        with pytest.raises(ExtractionError, match=r"took longer than 0\.1 s"):
            extract(b'{"a": 1}', name, limits)
    with Extractor(limits) as extractor, pytest.raises(ExtractionError, match="took longer"):
        extractor.extract(b"plain words", "slow.txt")


@pytest.mark.parametrize(
    ("name", "payload"),
    [("a.txt", b"x"), ("a.json", b"[1]"), ("a.html", b"<p>x"), ("a.png", "png")],
)
def test_metadata_is_json_serialisable(name: str, payload: bytes | str) -> None:
    data = make_image("PNG") if payload == "png" else payload
    assert isinstance(data, bytes)
    assert_json_safe(extract(data, name))


def test_paths_are_not_read(tmp_path: Path) -> None:
    """extract() works on bytes only: a filename that exists on disk is just a name."""
    real = tmp_path / "real.txt"
    real.write_text("on disk")
    assert extract(b"in memory", str(real)).text == "in memory"
