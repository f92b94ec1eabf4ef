"""The provisioning directory is the registry: readable TOML per site and unit, keys beside them.

Layout (everything but ``*.key`` is fit for version control; ``ca init`` writes a .gitignore)::

    <root>/
      .gitignore                      *.key
      ca/ca.crt                       site CA certificate (what every party trusts)
      ca/ca.key                       CA private key, mode 0600: never leaves this folder
      ca/crl.pem                      revocation list; the broker refuses everyone once it expires
      ca/ca.toml                      CA name, next serial, CRL number and expiry (older
                                      registries also kept the issued log here; it moves)
      ca/issued.toml                  the log of every certificate issued, appended one [[issued]]
                                      table per certificate: serial, kind, subject, validity,
                                      revoked_at, reason
      sites/<site>.toml               id, name, timezone, broker host and port units dial
      devices/<site>/<device>/
        device.toml                   wiring (sensors), camera, pin factory, created,
                                      cert_serial (current), revoked_at/reason
        agent.toml                    the unit's config, generated and checked by AgentConfig
        device.crt                    current certificate
        certs/<serial>.crt            every certificate ever issued to the unit (old signatures)
        device.key                    only when made centrally (--generate-key), mode 0600
      identities/collector-<name>.crt|.key
      identities/operator-<name>.crt|.key
      identities/operator-<name>.toml sites the operator may read and command ("*": every site)
      identities/witness-<name>.crt|.key|.toml
                                      an independent witness's MQTT identity and the sites it
                                      reads (its signing key is its own, never made here)
      identities/witness-<name>.pub   the public half of that signing key, as the witness
                                      handed it over (evidence exports carry it)
      identities/revoked/<role>-<name>-<serial>.crt
                                      revoked identities' certificates (the CRL lists them)
      broker/server.crt|.key          the broker's TLS certificate (SANs = hosts units dial)
      broker/mosquitto.conf, acl, ca.crt, crl.pem
                                      broker-config output (default folder)

Serial numbers are decimal integers, counted up by the CA from 1.
"""

from __future__ import annotations

import fcntl
import os
import threading
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import tomli_w
from cryptography import x509
from pydantic import ValidationError

from protocol.ids import InvalidIdentifier, check_id
from provisioning.errors import ProvisioningError
from provisioning.files import replace
from provisioning.issued_log import append, revoked_count, stamp, table, whole_log
from provisioning.records import (
    CaLog,
    DeviceRecord,
    HomeAssistantRecord,
    IssuedLog,
    OperatorRecord,
    Record,
    ServiceRole,
    SiteRecord,
)

R = TypeVar("R", bound=Record)


