"""Exports handled by someone who wants them to lie or to hurt: a hostile `manifest.json` is
one clear line and exit 1, never a traceback; `evidence export` never writes through a
symbolic link planted in its destination."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import Result

from broker.export import Evidence, ExportError, export
from broker.export_chain import ChainStretch
from broker.export_format import MANIFEST, ChainEnd
from protocol.models import Event
from provisioning import certs
from tests.unit.export_fixtures import (
    PICTURES,
    Authority,
    authority,
    make_export,
    manifest,
    signed_events,
    store_with,
    verify_cli,
)


@pytest.fixture(scope="module")
def real() -> Authority:
    return authority()


@pytest.fixture(scope="module")
def genuine(real: Authority, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A genuine export's manifest, as a dict to damage."""
    return manifest(make_export(tmp_path_factory.mktemp("genuine") / "case", real))


def refused_in_one_line(result: Result) -> str:
    """The manifest was refused: exit 1, one line on stderr, no traceback; returns the line."""
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("jaga-collector: "), result.stderr
    assert result.stdout == ""
    return lines[0]


def at(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        target: Any = doc
        for key in path[:-1]:
            target = target[key]
        if value is KeyError:
            del target[path[-1]]
        else:
            target[path[-1]] = value

    return change


DAMAGE: dict[str, Callable[[dict[str, Any]], None] | bytes] = {
    "not json": b"this is not json",
    "empty": b"",
    "truncated": b'{"v": 1, "events": [',
    "not utf-8": b'{"v": 1, "events": "\xff\xfe"}',
    "a list": b"[1, 2, 3]",
    "nested deep": b"[" * 100_000 + b"]" * 100_000,
    "a huge number": b'{"v": 1' + b"0" * 50_000 + b"}",
    "NaN": b'{"v": NaN}',
    "v as text": at(("v",), "2"),
    "v 1": at(("v",), 1),
    "no event id": at(("event_id",), KeyError),
    "event id a path": at(("event_id",), "../../etc"),
    "site a number": at(("site",), 42),
    "device reserved": at(("device",), "alert"),
    "chain seq 2**70": at(("chain", "first_seq"), 2**70),
    "chain seq -1": at(("chain", "last_seq"), -1),
    "chain seq float": at(("chain", "last_seq"), 2.0),
    "chain end unknown": at(("chain", "ends_at"), "somewhere"),
    "chain extra field": at(("chain", "extra"), 1),
    "pictures a string": at(("pictures",), "x"),
    "picture sha short": at(("pictures", 0, "sha256"), "abc"),
    "picture custody huge int": at(("pictures", 0, "custody", 0), {"bytes": 10**30}),
    "picture custody nested": at(("pictures", 0, "custody", 0), {"ts": {"a": 1}}),
    "picture missing key": at(("pictures", 0, "custody"), KeyError),
    "unknown top-level key": at(("note",), "trust me"),
}


@pytest.mark.parametrize("name", sorted(DAMAGE))
def test_a_malformed_manifest_is_one_clear_line_and_exit_1(
    name: str, real: Authority, genuine: dict[str, Any], tmp_path: Path
) -> None:
    damage = DAMAGE[name]
    if isinstance(damage, bytes):
        data = damage
    else:
        doc = json.loads(json.dumps(genuine))
        doc["pictures"][0]["custody"] = [{"ts": 1}]
        damage(doc)
        data = json.dumps(doc).encode()
    (tmp_path / MANIFEST).write_bytes(data)
    line = refused_in_one_line(verify_cli(tmp_path, "--ca-fingerprint", real.fingerprint))
    assert str(tmp_path / MANIFEST) in line
    assert len(line) < 1000


def test_a_manifest_that_is_missing_a_link_a_fifo_or_too_big_is_refused(
    real: Authority, tmp_path: Path
) -> None:
    pin = ("--ca-fingerprint", real.fingerprint)
    assert "not found" in refused_in_one_line(verify_cli(tmp_path, *pin))
    outside = tmp_path.parent / f"{tmp_path.name}-outside.json"
    outside.write_text("{}")
    os.symlink(outside, tmp_path / MANIFEST)
    assert "symbolic link" in refused_in_one_line(verify_cli(tmp_path, *pin))
    (tmp_path / MANIFEST).unlink()
    os.mkfifo(tmp_path / MANIFEST)  # reading it would wait for a writer forever
    assert "not a regular file" in refused_in_one_line(verify_cli(tmp_path, *pin))
    (tmp_path / MANIFEST).unlink()
    with (tmp_path / MANIFEST).open("wb") as fh:
        fh.truncate(33 * 1024 * 1024)  # sparse: no disk used
    assert "larger than 32 MB" in refused_in_one_line(verify_cli(tmp_path, *pin))


def test_a_folder_that_is_not_there_is_a_usage_error(real: Authority, tmp_path: Path) -> None:
    result = verify_cli(tmp_path / "nope", "--ca-fingerprint", real.fingerprint)
    assert result.exit_code == 2 and "is not a folder" in result.stderr


FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(doc, dict):
        for key, value in doc.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            out += _paths(value, (*prefix, i))
    return out


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_value_anywhere_in_the_manifest_never_makes_a_traceback(
    data: st.DataObject, real: Authority, genuine: dict[str, Any]
) -> None:
    doc = json.loads(json.dumps(genuine))
    path = data.draw(st.sampled_from(_paths(doc)), label="where")
    at(path, data.draw(JSON, label="value"))(doc)
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / MANIFEST).write_text(json.dumps(doc))
        result = verify_cli(Path(folder), "--ca-fingerprint", real.fingerprint)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    assert result.exit_code == 1, result.output  # the pictures are not in this folder
    assert len(result.stderr.splitlines()) <= 1


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_bytes_as_manifest_are_refused_in_one_line(raw: bytes, real: Authority) -> None:
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / MANIFEST).write_bytes(raw)
        refused_in_one_line(verify_cli(Path(folder), "--ca-fingerprint", real.fingerprint))


