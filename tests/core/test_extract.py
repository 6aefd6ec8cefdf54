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
from tests.images import png_header_only

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


def make_latex_pdf(pages: list[list[list[str]]], gap: int = -249) -> bytes:
    """Pages of lines of words the way XeLaTeX/dvipdfmx write them: no space characters, each
    line one TJ array whose word gaps are moves (``[<0027..> -249 <0035..>] TJ``), in a Type0
    font with Identity-H glyph codes, a ToUnicode map and a subset without a space glyph, its
    code 0x20 being a wide letter (what made pypdf glue the words of Debian's manuals)."""
    from pypdf import PdfWriter
    from pypdf.generic import (
        ArrayObject,
        DecodedStreamObject,
        DictionaryObject,
        NameObject,
        NumberObject,
        TextStringObject,
    )
    from reportlab.pdfbase.pdfmetrics import stringWidth

    chars = sorted({ch for page in pages for line in page for word in line for ch in word})
    gids = {ch: 3 + i for i, ch in enumerate(chars)}
    wide = max(chars, key=lambda ch: (ord(ch) < 0x2000, stringWidth(ch, "Times-Roman", 1)))
    at_32 = next((ch for ch, g in gids.items() if g == 32), None)
    if at_32 is not None:
        gids[at_32] = gids[wide]
    gids[wide] = 32  # code 0x20 is a wide letter, as in a real subset
    n = NameObject
    writer = PdfWriter()

    def stream(text: str) -> object:
        obj = DecodedStreamObject()
        obj.set_data(text.encode())
        return writer._add_object(obj)

    cmap = "\n".join(
        [
            "/CIDInit /ProcSet findresource begin 12 dict begin begincmap",
            "/CMapName /Adobe-Identity-UCS def /CMapType 2 def",
            "1 begincodespacerange <0000> <FFFF> endcodespacerange",
            f"{len(gids)} beginbfchar",
            *(f"<{g:04X}> <{ch.encode('utf-16-be').hex()}>" for ch, g in gids.items()),
            "endbfchar endcmap CMapName currentdict /CMap defineresource pop end end",
        ]
    )
    widths = ArrayObject()
    for ch, g in sorted(gids.items(), key=lambda item: item[1]):
        w = 1000 if ord(ch) > 0x2000 else round(stringWidth(ch, "Times-Roman", 1000))
        widths += [NumberObject(g), ArrayObject([NumberObject(w)])]
    descriptor = DictionaryObject(
        {n("/Type"): n("/FontDescriptor"), n("/FontName"): n("/KVDESK+Serif")}
        | {n("/Flags"): NumberObject(32), n("/ItalicAngle"): NumberObject(0)}
        | {n("/FontBBox"): ArrayObject([NumberObject(v) for v in (-168, -218, 1000, 898)])}
        | {n(k): NumberObject(v) for k, v in (("/Ascent", 891), ("/Descent", -216))}
        | {n("/CapHeight"): NumberObject(662), n("/StemV"): NumberObject(80)}
    )
    system = {n("/Registry"): TextStringObject("Adobe")}
    system |= {n("/Ordering"): TextStringObject("Identity"), n("/Supplement"): NumberObject(0)}
    cid_font = DictionaryObject(
        {n("/Type"): n("/Font"), n("/Subtype"): n("/CIDFontType2")}
        | {n("/BaseFont"): n("/KVDESK+Serif"), n("/CIDSystemInfo"): DictionaryObject(system)}
        | {n("/FontDescriptor"): writer._add_object(descriptor), n("/W"): widths}
        | {n("/DW"): NumberObject(1000), n("/CIDToGIDMap"): n("/Identity")}
    )
    font = DictionaryObject(
        {n("/Type"): n("/Font"), n("/Subtype"): n("/Type0"), n("/Encoding"): n("/Identity-H")}
        | {n("/BaseFont"): n("/KVDESK+Serif"), n("/ToUnicode"): stream(cmap)}
        | {n("/DescendantFonts"): ArrayObject([writer._add_object(cid_font)])}
    )
    font_ref = writer._add_object(font)
    for lines in pages:
        page = writer.add_blank_page(595, 842)
        ops = ["BT /F1 10 Tf 13 TL 72 770 Td"]
        for line in lines:
            hexed = ["<" + "".join(f"{gids[ch]:04X}" for ch in word) + ">" for word in line]
            ops.append("[" + f" {gap} ".join(hexed) + "] TJ T*")
        page[n("/Contents")] = stream("\n".join([*ops, "ET"]))
        page[n("/Resources")] = DictionaryObject(
            {n("/Font"): DictionaryObject({n("/F1"): font_ref})}
        )
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


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
        ".rst",
        ".html",
        ".htm",
        ".pdf",
        ".docx",
        ".csv",
        ".json",
        ".png",
        ".jpg",
        ".jpeg",
        ".tif",
        ".tiff",
        ".webp",
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
    assert media_type_for("README", b"text") == "text/plain"  # no extension: content decides


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