class Registry:
    """Read and write the provisioning directory; the collector uses the read half."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._log_cache: tuple[tuple[tuple[int, int], ...], CaLog] | None = None
        self._log_saved: tuple[int, int] = (-1, -1)
        """(entries in ca/issued.toml, how many of all were revoked) as last read or written."""
        self._lock = threading.RLock()
        self._lock_depth = 0
        self._lock_fd: int | None = None

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the CA's file lock (ca/.lock): one issuer at a time across processes (the
        enrolment server and a technician's CLI), so serials and the log never collide.
        Re-entrant within this Registry object."""
        with self._lock:
            if self._lock_depth == 0:
                self.ca_dir.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.ca_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._lock_fd = fd
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
                if self._lock_depth == 0 and self._lock_fd is not None:
                    fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                    os.close(self._lock_fd)
                    self._lock_fd = None

    # paths
    @property
    def ca_dir(self) -> Path:
        return self.root / "ca"

    @property
    def ca_cert_path(self) -> Path:
        return self.ca_dir / "ca.crt"

    @property
    def ca_key_path(self) -> Path:
        return self.ca_dir / "ca.key"

    @property
    def crl_path(self) -> Path:
        return self.ca_dir / "crl.pem"

    @property
    def ca_log_path(self) -> Path:
        return self.ca_dir / "ca.toml"

    @property
    def broker_dir(self) -> Path:
        return self.root / "broker"

    def issuing_dir(self, generation: int) -> Path:
        """ca/issuing/<generation>/: ca.crt, ca.key (on the server), crl.pem."""
        return self.ca_dir / "issuing" / str(generation)

    def issuing_certificate(self, generation: int) -> x509.Certificate | None:
        """The issuing CA certificate of that generation; None when there is none."""
        path = self.issuing_dir(generation) / "ca.crt"
        return _load_cert(path) if path.exists() else None

    def issuing_generations(self) -> list[int]:
        """Every issuing CA generation made, oldest first."""
        return list(range(1, self.ca_log().issuing_generation + 1))

    def issuing_revoked(self, generation: int) -> bool:
        """True when the root has revoked that issuing CA generation."""
        return generation in self.ca_log().issuing_revoked

    def current_issuing(self) -> int | None:
        """The generation that signs units now (the newest); None: none made, the root signs."""
        generation = self.ca_log().issuing_generation
        return generation or None

    def unit_chain(self, cert: x509.Certificate) -> list[x509.Certificate]:
        """The issuing CA certificate a unit presents after its own ([] when the root signed)."""
        if cert.issuer == self.ca_certificate().subject:
            return []
        for generation in reversed(self.issuing_generations()):
            issuing = self.issuing_certificate(generation)
            if issuing is not None and issuing.subject == cert.issuer:
                return [issuing]
        return []

    def site_path(self, site: str) -> Path:
        return self.root / "sites" / f"{check_id(site, 'site')}.toml"

    def device_dir(self, site: str, device: str) -> Path:
        return self.root / "devices" / check_id(site, "site") / check_id(device, "device")

    def identity_path(self, role: ServiceRole, name: str, suffix: str) -> Path:
        check_id(name, f"{role} name", allow_reserved=True)
        return self.root / "identities" / f"{role}-{name}{suffix}"

    # read API
    def ca_certificate(self) -> x509.Certificate:
        """The site CA certificate; a clear error when `ca init` has not been run."""
        if not self.ca_cert_path.exists():
            raise ProvisioningError(
                f"no CA in {self.root}: run `jaga-provision ca init` first "
                "(or point --dir / JAGA_PROVISION_DIR at the provisioning folder)"
            )
        return _load_cert(self.ca_cert_path)

    @property
    def issued_log_path(self) -> Path:
        return self.ca_dir / "issued.toml"

    def ca_log(self) -> CaLog:
        """The CA's counters and issued-certificate log, read once per process while the files
        are unchanged: mutate the returned log only to save it (save_ca_log)."""
        self.ca_certificate()
        stamp = self._log_stamp()
        if self._log_cache is not None and self._log_cache[0] == stamp:
            return self._log_cache[1]
        head = self._read(self.ca_log_path, CaLog)
        # -1: the log is still inside ca.toml (older registries): the next save moves it.
        on_disk = 0 if not head.issued else -1
        if self.issued_log_path.exists():
            more = self._read(self.issued_log_path, IssuedLog).issued
            on_disk = len(more) if on_disk == 0 else -1
            head.issued = [*head.issued, *more]
        # Registries older than CaLog.issuing_revoked record a revoked issuing CA only in its
        # issued entry: carry it into the list every check reads, or it counts as live again.
        for entry in head.issued:
            gone = entry.kind == "issuing" and entry.revoked_at is not None
            generation = int(entry.name) if entry.name and entry.name.isdigit() else None
            if gone and generation is not None and generation not in head.issuing_revoked:
                head.issuing_revoked.append(generation)
        self._log_cache = (stamp, head)
        self._log_saved = (on_disk, revoked_count(head))
        return head

    def is_revoked(self, serial: int) -> bool:
        """True when the CA has revoked the certificate with this serial."""
        entry = self.ca_log().find(serial)
        return entry is not None and entry.revoked_at is not None

    def sites(self) -> list[SiteRecord]:
        folder = self.root / "sites"
        paths = sorted(folder.glob("*.toml")) if folder.is_dir() else []
        return [self._read(p, SiteRecord) for p in paths]

    def site(self, site: str) -> SiteRecord:
        """The site's record; a clear error for an unknown site."""
        path = self._site_path_checked(site)
        if not path.exists():
            known = ", ".join(s.id for s in self.sites()) or "none yet"
            raise ProvisioningError(
                f"unknown site {site!r} (registered: {known}); "
                "add it with `jaga-provision site add`"
            )
        return self._read(path, SiteRecord)

    def devices(self) -> list[tuple[str, str]]:
        """Every registered unit as (site, device), sorted."""
        base = self.root / "devices"
        if not base.is_dir():
            return []
        found = [(p.parent.parent.name, p.parent.name) for p in base.glob("*/*/device.toml")]
        return sorted(found)

    def device_site(self, device: str) -> str | None:
        """The site that registered this device id, if any (ids are unique registry-wide).

        One look per site, never a listing of every unit: adding a unit stays O(1) in units."""
        try:
            check_id(device, "device")
        except InvalidIdentifier:
            return None
        base = self.root / "devices"
        found = sorted(base.glob(f"*/{device}/device.toml")) if base.is_dir() else []
        return found[0].parent.parent.name if found else None

    def device(self, site: str, device: str) -> DeviceRecord:
        """The unit's record; a clear error when it is not registered (in this site)."""
        self.site(site)
        path = self._device_dir_checked(site, device) / "device.toml"
        if not path.exists():
            other = self.device_site(device)
            if other is not None:
                raise ProvisioningError(
                    f"device {device!r} is registered in site {other!r}, not in {site!r}"
                )
            raise ProvisioningError(
                f"unknown device {device!r} in site {site!r}; "
                "register it with `jaga-provision device add`"
            )
        return self._read(path, DeviceRecord)

    def device_certificate(self, site: str, device: str) -> x509.Certificate | None:
        """The unit's current certificate; None before one was issued (or for an unknown unit)."""
        path = self._device_dir_checked(site, device) / "device.crt"
        return _load_cert(path) if path.exists() else None

    def device_certificates(self, site: str, device: str) -> list[x509.Certificate]:
        """Every certificate issued to the unit, oldest first, to check old signatures too."""
        folder = self._device_dir_checked(site, device) / "certs"
        if not folder.is_dir():
            return []
        certs = [_load_cert(p) for p in folder.glob("*.crt")]
        return sorted(certs, key=lambda c: c.serial_number)

    def identities(self, role: ServiceRole) -> list[str]:
        """Names of the collector or operator identities that hold a certificate."""
        folder = self.root / "identities"
        if not folder.is_dir():
            return []
        prefix = f"{role}-"
        return sorted(p.stem.removeprefix(prefix) for p in folder.glob(f"{prefix}*.crt"))

    def operator_sites(self, name: str) -> tuple[str, ...]:
        """The sites an operator may act on; none when the identity names no site."""
        path = self.identity_path("operator", name, ".toml")
        if not path.exists():
            return ()
        return tuple(self._read(path, OperatorRecord).sites)

    def witness_sites(self, name: str) -> tuple[str, ...]:
        """The sites a witness reads; none when the identity names no site."""
        path = self.identity_path("witness", name, ".toml")
        if not path.exists():
            return ()
        return tuple(self._read(path, OperatorRecord).sites)

    def home_assistant_prefix(self, name: str) -> str:
        """The discovery prefix a Home Assistant identity was made for (default homeassistant)."""
        path = self.identity_path("home-assistant", name, ".toml")
        if not path.exists():
            return HomeAssistantRecord().prefix
        return self._read(path, HomeAssistantRecord).prefix

    def home_assistant_sites(self, name: str) -> tuple[str, ...]:
        """The sites a Home Assistant identity may see and command; every site (`*`) for one
        made before identities named their sites (#20), so current installs keep working."""
        path = self.identity_path("home-assistant", name, ".toml")
        sites = self._read(path, HomeAssistantRecord).sites if path.exists() else None
        return ("*",) if sites is None else tuple(sites)

    def save_home_assistant(self, name: str, prefix: str, sites: list[str]) -> Path:
        path = self.identity_path("home-assistant", name, ".toml")
        self._write(path, HomeAssistantRecord(prefix=prefix, sites=sites))
        return path

    def witness_public_key(self, name: str) -> bytes | None:
        """The witness's public key (PEM) as it handed it over; None when it has not."""
        path = self.identity_path("witness", name, ".pub")
        return path.read_bytes() if path.exists() else None

    def witness_public_keys(self) -> dict[str, bytes]:
        """Every witness's public key handed over, by name."""
        found = ((n, self.witness_public_key(n)) for n in self.identities("witness"))
        return {n: key for n, key in found if key is not None}

    def save_witness_sites(self, name: str, sites: list[str]) -> Path:
        path = self.identity_path("witness", name, ".toml")
        self._write(path, OperatorRecord(sites=sites))
        return path

    def identity_certificate(self, role: ServiceRole, name: str) -> x509.Certificate | None:
        """The identity's current certificate; None when it has none (never made, or revoked)."""
        path = self.identity_path(role, name, ".crt")
        return _load_cert(path) if path.exists() else None

    # writes
    def save_operator_sites(self, name: str, sites: list[str]) -> Path:
        path = self.identity_path("operator", name, ".toml")
        self._write(path, OperatorRecord(sites=sites))
        return path

    def save_site(self, record: SiteRecord) -> Path:
        path = self.site_path(record.id)
        self._write(path, record)
        return path

    def save_device(self, record: DeviceRecord) -> Path:
        path = self.device_dir(record.site, record.device) / "device.toml"
        data = record.model_dump(mode="python", exclude_none=True)
        data["sensors"] = [
            s.model_dump(mode="python", exclude_none=True, exclude_defaults=True)
            for s in record.sensors
        ]
        replace(path, tomli_w.dumps(_toml_ready(data)).encode())
        return path

    def save_ca_log(self, log: CaLog) -> None:
        """Counters into ca.toml; new entries appended to ca/issued.toml (O(1) per certificate);
        the whole issued log rewritten only when an entry changed (a revocation) or moved."""
        on_disk, revoked = self._log_saved
        entries = log.issued
        if on_disk == len(entries) - 1 and revoked == revoked_count(log) and entries:
            entry = entries[-1].model_dump(mode="python", exclude_none=True)
            append(self.issued_log_path, table(_toml_ready(entry)))
        elif on_disk != len(entries) or revoked != revoked_count(log):
            replace(self.issued_log_path, whole_log(entries))
        header = log.model_dump(mode="python", exclude_none=True, exclude={"issued"})
        replace(self.ca_log_path, tomli_w.dumps(_toml_ready(header)).encode())
        self._log_saved = (len(entries), revoked_count(log))
        self._log_cache = (self._log_stamp(), log)

    def _log_stamp(self) -> tuple[tuple[int, int], ...]:
        return stamp(self.ca_log_path, self.issued_log_path)

    def _write(self, path: Path, record: Record) -> None:
        data = record.model_dump(mode="python", exclude_none=True)
        replace(path, tomli_w.dumps(_toml_ready(data)).encode())

    def _read(self, path: Path, model: type[R]) -> R:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ProvisioningError(f"{path}: missing from the registry") from None
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ProvisioningError(f"{path}: cannot read: {exc}") from None
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"]) or "(top level)"
            msg = first["msg"].removeprefix("Value error, ")
            raise ProvisioningError(f"{path}: {where}: {msg}") from None

    def _site_path_checked(self, site: str) -> Path:
        try:
            return self.site_path(site)
        except InvalidIdentifier as exc:
            raise ProvisioningError(str(exc)) from None

    def _device_dir_checked(self, site: str, device: str) -> Path:
        try:
            return self.device_dir(site, device)
        except InvalidIdentifier as exc:
            raise ProvisioningError(str(exc)) from None


def _toml_ready(value: Any) -> Any:
    """Paths become strings; TOML has no null, so None-valued keys are dropped."""
    if isinstance(value, dict):
        return {k: _toml_ready(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_toml_ready(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _load_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ProvisioningError(f"{path}: not a readable PEM certificate: {exc}") from None
