"""Scans and photos: OCR as a key source (text and word boxes per page), kept beside the
values it was read from and redone, never overwriting them, when the engine changes."""
