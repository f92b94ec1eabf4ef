"""Shared fixtures: a provisioned registry (once per session) and a real stack per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.stack import DEMO_UNITS, Stack


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CA, site bangka-barat, the three demo units and the service identities."""
    root = tmp_path_factory.mktemp("site")
    Stack(root).provision_registry()
    return root / "registry"


@pytest.fixture
def stack(tmp_path: Path, registry: Path) -> Iterator[Stack]:
    """A fresh broker config, unit folders and collector folder; nothing started yet."""
    s = Stack(tmp_path, units=DEMO_UNITS, registry_dir=registry, heartbeat_s=2)
    s.configure_broker()
    try:
        yield s
    finally:
        s.stop_all()
