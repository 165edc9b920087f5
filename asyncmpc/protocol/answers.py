"""The servers' answers at the model owner (pure): their form, and the cross-check of tagged
answers with the running total.

In a tagged answer from three servers, server j sends component j in full (``a``) and a
one-time Poly1305 tag of component j + 1 (``b_tag``) under the key the model owner gave it;
component j is checked once its vector (from server j) and its tag (from server j - 1) are
both in, and each vector is added to the running total as it comes, so the last answer costs
one check and one addition, not three.
"""

from __future__ import annotations

from asyncmpc.crypto.goldilocks import combine
from asyncmpc.crypto.prf import mac_ok
from asyncmpc.crypto.ring import RingArray
from asyncmpc.errors import RemoteProtocolError
from asyncmpc.protocol.authenticated import DIGEST_BYTES, MAC_SHAPE, mismatches
from asyncmpc.wire import messages as m

__all__ = ["MAC_BYTES", "CrossCheck", "Digests", "check_answer", "digests_of"]

MAC_BYTES = 16


def check_answer(sender: str, msg: m.ResultShare, shape: tuple[int, ...], *, mac: bool, full: bool) -> None:
    """Refuse a ``ResultShare`` of the wrong form for the round (RemoteProtocolError)."""
    if msg.a.shape != shape:
        raise RemoteProtocolError(f"result share of shape {msg.a.shape}, expected {shape}", peer=sender)
    if full and (msg.b is None or msg.b.shape != shape):
        raise RemoteProtocolError(f"result share without its second component of shape {shape}", peer=sender)
    if mac != (msg.ma is not None and msg.mb is not None):
        raise RemoteProtocolError(f"result share {'without' if mac else 'with'} MAC sums", peer=sender)
    for part in (msg.ma, msg.mb):
        if part is not None and (part.shape != MAC_SHAPE or int(part.min()) < 0):
            raise RemoteProtocolError("result share with MAC sums that are not one field element", peer=sender)
    if not full and (msg.b is not None or len(msg.b_tag) != MAC_BYTES):
        raise RemoteProtocolError(
            f"result share must carry a {MAC_BYTES}-byte tag of its second component", peer=sender
        )


def digests_of(sender: str, owners: tuple[str, ...], digests: tuple[bytes, ...]) -> dict[str, bytes]:
    """A MAC round's ``Holding`` or ``ResultShare``: owner -> its digest pair, checked for form."""
    if len(digests) != len(owners) or any(len(d) != 2 * DIGEST_BYTES for d in digests):
        raise RemoteProtocolError(
            f"a MAC round's answer needs one {2 * DIGEST_BYTES}-byte digest pair per owner", peer=sender
        )
    return dict(zip(owners, digests, strict=True))


class CrossCheck:
    """The tagged answers of one ask, from the three servers ``servers`` (in index order)."""

    def __init__(self, servers: tuple[str, ...], field: bool = False) -> None:
        self.servers = servers
        self.field = field
        """Components in F_q (a norm-checked round): their sum is centred."""
        self.checked: dict[int, bool] = {}
        """Component j -> whether server j's vector matched server j - 1's tag."""
        self._parts: dict[str, RingArray] = {}
        self._total: RingArray | None = None

    @property
    def total(self) -> RingArray | None:
        """The sum of the vectors absorbed so far (None: none yet), computed once per change."""
        if self._total is None and self._parts:
            self._total = combine(list(self._parts.values()), self.field)
        return self._total

    def absorb(self, results: dict[str, m.ResultShare], keys: dict[str, bytes]) -> None:
        """Check the components whose vector and tag are both in, and add new vectors to the
        running total."""
        for j, holder in enumerate(self.servers):
            tagger = self.servers[(j - 1) % 3]
            if j not in self.checked and holder in results and tagger in results:
                self.checked[j] = mac_ok(keys[tagger], results[holder].a, results[tagger].b_tag)
        for server, r in results.items():
            if server not in self._parts:
                self._parts[server] = r.a
                self._total = None

    @property
    def failed(self) -> list[int]:
        """The components whose vector and tag disagree."""
        return sorted(j for j, ok in self.checked.items() if not ok)

    @property
    def complete(self) -> bool:
        """Every component checked and every vector summed."""
        return len(self.checked) == len(self._parts) == 3


class Digests:
    """A MAC round's digest reports (``protocol.authenticated``): which owners' components
    their two holders saw differently, and the one owner a verdict can then blame."""

    def __init__(self, servers: tuple[str, ...]) -> None:
        self.servers = servers
        self.reports: dict[str, dict[str, bytes]] = {}
        self.mismatched: dict[str, tuple[int, ...]] = {}
        """Owner -> the components whose holders reported different digests."""

    def report(self, sender: str, owners: tuple[str, ...], digests: tuple[bytes, ...]) -> None:
        self.reports[sender] = digests_of(sender, owners, digests)

    def compare(self, asked: tuple[str, ...], contributors: tuple[str, ...]) -> None:
        """Compare what the servers ``asked`` report of ``contributors`` (such an owner stays
        in: ``mismatches``)."""
        reports = {s: d for s, d in self.reports.items() if s in asked}
        self.mismatched = mismatches(self.servers, reports, contributors)

    @property
    def inconsistent(self) -> tuple[str, ...]:
        return tuple(self.mismatched)

    @property
    def explained(self) -> frozenset[int]:
        """Components whose holders may disagree without either lying."""
        return frozenset(j for components in self.mismatched.values() for j in components)

    def culprit(self, disputed: tuple[int, ...]) -> str:
        """The owner to blame for components that no verdict could settle: the one owner
        whose mismatches cover them, if it is the only owner with mismatches ("" if none)."""
        owners = [o for o, comps in self.mismatched.items() if set(disputed) <= set(comps)]
        return owners[0] if len(owners) == 1 and len(self.mismatched) == 1 else ""
