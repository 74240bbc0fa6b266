"""The ``tileserver`` command: ``serve``, ``demo-data`` (and more subcommands)."""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

from tileserver.settings import SettingsError, load_settings


def _serve(args: argparse.Namespace) -> int:
    from gunicorn.app.base import BaseApplication  # noqa: PLC0415

    from tileserver.runtime import catalog_paths  # noqa: PLC0415
    from tileserver.web.app import create_app  # noqa: PLC0415

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port),
                                   ("workers", args.workers)) if v is not None}
    settings = load_settings(**overrides)
    loopback = settings.host in ("127.0.0.1", "localhost", "::1")
    if not loopback and not settings.allow_remote and not _has_users(settings):
        print(
            "refusing to listen on a non-loopback address in single-user mode; add users "
            "(tileserver users add) or set allow_remote: true in the configuration",
            file=sys.stderr,
        )
        return 2
    catalog_paths(settings)  # prepare the demo data before forking workers

    class App(BaseApplication):
        def load_config(self):
            self.cfg.set("bind", f"{settings.host}:{settings.port}")
            self.cfg.set("workers", settings.workers)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("threads", settings.threads)
            self.cfg.set("timeout", 300)
            self.cfg.set("graceful_timeout", 10)
            self.cfg.set("accesslog", "-")

        def load(self):
            app = create_app(settings)
            # collections read (and unreachable STAC APIs logged) at start-up, without
            # holding the worker's first requests that do not need them
            runtime = app.extensions["tileserver"]
            threading.Thread(target=lambda: runtime.catalog, name="catalog-load",
                             daemon=True).start()
            return app

    print(f"tileserver on http://{settings.host}:{settings.port}", file=sys.stderr)
    App().run()
    return 0


def _has_users(settings) -> bool:
    try:
        from tileserver.web.auth import configured_users  # noqa: PLC0415
    except ImportError:
        return False
    return bool(configured_users(settings)) or bool(settings.oidc_providers)


def _demo_data(args: argparse.Namespace) -> int:
    from tileserver.demo import write_demo_catalog  # noqa: PLC0415

    path = write_demo_catalog(Path(args.directory))
    print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (subcommands may be added by other modules)."""
    parser = argparse.ArgumentParser(prog="tileserver", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the production WSGI server (gunicorn)")
    serve.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default 8080)")
    serve.add_argument("--workers", type=int, default=None, help="worker processes")
    serve.set_defaults(func=_serve)
    demo = sub.add_parser("demo-data", help="write the synthetic demo STAC catalog and COGs")
    demo.add_argument("directory")
    demo.set_defaults(func=_demo_data)
    try:
        from tileserver.web.auth import add_cli  # noqa: PLC0415
    except ImportError:
        pass
    else:
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


if __name__ == "__main__":
    sys.exit(main())
