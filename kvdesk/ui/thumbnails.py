"""Small previews of image hits (scans, photos) for the result cards.

Decoded on the reader pool one at a time (a search shares that pool and must not wait behind
a page of photos), JPEGs at a fraction of their size (Pillow's draft mode), and kept per
value and version. Only the rows a card actually paints ask for one.
"""

from __future__ import annotations

import io
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QObject, QSize, Signal, Slot
from PySide6.QtGui import QImage, QPixmap

from kvdesk.ui.tasks import TaskRunner

log = logging.getLogger("kvdesk.ui.thumbnails")

THUMB_SIZE = QSize(96, 96)  # decoded at twice the card's room: sharp on a HiDPI screen
MAX_PIXELS = 100_000_000  # beyond this an image is not decoded for a preview (a bomb)
CACHE = 200
IMAGE_TYPES = ("image/png", "image/jpeg", "image/tiff", "image/webp")

Key = tuple[int, str]  # value id, updated_at (a new version is a new preview)


def thumbnail_image(data: bytes, size: QSize = THUMB_SIZE) -> QImage:
    """The first page of an image, upright and fitted into ``size`` (worker thread)."""
    from PIL import Image, ImageOps

    # Pillow checks its own pixel limit in open() (an error past twice the limit).
    with Image.open(io.BytesIO(data)) as img:
        if img.width * img.height > MAX_PIXELS:
            raise ValueError("image too large for a preview")
        img.draft("RGB", (size.width(), size.height()))  # JPEG: decoded at 1/2 to 1/8
        img.load()
        page = ImageOps.exif_transpose(img) or img
        if page.mode in ("RGBA", "LA", "PA", "P"):
            rgba = page.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            page = Image.alpha_composite(white, rgba)
        page = page.convert("RGB")
        page.thumbnail((size.width(), size.height()), Image.Resampling.LANCZOS)
    width, height = page.size
    raw = page.tobytes()
    return QImage(raw, width, height, 3 * width, QImage.Format.Format_RGB888).copy()


@dataclass(frozen=True)
class _Made:
    generation: int
    key: Key
    image: QImage | None


class Thumbnails(QObject):
    """Previews of image values, made on demand off the GUI thread.

    Signals:
        ready(int): the preview of this value id is ready (or failed: then it stays absent).
    """

    ready = Signal(int)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.runner: TaskRunner | None = None
        self._original: Callable[[int], bytes] | None = None
        self._cache: OrderedDict[Key, QPixmap | None] = OrderedDict()
        self._queue: list[Key] = []
        self._busy = False
        self._generation = 0

    def attach(self, runner: TaskRunner, original: Callable[[int], bytes]) -> None:
        """Previews of another vault: the cache and the queue start over."""
        self.runner = runner
        self._original = original
        self._generation += 1
        self._cache.clear()
        self._queue.clear()
        self._busy = False

    def get(self, value_id: int, version_stamp: str, media_type: str) -> QPixmap | None:
        """The preview when it is made; else None, and ``ready`` says when it is."""
        if media_type not in IMAGE_TYPES or self._original is None or self.runner is None:
            return None
        key = (value_id, version_stamp)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        if key not in self._queue:
            self._queue.append(key)
            self._next()
        return None

    def _next(self) -> None:
        if self._busy or not self._queue or self.runner is None or self._original is None:
            return
        key = self._queue.pop()  # the newest ask first: the rows on screen now
        original, generation = self._original, self._generation
        self._busy = True

        def make() -> _Made:
            try:
                return _Made(generation, key, thumbnail_image(original(key[0])))
            except Exception as exc:  # noqa: BLE001 - a damaged image simply has no preview
                log.info("no preview for value %s: %s", key[0], exc)
                return _Made(generation, key, None)

        task = self.runner.read("preview", lambda report, cancel: make())
        task.succeeded.connect(self._on_made)
        task.failed.connect(self._on_failed)

    @Slot(object)
    def _on_made(self, made: object) -> None:
        if not isinstance(made, _Made) or made.generation != self._generation:
            return
        self._busy = False
        pixmap = QPixmap.fromImage(made.image) if made.image is not None else None
        self._cache[made.key] = pixmap
        while len(self._cache) > CACHE:
            self._cache.popitem(last=False)
        if pixmap is not None:
            self.ready.emit(made.key[0])
        self._next()

    @Slot(str)
    def _on_failed(self, _message: str) -> None:
        self._busy = False  # cancelled (the vault closes) or the vault failed: no preview
        self._next()


__all__ = ["THUMB_SIZE", "Thumbnails", "thumbnail_image"]
