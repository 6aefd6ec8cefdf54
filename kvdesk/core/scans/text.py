"""What OCR read, as text for keys: cheap to import (the key manager needs it on every open)."""

from __future__ import annotations

import re

#: One CJK character (ideographs, kana, CJK punctuation, full- and half-width forms).
CJK = re.compile(
    "[\u2e80-\u2fdf\u3000-\u303f\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    "\uf900-\ufaff\uff01-\uff60\uff66-\uff9f]"
)
_WRAPPED_CJK = re.compile(f"(?<={CJK.pattern})\\n(?={CJK.pattern})")


def unwrap_cjk_lines(text: str) -> str:
    """A line break between two CJK characters is layout, not a word boundary (Japanese wraps
    mid-word), so it is dropped for keys and the bigram across it is kept."""
    return _WRAPPED_CJK.sub("", text)
