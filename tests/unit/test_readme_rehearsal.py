"""`make rehearse` runs the README's Pi and server sections: their blocks must stay placed."""

from __future__ import annotations

import pytest

from devstack.rehearse import (
    PI_SECTION,
    README,
    SERVER_SECTION,
    Block,
    RehearsalFailed,
    only_the_clock_failed,
    section_blocks,
)


def test_the_pi_section_is_one_laptop_block_then_one_install_on_the_pi() -> None:
    blocks = section_blocks(README.read_text(), PI_SECTION)
    assert [b.where for b in blocks] == ["laptop", "pi"]
    laptop, install = blocks
    assert "jaga-provision device add" in laptop.text and "--bundle" in laptop.text
    assert "scp " in laptop.text
    assert "device sign" not in README.read_text().split(PI_SECTION[0])[1].split(PI_SECTION[1])[0]
    assert install.text.strip().splitlines()[-1].startswith("sudo jaga/scripts/install-agent.sh")


def test_the_server_section_is_a_laptop_block_then_a_server_block_unindented() -> None:
    laptop, server = section_blocks(README.read_text(), SERVER_SECTION)
    assert (laptop.where, server.where) == ("laptop", "server")
    assert "jaga-provision broker-config" in laptop.text
    assert server.text.splitlines()[-1].startswith("sudo jaga/scripts/install-server.sh")
    assert not any(line.startswith(" ") for line in server.text.splitlines())


def test_a_block_whose_paragraph_names_no_machine_is_refused() -> None:
    readme = (
        "### A unit on a Raspberry Pi\n\nOn the laptop:\n\n```sh\nls\n```\n\n"
        "Somewhere else:\n\n```sh\nrm -rf /\n```\n\n### The central server\n"
    )
    with pytest.raises(RehearsalFailed, match="cannot tell where"):
        section_blocks(readme, PI_SECTION)


def test_only_sh_blocks_are_run() -> None:
    readme = (
        "### A unit on a Raspberry Pi\n\nOn the Pi:\n\n```sh\nuptime\n```\n\n"
        "On the laptop, the config:\n\n```toml\nx = 1\n```\n\n### The central server\n"
    )
    assert section_blocks(readme, PI_SECTION) == [Block("pi", "uptime\n")]


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ("PASS  key  ok\nFAIL  clock               NOT synchronised (NTP?)\n", True),
        ("FAIL  clock  NOT synchronised\nFAIL  broker  refused\n", False),
        ("PASS  clock  synchronised\n", False),  # the script failed for another reason
        ("", False),
    ],
)
def test_the_selftest_may_fail_on_the_clock_alone(table: str, expected: bool) -> None:
    assert only_the_clock_failed(table) is expected
