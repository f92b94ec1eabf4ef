"""devstack.ports under pytest-xdist: each worker its own slice, no port handed out twice."""

from __future__ import annotations

import socket

import pytest

from devstack import ports


def test_without_workers_the_whole_range_is_shared(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)
    assert ports.share() == range(ports.LOW, ports.HIGH + 1)


def test_each_worker_has_its_own_slice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "3")
    slices = []
    for n in range(3):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", f"gw{n}")
        slices.append(set(ports.share()))
    assert all(len(s) > 4000 for s in slices)
    assert not slices[0] & slices[1] and not slices[0] & slices[2] and not slices[1] & slices[2]
    assert all(ports.LOW <= p <= ports.HIGH for s in slices for p in s)


def test_free_ports_come_from_the_workers_slice_and_never_repeat(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "4")
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw2")
    picked = [ports.free_port() for _ in range(500)]
    assert set(picked) <= set(ports.share())
    assert len(set(picked)) == len(picked)  # none offered twice before the slice wraps
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", picked[-1]))
