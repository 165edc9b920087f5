"""Why a player cannot listen, in one line a person can act on."""

from __future__ import annotations

import errno

from asyncmpc.config import Config, Player

__all__ = ["listen_error"]


def listen_error(config: Config, me: Player, exc: OSError) -> str:
    """One line on why ``me`` cannot listen, and what to do about it."""
    where = f"{me.listen_host}:{me.port}"
    key = f"[players.{me.name}] {'bind' if me.bind else 'host'} and port in {config.path}"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"cannot listen on {where}: the port is in use (is {me.name} running already? "
            f"`ss -ltnp 'sport = :{me.port}'` shows the process); stop that process or change {key}"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {where}: the address is not one of this host's; change {key}"
    if exc.errno == errno.EACCES:
        return (
            f"{me.name}: cannot listen on {where}: permission denied (ports below 1024 need privileges); change {key}"
        )
    return f"cannot listen on {where}: {exc.strerror or exc}; check {key}"