def test_latex_pdf_keeps_words_apart() -> None:
    # LaTeX writes word gaps as TJ moves, not spaces: each word must come out on its own.
    sentence = "From user’s perspective, differences can be colloquially summarized as:"
    tight = "Wayland is a same-host GUI communication protocol"
    data = make_latex_pdf([[sentence.split(), tight.split()]])
    data_tight = make_latex_pdf([[tight.split()]], gap=-160)  # a squeezed justified line
    text = extract(data, "debian-reference.en.pdf").text
    assert text == f"{sentence}\n{tight}"
    assert extract(data_tight, "tight.pdf").text == tight
    # Through the worker, as an import runs it.
    with Extractor() as extractor:
        assert "differences can be colloquially summarized" in extractor.extract(data, "w.pdf").text


def test_latex_pdf_joins_words_hyphenated_at_line_end() -> None:
    lines = [["differences", "can", "be", "colloqui-"], ["ally", "summarized", "as:"]]
    text = extract(make_latex_pdf([lines]), "hyphen.pdf").text
    assert "differences can be colloquially" in text and "summarized as:" in text
    assert "\ufffe" not in text


def test_latex_pdf_japanese_keeps_latin_words_apart_and_joins_wrapped_lines() -> None:
    lines = [
        ["GNOME", "デスクトップで使用されうる", "GUI", "通信プロトコル"],
        ["X", "Window", "System", "コアプロトコル", "(xwayland", "経由)"],
        ["日本語の検索エン"],
        ["ジンは文書を探す"],
    ]
    text = extract(make_latex_pdf([lines]), "debian-reference.ja.pdf").text
    assert text.split("\n") == [
        "GNOME デスクトップで使用されうる GUI 通信プロトコル",
        "X Window System コアプロトコル (xwayland 経由)",
        "日本語の検索エンジンは文書を探す",
    ]


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


# -- common text formats: reStructuredText, gzip, man pages, extensionless names (issue 12 #6) --

_MAN_PAGE = rb""".\" Automatically generated by Pod::Man; a comment
'\" t
.de Sp \" a macro definition: its body is no text
.if t .sp .5v
..
.ie n \{\
.    ds -- \(*W-
'br\}
.el\{\
.    ds -- \|\(em\|
'br\}
.if \n(.H>23 .if \n(.V>19 \
\{\
.    ds : e
.\}
.TH BACKUPCTL 8 "2026-01-05" "kvdesk tests"
.SH NAME
backupctl \- rotate the nightly \fBbackup\fR archives
.SH SYNOPSIS
.B backupctl
.RB [ \-n | \-\-dry\-run ]
.IR archive ...
.SH DESCRIPTION
Keeps seven archives\(emthe oldest is removed \(lqfirst\(rq.
.PP
Use \fI\-\-dry\-run\fP to see what would go; see \fBtar\fR(1).
.TP
.B \-n
Dry run.\" a trailing comment
"""


def test_restructuredtext_title_is_the_first_underlined_heading() -> None:
    source = (
        ".. _top:\n\n:orphan:\n\n"
        "=================\n Release notes\n=================\n\n"
        "Fixed\n-----\n\nThe scheduler no longer skips Mondays.\n"
    )
    result = extract(source.encode(), "notes.rst")
    assert result.media_type == "text/x-rst"
    assert result.title == "Release notes"
    assert "no longer skips Mondays" in result.text
    assert extract(b"Plain words, no heading.\n", "plain.rst").title == "plain"
    transition = b"Intro line one\n\n----\n\nAfter the rule.\n"
    assert extract(transition, "rule.rst").title == "rule"  # a transition is not a heading


def test_man_page_roff_is_stripped_to_readable_text() -> None:
    result = extract(_MAN_PAGE, "backupctl.8")
    assert result.media_type == "text/troff"
    assert result.title == "backupctl - rotate the nightly backup archives"
    text = result.text
    assert text.splitlines()[:2] == ["NAME", "backupctl - rotate the nightly backup archives"]
    assert "backupctl\n[-n|--dry-run]\narchive..." in text
    assert "Keeps seven archives\u2014the oldest is removed \u201cfirst\u201d." in text
    assert "Use --dry-run to see what would go; see tar(1)." in text
    assert "Dry run." in text
    for leftover in ("\\", ".TH", "Pod::Man", "ds ", "sp .5v", "comment", "BACKUPCTL"):
        assert leftover not in text, leftover


def test_mdoc_man_page_keeps_its_words() -> None:
    source = (
        b".Dd January 5, 2026\n.Dt SYNCD 8\n.Os\n.Sh NAME\n.Nm syncd\n"
        b".Nd keep two folders in step\n.Sh SYNOPSIS\n.Nm\n.Op Fl v\n.Ar source target\n"
    )
    result = extract(source, "syncd.8")
    assert result.title == "syncd - keep two folders in step"
    assert "source target" in result.text and "Fl" not in result.text


def _gz(data: bytes, name: str = "") -> bytes:
    import gzip

    buf = io.BytesIO()
    with gzip.GzipFile(filename=name, mode="wb", fileobj=buf, mtime=0) as handle:
        handle.write(data)
    return buf.getvalue()