# -- evidence export and its destination ---------------------------------------------------


def _export(real: Authority, tmp_path: Path, dest: Path) -> None:
    store = store_with(tmp_path / "store", PICTURES)
    events: tuple[Event, ...] = tuple(signed_events(real.unit_key, PICTURES))
    evidence = Evidence("door-1", events, ChainStretch(events, ChainEnd.GENESIS, ChainEnd.HEAD))
    try:
        export(evidence, store, certs.cert_pem(real.unit), certs.cert_pem(real.ca), dest)
    finally:
        store.close()


@pytest.mark.parametrize("planted", ["manifest", "picture"])
def test_export_never_writes_through_a_symbolic_link_planted_in_its_destination(
    planted: str, real: Authority, tmp_path: Path
) -> None:
    victim = tmp_path / "victim.conf"
    victim.write_text("do not touch\n")
    dest = tmp_path / "case-17"
    dest.mkdir()
    sha = signed_events(real.unit_key, PICTURES)[-1].snapshot_sha256 or ()
    name = MANIFEST if planted == "manifest" else f"{sha[0]}.jpg"
    os.symlink(victim, dest / name)
    with pytest.raises(ExportError, match="is not empty"):
        _export(real, tmp_path, dest)
    assert victim.read_text() == "do not touch\n"
    assert sorted(os.listdir(dest)) == [name]


def test_export_refuses_a_destination_that_is_a_symbolic_link(
    real: Authority, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, tmp_path / "case-17")
    with pytest.raises(ExportError, match="not a plain folder"):
        _export(real, tmp_path, tmp_path / "case-17")
    assert os.listdir(elsewhere) == []


def test_export_creates_every_file_new_even_if_a_link_appears_meanwhile(
    real: Authority, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The emptiness check and the writes are apart in time: a link made in between (a race)
    is still never followed, because every file is created with O_EXCL|O_NOFOLLOW."""
    victim = tmp_path / "victim.conf"
    victim.write_text("do not touch\n")
    dest = tmp_path / "case-17"
    import broker.export as module

    opened = module._Folder.open

    def open_then_plant(path: Path) -> module._Folder:
        folder = opened(path)
        os.symlink(victim, path / "verify.sh")
        return folder

    monkeypatch.setattr(module._Folder, "open", open_then_plant)
    with pytest.raises(ExportError, match="appeared while exporting"):
        _export(real, tmp_path, dest)
    assert victim.read_text() == "do not touch\n"


def test_export_into_a_new_folder_writes_plain_files_that_verify(
    real: Authority, tmp_path: Path
) -> None:
    dest = tmp_path / "usb" / "case-17"
    _export(real, tmp_path, dest)
    assert all(not p.is_symlink() for p in dest.rglob("*"))
    result = verify_cli(dest, "--ca-fingerprint", real.fingerprint)
    assert result.exit_code == 0, result.output
