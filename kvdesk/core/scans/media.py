"""The media types OCR reads.

Kept apart from the OCR code (``kvdesk.core.extract.ocr``) so that counting the scans waiting
for it, which a search in a fresh process does, imports no document extractor.
"""

from __future__ import annotations

PDF_TYPE = "application/pdf"
#: Image media types OCR reads, with the one Pillow decoder each may use.
IMAGE_FORMATS = {
    "image/png": "PNG",
    "image/jpeg": "JPEG",
    "image/tiff": "TIFF",
    "image/webp": "WEBP",
}
OCR_MEDIA_TYPES = frozenset(IMAGE_FORMATS) | {PDF_TYPE}
