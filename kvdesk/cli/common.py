"""What the command modules share: exit codes, the kind of each command, opening its vault.

Each command is registered with what it does to its vault (:class:`VaultUse`); that, and only
that, decides whether :func:`open_kb` may create a missing vault. Read and curation commands
never do: a mistyped ``--vault`` is "no vault at PATH" (exit 1), not a new empty vault.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol, TextIO

from kvdesk.cli.output import TerminalProgress
from kvdesk.core.errors import Cancelled

if TYPE_CHECKING:
    from kvdesk.core.knowledge_base import KnowledgeBase

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

Command = Callable[[argparse.Namespace, TextIO], int]


class UsageError(Exception):
    """Bad command-line use: exit 2."""


class VaultUse(StrEnum):
    """What a command does with ``--vault``: registered with the command, read by open_kb."""

    OPENS = "opens"  # read and curation commands: a missing vault is an error
    CREATES = "creates"  # commands that write values (import, the evaluations): created if missing
    OWN = "own"  # commands that handle the path themselves (doctor reports it, the app opens it)


_VAULT_USE = "vault_use"  # the argparse default that carries a command's VaultUse


def set_vault_use(parser: argparse.ArgumentParser, use: VaultUse) -> None:
    """Register ``use`` for the command ``parser`` parses (and its subcommands, unless set)."""
    parser.set_defaults(**{_VAULT_USE: use})


def vault_use(args: argparse.Namespace) -> VaultUse:
    """The parsed command's registered kind; an unregistered command never creates a vault."""
    return VaultUse(getattr(args, _VAULT_USE, VaultUse.OPENS))


class AddCommand(Protocol):
    """How command modules register a command (``register(add)`` in each of them)."""

    def __call__(
        self, name: str, func: Command, help_text: str, *, vault: VaultUse = VaultUse.OPENS
    ) -> argparse.ArgumentParser: ...


WRITER_PATIENCE_SECONDS = 600.0


def open_kb(
    args: argparse.Namespace, *, path: str | os.PathLike[str] | None = None
) -> KnowledgeBase:
    """The knowledge base of ``--vault`` (or of ``path``, an evaluation's scratch vault).

    Whether a missing vault is created is decided by the command's registered kind
    (:class:`VaultUse`), never by the call: only commands that write values create one; every
    other command says "no vault at PATH" and creates nothing (no file, no keys, no lock).
    """
    from kvdesk.core.knowledge_base import KnowledgeBase

    use = vault_use(args)
    if use is VaultUse.OWN:
        raise TypeError("a command registered with VaultUse.OWN opens its vault itself")
    kb = KnowledgeBase.open(
        path if path is not None else args.vault,
        create=use is VaultUse.CREATES,
        threads=getattr(args, "threads", None),
    )
    # A write from the command line waits its turn behind the app or another import.
    kb.wait_for_writers(WRITER_PATIENCE_SECONDS, lambda message: print(message, file=sys.stderr))
    return kb


@contextlib.contextmanager
def scratch_vault(path: str | None, prefix: str) -> Iterator[str]:
    """The vault an evaluation runs in: the one given, else a temporary one removed afterwards."""
    if path is not None:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield os.path.join(tmp, "eval.kvdb")


def complete_dense(kb: KnowledgeBase, quiet: bool) -> None:
    """Build the dense keys still missing, with progress on stderr (before a dense search)."""
    sink = TerminalProgress(quiet=quiet)
    try:
        kb.build_dense_keys(progress=sink)
    except KeyboardInterrupt:
        raise Cancelled("interrupted; the dense keys built so far are kept") from None
    finally:
        sink.close()
