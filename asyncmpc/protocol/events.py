"""What a protocol state machine hands back to the runtime (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from asyncmpc.errors import RemoteProtocolError
from asyncmpc.wire.messages import Message

__all__ = ["Action", "Drop", "Send", "check_sender"]


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``msg`` to player ``to``."""

    to: str
    msg: Message


@dataclass(frozen=True, slots=True)
class Drop:
    """``player`` broke the protocol with a message handled while another's was (a share that
    waited for its round): tell it why and close its connection. Blame lands on the sender of
    the bad message, never on the player whose message happened to be handled."""

    player: str
    error: RemoteProtocolError


Action = Send | Drop


def check_sender(sender: str, role: str, msg: Message, session: str) -> None:
    """Refuse a message whose kind the sender's role may not send, or from another session.

    Raises RemoteProtocolError naming the sender, its role and the message kind.
    """
    if role not in type(msg).SENDERS:
        raise RemoteProtocolError(f"a {role} may not send {type(msg).KIND!r} messages", peer=sender)
    if msg.session != session:
        raise RemoteProtocolError(
            f"{type(msg).KIND!r} for session {msg.session!r}, this deployment is {session!r}", peer=sender
        )
