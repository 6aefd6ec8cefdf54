"""OCR in its own process: a hostile or slow document costs that document, never the app."""

from __future__ import annotations

import io
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pypdfium2 as pdfium
import pytest
from PIL import Image, ImageDraw, ImageFont

from kvdesk.core.errors import Cancelled, ExtractionError
from kvdesk.core.extract.ocr import is_blank
from kvdesk.core.knowledge_base import KnowledgeBase
from kvdesk.core.progress import CancelToken, Progress
from kvdesk.core.scans.text import unwrap_cjk_lines
from kvdesk.core.scans.worker import OcrLimits, OcrWorker

FONT = Path(__file__).resolve().parents[2] / "kvdesk" / "resources" / "fonts"


def _png(text: str) -> bytes:
    font = ImageFont.truetype(str(FONT / "KvdeskNotoSansJP-Subset.otf"), 32)
    img = Image.new("L", (700, 120), 255)
    ImageDraw.Draw(img).text((30, 40), text, font=font, fill=0)
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def _blank_pdf(pages: int) -> bytes:
    pdf = pdfium.PdfDocument.new()
    for _ in range(pages):
        pdf.new_page(595, 842)
    out = io.BytesIO()
    pdf.save(out)
    pdf.close()
    return out.getvalue()


@pytest.fixture(scope="module")
def worker() -> OcrWorker:
    w = OcrWorker()
    yield w
    w.close()


def test_a_page_is_read_in_another_process_and_a_damaged_file_costs_only_itself(
    worker: OcrWorker,
) -> None:
    seen: list[Progress] = []
    pages = worker.read(_png("Invoice 4711 paid"), "image/png", progress=seen.append)
    assert worker.pid is not None and worker.pid != os.getpid()
    assert "4711" in pages[0].text and "Invoice" in pages[0].text
    assert [w.text for w in pages[0].words if w.text == "4711"]
    assert seen and seen[-1].done == seen[-1].total == 1
    pid = worker.pid
    with pytest.raises(ExtractionError, match="damaged|truncated|identified"):
        worker.read(_png("cut short")[:200], "image/png")
    assert worker.pid == pid  # the same child goes on with the next file
    assert "again" in worker.read(_png("read again"), "image/png")[0].text


def test_a_child_that_dies_mid_file_is_reported_and_replaced() -> None:
    with OcrWorker() as worker:
        worker.read(_png("warm up"), "image/png")
        worker._debug_sleep = 5.0
        pid = worker.pid
        assert pid is not None
        killer = threading.Timer(0.5, os.kill, (pid, signal.SIGKILL))
        killer.start()
        with pytest.raises(ExtractionError, match="stopped while reading"):
            worker.read(_png("never read"), "image/png")
        killer.join()
        worker._debug_sleep = 0.0
        assert "again" in worker.read(_png("alive again"), "image/png")[0].text
        assert worker.pid != pid


def test_time_and_memory_limits_end_the_child() -> None:
    slow = OcrWorker(limits=OcrLimits(seconds=0.2, page_grace_seconds=0.5))
    slow._debug_sleep = 30.0
    started = time.monotonic()
    with pytest.raises(ExtractionError, match="longer than 0.2 s"):
        slow.read(_png("too slow"), "image/png")
    assert time.monotonic() - started < 10
    assert slow.pid is None
    slow.close()
    # The engine alone needs far more than 64 MiB: the document is refused, not the app.
    small = OcrWorker(limits=OcrLimits(max_memory_bytes=64 * 1024 * 1024))
    small._debug_sleep = 2.0
    with pytest.raises(ExtractionError, match="more than 64 MiB"):
        small.read(_png("too big"), "image/png")
    small.close()


def test_cancel_stops_a_read_at_once() -> None:
    with OcrWorker() as worker:
        worker._debug_sleep = 30.0
        token = CancelToken()
        threading.Timer(0.5, token.cancel).start()
        started = time.monotonic()
        with pytest.raises(Cancelled):
            worker.read(_png("cancelled"), "image/png", cancel=token)
        assert time.monotonic() - started < 10
        assert worker.pid is None


def test_a_30000_page_pdf_is_stored_and_read_within_limits(tmp_path: Path) -> None:
    pdf = tmp_path / "30000 pages.pdf"
    pdf.write_bytes(_blank_pdf(30_000))
    with KnowledgeBase.open(tmp_path / "v.kvdb") as kb:
        report = kb.import_paths([pdf])
        assert not report.failed and len(report.imported) == 1
        assert kb.scans_pending() == 1
        assert kb.read_scans() == 1  # the first pages are read, the rest never decoded
        assert kb.scans_pending() == 0 and not kb.scan_failures()
        value_id = kb.rank_ids("pages", k=1, mode="lexical")[0][0]
        read = kb.scan_pages(value_id)
        assert 0 < len(read) <= OcrLimits().max_pages
        assert all(not page.words for page in read)  # blank pages: nothing invented


def test_blank_pages_and_wrapped_japanese_lines() -> None:
    assert is_blank(Image.new("RGB", (1240, 1754), "white"))
    assert not is_blank(Image.open(io.BytesIO(_png("x"))))
    assert (
        unwrap_cjk_lines("請求\n書の番号\nINV\n2024 日本\n語") == "請求書の番号\nINV\n2024 日本語"
    )


def test_a_transparent_or_16_bit_page_with_text_is_not_blank() -> None:
    text = Image.open(io.BytesIO(_png("black on clear"))).convert("L")
    clear = Image.new("RGBA", text.size, (0, 0, 0, 0))
    clear.putalpha(Image.eval(text, lambda v: 255 - v))
    assert not is_blank(clear)
    deep = Image.fromarray((np.asarray(text, dtype=np.uint16) * 40).astype(np.uint16))
    assert not is_blank(deep)
