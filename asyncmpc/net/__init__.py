"""Asyncio connections, handshake, dialling with retry, uvloop."""

from asyncmpc.net.peer import Connection
from asyncmpc.net.runtime import Event, Node, dial_targets, may_dial, run

__all__ = ["Connection", "Event", "Node", "dial_targets", "may_dial", "run"]
