"""Operators' site commands (arm, disarm, ack, resolve) checked before the alert engine acts.

A command is carried out only when it is signed by an operator certificate from the site CA
that is the registry's current certificate for that operator (a revoked one has left the
registry), the operator's identity names the command's site, the signed body names this
site and this command, it is fresh (within SITE_WINDOW_NS of the collector's clock), its
nonce was never accepted before (kept on disk), and it did not come as a retained message
(the broker would hand that to every collector again at each (re)subscribe).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from broker.alerts.lifecycle import AlertError
from kernel.nonces import NonceBook, NonceBookUnavailable
from protocol.commands import SITE_WINDOW_NS, CommandRefused, SiteCommand, open_site_command
from protocol.ids import InvalidIdentifier
from provisioning.errors import ProvisioningError

if TYPE_CHECKING:
    from provisioning.registry import Registry

ALL_SITES = "*"


class SiteCommandRefused(AlertError):
    """A site command the collector will not carry out; the message says why (for the log)."""


class SiteCommandGate:
    """Verifies signed site commands against the site CA and the registry's operators."""

    def __init__(self, ca: x509.Certificate, registry_dir: Path, nonces: NonceBook) -> None:
        self.ca = ca
        self.registry_dir = registry_dir
        self.nonces = nonces

    @classmethod
    def at(cls, registry_dir: Path, data_dir: Path) -> SiteCommandGate:
        """The gate of a collector: the registry's CA and operators, nonces in data_dir."""
        ca = x509.load_pem_x509_certificate((registry_dir / "ca" / "ca.crt").read_bytes())
        book = NonceBook(data_dir / "site-commands.sqlite3", SITE_WINDOW_NS)
        return cls(ca, registry_dir, book)

    def open(
        self, site: str, name: str, payload: bytes, now_ns: int, *, retained: bool = False
    ) -> SiteCommand:
        """The command, once every check passes; SiteCommandRefused says which did not."""
        if retained:
            raise SiteCommandRefused(f"{name} for {site} came retained: commands are never kept")
        try:
            cmd, cert = open_site_command(payload, self.ca, now_ns)
        except CommandRefused as exc:
            raise SiteCommandRefused(f"{name} for {site}: {exc}") from None
        if (cmd.site, cmd.cmd) != (site, name):
            raise SiteCommandRefused(
                f"{cmd.by} signed {cmd.cmd} for {cmd.site}, but it came as {name} for {site}"
            )
        operator = cmd.operator
        if not self._current(operator, cert):
            raise SiteCommandRefused(
                f"{cmd.by}'s certificate is not its current one in the registry (revoked?)"
            )
        sites = self._sites(operator)
        if site not in sites and ALL_SITES not in sites:
            raise SiteCommandRefused(f"{cmd.by} may not command site {site}")
        try:
            admitted = self.nonces.admit(cmd.nonce, cmd.ts)
        except NonceBookUnavailable as exc:  # a full disk: refused, never carried out unrecorded
            raise SiteCommandRefused(f"{name} for {site} from {cmd.by} refused: {exc}") from None
        if not admitted:
            raise SiteCommandRefused(f"{name} for {site} from {cmd.by} was already carried out")
        return cmd

    def _current(self, operator: str, cert: x509.Certificate) -> bool:
        registry = _registry(self.registry_dir)
        try:
            current = registry.identity_certificate("operator", operator)
        except (ProvisioningError, InvalidIdentifier):
            return False
        der = cert.public_bytes(Encoding.DER)
        return current is not None and current.public_bytes(Encoding.DER) == der

    def _sites(self, operator: str) -> tuple[str, ...]:
        try:
            return _registry(self.registry_dir).operator_sites(operator)
        except (ProvisioningError, InvalidIdentifier):
            return ()


def _registry(root: Path) -> Registry:
    """The provisioning registry's reader: one source of truth for who may act where (imported
    here, as in broker/keys.py: the registry module reaches into agent/ for wiring types)."""
    from provisioning.registry import Registry

    return Registry(root)
