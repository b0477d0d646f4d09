"""The console scripts as a user runs them: --help, --version, --check-config exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
EXAMPLES = Path(__file__).resolve().parents[2] / "config" / "examples"
SCRIPTS = ["relayd", "ddnsd", "nascloud-agent", "nascloud"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / args[0]), *args[1:]], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_and_version(script: str) -> None:
    helped = run(script, "--help")
    assert helped.returncode == 0
    assert helped.stdout.startswith(f"usage: {script}")
    versioned = run(script, "--version")
    assert versioned.returncode == 0
    assert versioned.stdout.strip() == f"{script} 0.1.0"


def test_check_config_accepts_a_valid_file_and_rejects_a_broken_one(tmp_path: Path) -> None:
    valid = run(
        "nascloud-agent", "--check-config", "--config", str(EXAMPLES / "nascloud-agent.toml")
    )
    assert valid.returncode == 0, valid.stderr
    assert "is valid" in valid.stdout

    broken = tmp_path / "agent.toml"
    broken.write_text('[relay]\naddresses = "x"\nserver_name = "R"\nbogus = 1\n')
    result = run("nascloud-agent", "--check-config", "--config", str(broken))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert f"{broken}: [relay].bogus: unknown key" in lines
    assert f"{broken}: [relay].addresses: expected an array, got a string 'x'" in lines
    assert f"{broken}: [relay].server_name: must be lower-case (try 'r')" in lines
    assert lines[-1] == f"nascloud-agent: 3 problem(s) in {broken}"


@pytest.mark.parametrize("script", ["relayd", "ddnsd"])
def test_check_config_on_a_missing_file_says_so(script: str, tmp_path: Path) -> None:
    result = run(script, "--check-config", "--config", str(tmp_path / "none.toml"))
    assert result.returncode == 1
    assert "cannot read: No such file or directory" in result.stderr


def test_nascloud_run_prepares_the_state_directory(tmp_path: Path) -> None:
    state = tmp_path / "var"
    result = run("nascloud", "run", "--state-dir", str(state))
    assert result.returncode == 0, result.stderr
    assert (state / "registry.sqlite3").is_file()
    from registry import MIGRATIONS

    assert f"schema version {len(MIGRATIONS)}" in result.stdout
