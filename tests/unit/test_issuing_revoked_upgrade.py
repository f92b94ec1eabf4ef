"""A registry whose issuing CA was revoked before the CA log kept a list of revoked
generations (its issued entry is marked revoked, the list absent) still counts it revoked:
the broker's CRLs, renewals, issuing and the revocation kick all ask Registry.issuing_revoked."""

from __future__ import annotations

import tomllib
from pathlib import Path

import tomli_w

from provisioning.kick import revoked_usernames
from provisioning.registry import Registry
from tests.support import provision


def test_an_issuing_ca_revoked_by_an_older_version_stays_revoked(tmp_path: Path) -> None:
    root = tmp_path / "reg"
    provision(root, "ca", "init", "--name", "Jaga CA Upgrade")
    provision(root, "issuing-ca", "create")
    provision(root, "site", "add", "s1", "--name", "s1", "--timezone", "Asia/Jakarta",
              "--broker-host", "127.0.0.1")  # fmt: skip
    provision(root, "device", "add", "s1", "u-1", "--door", "17:pintu", "--generate-key")
    provision(root, "issuing-ca", "revoke")
    assert Registry(root).issuing_revoked(1) and revoked_usernames(Registry(root)) == ["u-1"]
    # As an older version left it: no list of revoked generations in ca.toml.
    path = root / "ca" / "ca.toml"
    log = tomllib.loads(path.read_text())
    assert log.pop("issuing_revoked") == [1]
    path.write_text(tomli_w.dumps(log))
    older = Registry(root)
    assert older.issuing_revoked(1)
    assert revoked_usernames(older) == ["u-1"]  # its units are still cut
