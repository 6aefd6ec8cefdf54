"""``kvdesk team``: a team vault on PostgreSQL (create, join, grant, sync, status)."""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from kvdesk.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    AddCommand,
    Command,
    VaultUse,
    open_kb,
    set_vault_use,
)
from kvdesk.cli.output import print_json, terminal_safe
from kvdesk.core.errors import KvdeskError


def cmd_team_create(args: argparse.Namespace, out: TextIO) -> int:
    from kvdesk.core.team.desk import create_team

    created = create_team(args.url)
    server = terminal_safe(created.server)
    if args.json:
        print_json(created.to_json(), out)
    elif created.applied:
        out.write(
            f"team vault ready at {server}: schema {created.applied[0]}..{created.applied[-1]}"
            " applied; you are its admin (next: kvdesk team grant USER ROLE)\n"
        )
    else:
        out.write(f"team vault at {server} is up to date (schema {created.schema_version})\n")
    return EXIT_OK


def cmd_team_join(args: argparse.Namespace, out: TextIO) -> int:
    with open_kb(args) as kb:
        report = kb.join_team(args.url)
        desk = kb.team
        assert desk is not None
        count = kb.values.count()
        data: dict[str, Any] = {
            **report.to_json(),
            "server": desk.status().server,
            "user": desk.user(),
            "role": desk.role(),
            "values": count,
        }
    if args.json:
        print_json(data, out)
    else:
        out.write(
            f"this desk ({terminal_safe(str(kb.path))}) joined {terminal_safe(data['server'])}"
            f" as {terminal_safe(data['user'])} ({data['role'] or 'no role yet'}):"
            f" {count} documents, searchable now; dense keys follow (kvdesk keys build)\n"
        )
    return EXIT_OK


def cmd_team_grant(args: argparse.Namespace, out: TextIO) -> int:
    with open_kb(args) as kb:
        desk = _desk(kb)
        desk.grant(args.user, args.role)
    out.write(f"{terminal_safe(args.user)} is now a team {args.role}\n")
    return EXIT_OK


def cmd_team_sync(args: argparse.Namespace, out: TextIO) -> int:
    with open_kb(args) as kb:
        _desk(kb)
        report = kb.sync_team()
    if args.json:
        print_json(report.to_json(), out)
    else:
        out.write(
            f"synced: {report.pulled} changes applied, {report.pushed} pilot sessions delivered,"
            f" at change {report.last_seq}\n"
        )
    return EXIT_OK


def cmd_team_status(args: argparse.Namespace, out: TextIO) -> int:
    with open_kb(args) as kb:
        status = _desk(kb).status()
    if args.json:
        print_json(status.to_json(), out)
        return EXIT_OK
    state = "online" if status.online else f"offline since {status.offline_since or '?'}"
    out.write(
        f"server   {terminal_safe(status.server)} ({state})\n"
        f"user     {terminal_safe(status.user or '?')} ({status.role or 'no role'})\n"
        f"change   {status.last_seq} applied; last reached {status.synced_at or 'never'}\n"
        f"pending  {status.pending} pilot sessions to deliver\n"
    )
    if status.reason:
        out.write(f"         {terminal_safe(status.reason)}\n")
    return EXIT_OK if status.online else EXIT_FAILURE


def _desk(kb: Any) -> Any:
    if kb.team is None:
        raise KvdeskError(
            f"{kb.path} is not a desk of a team; join one first: kvdesk --vault PATH team join URL"
        )
    return kb.team


def register(add: AddCommand) -> None:
    vault = argparse.ArgumentParser(add_help=False)
    vault.add_argument("--vault", metavar="PATH", default=argparse.SUPPRESS, help="vault file")
    team = add("team", cmd_team_status, "a team vault on PostgreSQL: create, join, grant, sync")
    sub = team.add_subparsers(
        dest="team_command", metavar="ACTION", required=True, parser_class=type(team)
    )

    def action(name: str, func: Command, help_text: str, use: VaultUse) -> Any:
        p = sub.add_parser(name, help=help_text, description=help_text, parents=[vault])
        p.set_defaults(func=func)
        set_vault_use(p, use)
        return p

    p = action(
        "create",
        cmd_team_create,
        "create or upgrade the team schema in an existing PostgreSQL database",
        VaultUse.OWN,
    )
    p.add_argument("url", metavar="URL", help="postgresql://USER@HOST/DB (password: PGPASSWORD,"
                   " ~/.pgpass or a service file)")  # fmt: skip
    p.add_argument("--json", action="store_true")
    p = action(
        "join",
        cmd_team_join,
        "make this vault a desk: a replica of the team vault with its own keys",
        VaultUse.CREATES,
    )
    p.add_argument("url", metavar="URL")
    p.add_argument("--json", action="store_true")
    p = action(
        "grant", cmd_team_grant, "give a server user a team role (admins only)", VaultUse.OPENS
    )
    p.add_argument("user", metavar="USER")
    p.add_argument("role", choices=("reader", "curator", "admin"))
    p = action(
        "sync", cmd_team_sync, "deliver pilot sessions and apply the team's changes",
        VaultUse.OPENS,
    )  # fmt: skip
    p.add_argument("--json", action="store_true")
    p = action(
        "status", cmd_team_status, "server, user, role, online, last change, pending",
        VaultUse.OPENS,
    )  # fmt: skip
    p.add_argument("--json", action="store_true")
