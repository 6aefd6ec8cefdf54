"""The command line: a thin layer over the facade (``kvdesk.core.knowledge_base``)."""

from kvdesk.cli.main import main

__all__ = ["main"]
