"""The unit files: systemd-analyze verifies them and rates each one 2.0 or lower."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "systemd"
NAMES = ["relayd.service", "ddnsd.service", "nascloud-agent.service", "nascloud-portal.service"]


@pytest.fixture
def installed(tmp_path: Path) -> Path:
    """The units as installed with this build: ExecStart points at this virtual environment."""
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing: `make test` installs systemd")
    for name in NAMES:
        text = (
            (UNITS / name)
            .read_text()
            .replace("/opt/nascloud/bin", str(Path(sys.executable).parent))
        )
        (tmp_path / name).write_text(text)
    return tmp_path


def test_units_verify(installed: Path) -> None:
    done = subprocess.run(
        ["systemd-analyze", "verify", *(str(installed / n) for n in NAMES)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr


@pytest.mark.parametrize("name", NAMES)
def test_units_are_hardened(installed: Path, name: str) -> None:
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(installed / name)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    score = float(re.search(r"Overall exposure level for \S+: ([\d.]+)", done.stdout).group(1))  # type: ignore[union-attr]
    assert score <= 2.0, done.stdout


def test_units_declare_what_the_daemons_do() -> None:
    for name in NAMES:
        text = (UNITS / name).read_text()
        assert "Type=notify" in text and "WatchdogSec=" in text
        assert "ExecReload=/bin/kill -HUP $MAINPID" in text
        assert "NoNewPrivileges=yes" in text and "ProtectSystem=strict" in text
    # Only the daemons that bind low ports get a capability, and only that one.
    assert "CAP_NET_BIND_SERVICE" in (UNITS / "relayd.service").read_text()
    for name in ("nascloud-agent.service", "nascloud-portal.service"):
        assert "CapabilityBoundingSet=\n" in (UNITS / name).read_text()
