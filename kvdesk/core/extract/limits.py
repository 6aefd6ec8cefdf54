"""The values every extraction module shares: what one file may cost and what it yields.

`Deadline` lives here rather than in `sandbox` because the format handlers check it, and
`sandbox` imports the handlers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from kvdesk.core.errors import ExtractionError


@dataclass(frozen=True)
class Limits:
    """Bounds on what one file may cost; hostile files hit these instead of exhausting us."""

    max_file_bytes: int = 256 * 1024 * 1024
    max_decompressed_bytes: int = 512 * 1024 * 1024
    max_seconds: float = 60.0
    max_text_chars: int = 20_000_000
    # JSONL records files are streamed; each line is also bounded by max_file_bytes.
    max_records_file_bytes: int = 16 * 1024 * 1024 * 1024


@dataclass(frozen=True)
class Extracted:
    """What the vault stores next to the original bytes."""

    media_type: str
    title: str
    text: str
    metadata: dict[str, object] = field(default_factory=dict)


class Deadline:
    """Cooperative time check between pages; the worker kill is the hard bound."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def check(self) -> None:
        if time.monotonic() > self.end:
            raise ExtractionError(f"took longer than {self.seconds:g} s")


def format_size(n: int) -> str:
    """A size in words, for reasons and limits: MiB for files, KiB or bytes for small limits."""
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MiB"
    if n >= 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n} bytes"


# What a format handler returns: (title, text, metadata).
Result = tuple[str, str, dict[str, object]]