def test_gzip_files_are_read_as_their_inner_name() -> None:
    text = extract(_gz(b"Printer setup: use the second tray.\n"), "printer.txt.gz")
    assert (text.media_type, text.title) == ("text/plain", "printer")
    assert text.text == "Printer setup: use the second tray.\n"
    assert text.metadata["compression"] == "gzip"
    markdown = extract(_gz(b"# Onboarding\n\nBadge at the front desk.\n"), "welcome.md.gz")
    assert (markdown.media_type, markdown.title) == ("text/markdown", "Onboarding")
    man = extract(_gz(_MAN_PAGE), "backupctl.8.gz")
    assert man.media_type == "text/troff" and man.title.startswith("backupctl - rotate")
    changelog = extract(_gz(b"kvdesk (1.2) unstable; urgency=low\n\n  * Faster.\n"), "changelog.gz")
    assert (changelog.media_type, changelog.title) == ("text/plain", "changelog")
    debian = extract(_gz(b"Nothing special.\n"), "changelog.Debian.gz")
    assert debian.title == "changelog.Debian"
    two_members = _gz(b"first member, ") + _gz(b"second member\n")  # like `cat a.gz b.gz`
    assert extract(two_members, "joined.txt.gz").text == "first member, second member\n"


def test_gzip_runs_in_the_worker_and_comes_back_as_its_inner_type() -> None:
    with Extractor() as extractor:
        result = extractor.extract(_gz(_MAN_PAGE), "backupctl.8.gz")
        assert extractor.worker_pid is not None  # inflated in the worker, not in-process
    assert result.media_type == "text/troff" and "Dry run." in result.text


def test_gzip_bombs_and_oversized_content_are_refused_while_streaming() -> None:
    import tracemalloc

    deflater = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b"a" * (1 << 20)
    bomb = b"".join(deflater.compress(block) for _ in range(256)) + deflater.flush()
    assert len(bomb) < 300_000  # 256 MiB of plain text would come out (within the 512 MiB cap)
    tracemalloc.start()
    try:
        with pytest.raises(ExtractionError, match="decompression bomb"):
            extract(bomb, "letters.txt.gz")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 128 * 1024 * 1024  # streamed: stopped near 200x its size, not at 256 MiB
    rng = random.Random(4)
    words = " ".join(rng.choice(["alpha", "beta", "gamma", "delta"]) for _ in range(400_000))
    packed = _gz(words.encode())
    assert len(words) > 2 * 1024 * 1024 and len(packed) * 200 > len(words)  # not a bomb
    with pytest.raises(ExtractionError, match="expands beyond the limit of 1 MiB"):
        extract(packed, "words.txt.gz", Limits(max_decompressed_bytes=1024 * 1024))
    assert extract(packed, "words.txt.gz").text == words


def test_damaged_and_mismatched_gzip_files_say_why() -> None:
    good = _gz(b"some text that is long enough to matter\n" * 50)
    with pytest.raises(ExtractionError, match="truncated"):
        extract(good[: len(good) // 2], "cut.txt.gz")
    with pytest.raises(ExtractionError, match="not gzip data"):
        extract(b"plain text, never compressed", "fake.txt.gz")
    with pytest.raises(ExtractionError, match="gzip-compressed file: not a text file"):
        extract(_gz(b"\x7fELF\x02\x01\x01" + bytes(200)), "tool.gz")
    assert media_type_for("backup.tar.gz", _gz(b"x")) is None
    assert "unsupported file type (.tar inside .gz)" in mismatch_reason("backup.tar.gz", b"")
    assert media_type_for("twice.txt.gz.gz", _gz(_gz(b"x"))) is None


def test_extensionless_names_are_sniffed_not_trusted() -> None:
    for name in ("README", "copyright", "NEWS", "TODO", "INSTALL", "AUTHORS", "README.Debian"):
        result = extract(b"Upstream: https://example.org\nLicense: MIT\n", name)
        assert (result.media_type, result.title) == ("text/plain", name), name
    assert extract("Änderungen für 2026\n".encode("cp1252"), "CHANGES").text.startswith("Ä")
    assert extract("説明書\n".encode("utf-16"), "README").text == "説明書\n"
    elf = b"\x7fELF\x02\x01\x01\x00" + bytes(120) + b"\x01\x02\x03"
    assert media_type_for("backupctl", elf) is None
    reason = mismatch_reason("backupctl", elf)
    assert reason.startswith("not a text file: the content is an executable program (ELF)")
    with pytest.raises(ExtractionError, match="not a text file"):
        extract(os.urandom(4096) + b"\x00", "NEWS")
    assert media_type_for("README", b"see %PDF-1.4 for the header") == "text/plain"
    assert media_type_for("scan", make_pdf([["x"]])[:4096]) == "application/pdf"
    assert media_type_for("notes.py", b"print(1)") is None  # a known, unsupported extension
    assert mismatch_reason("notes.py", b"print(1)") == "unsupported file type (.py)"
