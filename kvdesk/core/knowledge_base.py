"""The one API the CLI and the GUI call: a vault plus the keys derived from it."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from kvdesk.core.extract import Limits
from kvdesk.core.importer import ImportReport, Importer
from kvdesk.core.paths import default_vault_path
from kvdesk.core.progress import CancelToken, ProgressSink, no_progress
from kvdesk.core.vault import Vault


class KnowledgeBase:
    """A vault and its key spaces. Open with :meth:`open`; close when done."""

    def __init__(self, vault: Vault) -> None:
        self.vault = vault

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None) -> KnowledgeBase:
        return cls(Vault.open(Path(path) if path is not None else default_vault_path()))

    @property
    def path(self) -> Path:
        return self.vault.path

    def close(self) -> None:
        self.vault.close()

    def __enter__(self) -> KnowledgeBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def import_paths(
        self,
        paths: Iterable[str | os.PathLike[str]],
        *,
        limits: Limits | None = None,
        progress: ProgressSink = no_progress,
        cancel: CancelToken | None = None,
    ) -> ImportReport:
        importer = Importer(self.vault, limits=limits, progress=progress, cancel=cancel)
        return importer.import_paths(paths)

    def import_records(
        self,
        records_file: str | os.PathLike[str],
        *,
        progress: ProgressSink = no_progress,
        cancel: CancelToken | None = None,
    ) -> ImportReport:
        importer = Importer(self.vault, progress=progress, cancel=cancel)
        return importer.import_records(records_file)
