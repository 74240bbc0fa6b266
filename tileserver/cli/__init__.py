"""The ``tileserver`` command: ``serve``, ``demo-data``, ``jobs``, ``services``, ``doctor``
and ``users``."""

from __future__ import annotations

import argparse
import sys

from tileserver.cli import admin, doctor
from tileserver.cli.serve import serve
from tileserver.settings import SettingsError
from tileserver.web.auth import add_cli


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (subcommands may be added by other modules)."""
    parser = argparse.ArgumentParser(prog="tileserver", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    parser_serve = sub.add_parser("serve", help="run the production WSGI server (gunicorn)")
    parser_serve.add_argument("--host", default=None,
                              help="address to bind (default: the host setting, TILESERVER_HOST)")
    parser_serve.add_argument("--port", type=int, default=None,
                              help="port (default: the port setting, TILESERVER_PORT)")
    parser_serve.add_argument("--workers", type=int, default=None,
                              help="worker processes (default: the workers setting)")
    parser_serve.set_defaults(func=serve)
    admin.add_commands(sub)
    doctor.add_commands(sub)
    add_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SettingsError as exc:
        print(f"tileserver: {exc}", file=sys.stderr)
        return 2
