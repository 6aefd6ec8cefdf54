"""Argument types shared by the command-line modules (argparse turns their errors into exit 2)."""

from __future__ import annotations

import argparse
import re


def positive_int(text: str) -> int:
    """A whole number of at least 1 (``-k 0`` or ``-k -3`` is a usage error, not a slice)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", re.I)
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """``200M``, ``1G``, ``1.5GiB``, ``4096`` (bytes): binary units, as the import report shows."""
    match = _SIZE.fullmatch(text)
    if match is None:
        raise argparse.ArgumentTypeError(
            f"invalid size {text!r} (use a number with an optional K, M, G or T, e.g. 200M)"
        )
    size = int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])
    if size <= 0:
        raise argparse.ArgumentTypeError(f"invalid size {text!r} (must be more than 0 bytes)")
    return size
