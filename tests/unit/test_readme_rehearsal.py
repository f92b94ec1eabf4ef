"""The README's Pi section is what `make rehearse-pi` runs: its blocks must stay where they run."""

from __future__ import annotations

import pytest

from devstack.rehearse_pi import README, Block, RehearsalFailed, pi_section_blocks


def test_the_pi_section_alternates_laptop_and_pi_in_the_order_a_technician_follows() -> None:
    blocks = pi_section_blocks(README.read_text())
    assert [b.where for b in blocks] == ["laptop", "pi", "laptop", "pi"]
    laptop, first, sign, second = blocks
    assert "jaga-provision bundle" in laptop.text and "scp " in laptop.text
    assert "scripts/install-agent.sh" in first.text
    assert "jaga-provision device sign" in sign.text
    assert second.text.strip() == first.text.strip().splitlines()[-1]


def test_a_block_whose_paragraph_names_no_machine_is_refused() -> None:
    readme = (
        "### A unit on a Raspberry Pi\n\nOn the laptop:\n\n```sh\nls\n```\n\n"
        "Somewhere else:\n\n```sh\nrm -rf /\n```\n\n### The central server\n"
    )
    with pytest.raises(RehearsalFailed, match="cannot tell where"):
        pi_section_blocks(readme)


def test_only_sh_blocks_are_run() -> None:
    readme = (
        "### A unit on a Raspberry Pi\n\nOn the Pi:\n\n```sh\nuptime\n```\n\n"
        "On the laptop, the config:\n\n```toml\nx = 1\n```\n\n### The central server\n"
    )
    assert pi_section_blocks(readme) == [Block("pi", "uptime\n")]
