"""``asyncmpc certs``: the deployment CA, and a key and certificate per player (``net.pki``).

- ``asyncmpc certs [FILE]``: on one host, the CA and every player's files in the file's
  ``[tls] dir`` (players added to the file later get theirs from the kept CA on the next run).
- ``asyncmpc certs ca``: the CA alone, on the host that will sign (keep ``ca.key`` offline).
- ``asyncmpc certs request --name NAME``: on a player's host, its key and a signing request.
- ``asyncmpc certs sign NAME.csr``: on the CA host, the certificate for a request.

Nothing is overwritten without ``--force``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from asyncmpc.cli.common import fail

if TYPE_CHECKING:
    from asyncmpc.config import Config

__all__ = ["add_arguments", "command", "ensure_certs"]

_ACTIONS = ("ca", "request", "sign")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = (
        "asyncmpc certs [FILE] [--dir DIR] [--days N] [--force | --if-missing]\n"
        "       asyncmpc certs ca [--dir DIR] [--days N] [--force]\n"
        "       asyncmpc certs request --name NAME [--dir DIR] [--force]\n"
        "       asyncmpc certs sign NAME.csr [--dir CA_DIR] [--out DIR] [--days N] [--force]"
    )
    parser.description = (
        "Create the deployment CA and a key and certificate per player on one host, or, for players run "
        "by separate organisations: the CA alone (ca), a player's key and signing request on its own "
        "host (request), and the CA host's certificate for a request (sign). Nothing is overwritten "
        "without --force."
    )
    parser.add_argument("words", nargs="*", metavar="ARG", help="FILE, or ca | request | sign [NAME.csr]")
    parser.add_argument("--config", default=None, help="deployment file (default: hosts.toml)")
    parser.add_argument("--dir", help="the TLS folder (default: the file's [tls] dir, else ./certs)")
    parser.add_argument("--name", help="request: the player this host runs")
    parser.add_argument("--out", help="sign: where to write NAME.pem (default: beside the request)")
    parser.add_argument("--days", type=int, default=None, help="how long certificates last (default: 365)")
    parser.add_argument(
        "--force", action="store_true", help="replace files that exist (a new CA cuts off every player)"
    )
    parser.add_argument(
        "--if-missing", action="store_true", help="write nothing, and succeed, when every file is there"
    )


def ensure_certs(config: Config, folder: str | Path) -> list[str]:
    """Make the deployment's missing TLS files in ``folder`` (a new CA if it has none); the
    names written, none when every file is there."""
    from asyncmpc.net.pki import make_certs

    names = ["ca", *config.players]
    wanted = [Path(folder) / f"{n}.pem" for n in names] + [Path(folder) / f"{n}.key" for n in config.players]
    if all(p.is_file() for p in wanted):
        return []
    return make_certs(config, folder)


def command(args: argparse.Namespace) -> int:
    from asyncmpc.errors import ConfigError
    from asyncmpc.net.pki import MAX_DAYS

    action = args.words[0] if args.words and args.words[0] in _ACTIONS else None
    rest = args.words[1:] if action else args.words
    try:
        if args.days is not None and not 1 <= args.days <= MAX_DAYS:
            raise ConfigError(f"--days: expected a whole number of days from 1 to {MAX_DAYS}, got {args.days}")
        if action == "sign":
            return _sign(args, rest)
        if len(rest) > 1 or (action and rest):
            raise ConfigError(f"unexpected argument {rest[-1]!r}")
        if action == "ca":
            return _ca(args)
        if action == "request":
            return _request(args)
        return _all(args, rest[0] if rest else None)
    except ConfigError as exc:
        return fail("certs", exc)
    except OSError as exc:
        return fail("certs", OSError(f"{exc.filename or args.dir}: cannot write: {exc.strerror or exc}"))


def _days(args: argparse.Namespace) -> int:
    from asyncmpc.net.pki import DAYS

    return int(args.days or DAYS)


def _config(args: argparse.Namespace, given: str | None, *, required: bool) -> Config | None:
    """The deployment file named, or hosts.toml if it is there; None when it is optional and absent."""
    from asyncmpc.config import load_config
    from asyncmpc.errors import ConfigError

    if given is not None and args.config is not None and given != args.config:
        raise ConfigError(f"two deployment files: {given} and --config {args.config}")
    path = given or args.config
    if path is None and not required and not Path("hosts.toml").is_file():
        return None
    return load_config(path or "hosts.toml")


def _folder(args: argparse.Namespace, config: Config | None) -> Path:
    return Path(args.dir or (config.tls_dir if config is not None and config.tls_dir else "certs"))


def _all(args: argparse.Namespace, given: str | None) -> int:
    from asyncmpc.errors import ConfigError
    from asyncmpc.net.pki import make_certs

    config = _config(args, given, required=True)
    assert config is not None
    if args.dir is None and config.tls_dir is None:
        raise ConfigError(f"{config.path}: [tls] dir: missing, and no --dir given")
    folder = _folder(args, config)
    if args.if_missing:
        written = ensure_certs(config, folder)
        if not written:
            return 0
    else:
        written = make_certs(config, folder, days=_days(args), force=args.force)
    players = [n for n in written if n != "ca"]
    what = ("a CA and " if "ca" in written else "") + f"{len(players)} player certificate(s)"
    print(f"wrote {what} to {folder}: {', '.join(written)}")
    if "ca" in written:
        print(f"keep {folder / 'ca.key'} offline: whoever holds it can add players")
    return 0


def _ca(args: argparse.Namespace) -> int:
    from asyncmpc.net.pki import make_ca

    config = _config(args, None, required=False)
    folder = _folder(args, config)
    title = config.session if config is not None else folder.resolve().name
    make_ca(folder, title, days=_days(args), force=args.force)
    print(f"wrote the deployment CA to {folder}: give ca.pem to every host; keep ca.key offline")
    return 0


def _request(args: argparse.Namespace) -> int:
    from asyncmpc.errors import ConfigError
    from asyncmpc.net.pki import make_request

    if not args.name:
        raise ConfigError("request needs --name: the player this host runs")
    config = _config(args, None, required=False)
    if config is not None and args.name not in config.players:
        raise ConfigError(f"--name: {args.name!r} is not a player in {config.path}")
    csr = make_request(_folder(args, config), args.name, force=args.force)
    print(f"wrote {csr.with_suffix('.key')} (stays on this host) and {csr}: send {csr.name} to the CA host")
    return 0


def _sign(args: argparse.Namespace, rest: list[str]) -> int:
    from asyncmpc.errors import ConfigError
    from asyncmpc.net.pki import sign_request

    if len(rest) != 1:
        raise ConfigError("sign needs one argument: the request file (NAME.csr)")
    if args.config is None and not Path("hosts.toml").is_file():
        raise ConfigError(
            "sign needs the deployment's hosts.toml (here, or --config FILE): a request must name one of its players"
        )
    config = _config(args, None, required=True)
    assert config is not None
    players = frozenset(config.players)
    cert = sign_request(
        _folder(args, config), rest[0], players=players, out=args.out, days=_days(args), force=args.force
    )
    print(f"wrote {cert}: send it, with ca.pem, back to the host that made the request")
    return 0
