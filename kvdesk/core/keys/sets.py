"""The key sets as the CLI and the GUI see them (``kb.key_sets``): list, build, switch, drop.

Writing keys as values change stays with the facade; this is the part a user manages.
"""

from __future__ import annotations

from pathlib import Path

from kvdesk.core.keys.manager import DenseStatus, KeyManager
from kvdesk.core.keys.store import KeySet
from kvdesk.core.progress import CancelToken, ProgressSink, no_progress


class KeySets:
    """The dense key sets of one vault."""

    def __init__(self, keys: KeyManager) -> None:
        self._keys = keys

    def list(self) -> list[KeySet]:
        return self._keys.key_sets()

    def active(self) -> KeySet | None:
        return self._keys.active_key_set()

    def status(self, key_set: KeySet | None = None) -> DenseStatus:
        """How many values ``key_set`` (default: the active one) has current keys for."""
        return self._keys.dense_status(key_set)

    def build(
        self, *, progress: ProgressSink = no_progress, cancel: CancelToken | None = None
    ) -> int:
        """Compute the missing dense keys of the active key set (resumable, cancellable)."""
        return self._keys.build_dense(progress=progress, cancel=cancel)

    def rekey(
        self,
        model: str | Path = "default",
        *,
        activate: bool = True,
        progress: ProgressSink = no_progress,
        cancel: CancelToken | None = None,
    ) -> KeySet:
        """Build (or complete) a dense key set for ``model``; switch to it unless told not to."""
        return self._keys.rekey(model, activate=activate, progress=progress, cancel=cancel)

    def activate(self, key_set_id: int) -> KeySet:
        """Atomically switch search to a complete key set (candidate or retired); no rebuild."""
        return self._keys.activate(key_set_id)

    def drop(self, key_set_id: int) -> int:
        """Delete a non-active key set's vectors; returns the number of passages removed."""
        return self._keys.drop(key_set_id)

    def passage_count(self, key_set: KeySet) -> int:
        return self._keys.passage_count(key_set)

    def provider(self) -> str | None:
        """The execution provider the active key set's model runs on (loads the model)."""
        key_set = self.active()
        if key_set is None:
            return None
        return self._keys.embedder_for(key_set).provider_info.provider
