"""Run the real command line in-process and capture what it prints on stdout."""

from __future__ import annotations

import io

from kvdesk.cli.main import main


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), out=out)
    return code, out.getvalue()
