"""Config loading: the examples, and golden error messages that list every problem at once."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from config import (
    AgentConfig,
    ConfigError,
    DdnsdConfig,
    HostPort,
    PortalConfig,
    RelaydConfig,
    dumps,
    load,
    loads,
)
from config.agent import AgentSection, RelayLink

EXAMPLES = Path(__file__).resolve().parents[2] / "config" / "examples"
MODELS: dict[str, type] = {
    "relayd.toml": RelaydConfig,
    "ddnsd.toml": DdnsdConfig,
    "nascloud-agent.toml": AgentConfig,
    "nascloud-portal.toml": PortalConfig,
}


def problems(model: type, text: str, source: str, base_dir: Path | None = None) -> list[str]:
    """The problems `loads` reports for `text`; it must report some."""
    with pytest.raises(ConfigError) as info:
        loads(model, text, source, base_dir)
    return info.value.problems


def _example(name: str, tmp_path: Path) -> str:
    """An example file's text, its paths under /etc and /var pointed at real files in a
    temporary tree."""
    text = (EXAMPLES / name).read_text()
    for absolute in sorted(set(re.findall(r'"(/(?:etc|var)/[^"]+)"', text))):
        local = tmp_path / absolute.lstrip("/")
        local.parent.mkdir(parents=True, exist_ok=True)
        if "." in local.name:
            local.write_text("placeholder")
        text = text.replace(f'"{absolute}"', f'"{local}"')
    return text


@pytest.mark.parametrize("name", sorted(MODELS))
def test_examples_are_valid_once_their_files_exist(name: str, tmp_path: Path) -> None:
    loaded: object = loads(MODELS[name], _example(name, tmp_path), name, tmp_path)
    assert isinstance(loaded, MODELS[name])


def test_example_as_shipped_reports_only_its_missing_files() -> None:
    with pytest.raises(ConfigError) as info:
        load(RelaydConfig, EXAMPLES / "relayd.toml")
    assert info.value.problems
    for line in info.value.problems:
        assert "does not exist" in line or "nor its parent directory exists" in line, line


def test_every_problem_is_reported_at_once_golden(tmp_path: Path) -> None:
    (tmp_path / "relay.crt").write_text("x")
    text = """
[relay]
name = "Relay.Test"
log_level = "loud"
colour = "blue"

[tunnel]
listen = "7443"
cert_file = "relay.crt"
key_file = "missing.key"
keepalive_interval_s = true

[ingress]
https_listen = "0.0.0.0:99999"

[limits]
max_streams_per_tunnel = "many"
handshake_timeout_s = 0
max_tunels_per_address = 5
"""
    with pytest.raises(ConfigError) as info:
        loads(RelaydConfig, text, "relayd.toml", tmp_path)
    assert info.value.problems == [
        "relayd.toml: [relay].colour: unknown key",
        "relayd.toml: [relay].name: must be lower-case (try 'relay.test')",
        "relayd.toml: [relay].log_level: must be one of debug, info, warning, error",
        'relayd.toml: [tunnel].listen: expected "host:port", got \'7443\' (e.g. "127.0.0.1:7443")',
        f"relayd.toml: [tunnel].key_file: file {tmp_path / 'missing.key'} does not exist",
        "relayd.toml: [tunnel].keepalive_interval_s: expected a number, got a boolean True",
        "relayd.toml: [ingress].link_zone: missing (required)",
        "relayd.toml: [ingress].https_listen: port 99999 is out of range 0-65535",
        "relayd.toml: [limits].max_tunels_per_address: unknown key "
        "(did you mean 'max_tunnels_per_address'?)",
        "relayd.toml: [limits].handshake_timeout_s: must be between 0.1 and 300 s, got 0",
        "relayd.toml: [limits].max_streams_per_tunnel: expected an integer, got a string 'many'",
    ]
    assert str(info.value).count("\n") == len(info.value.problems) - 1


def test_valid_relayd_config_resolves_relative_paths(tmp_path: Path) -> None:
    for name in ("relay.crt", "relay.key"):
        (tmp_path / name).write_text("x")
    config = loads(
        RelaydConfig,
        """
        [relay]
        name = "relay.test"
        state_dir = "state"
        [tunnel]
        listen = "[::1]:7443"
        cert_file = "relay.crt"
        key_file = "relay.key"
        [ingress]
        link_zone = "link.test"
        """,
        "relayd.toml",
        tmp_path,
    )
    assert config.tunnel.listen == (HostPort("::1", 7443),)  # one address: a list of one
    assert str(config.tunnel.listen[0]) == "[::1]:7443"
    assert config.tunnel.cert_file == tmp_path / "relay.crt"
    assert config.relay.state_dir == tmp_path / "state"
    assert config.limits.max_streams_per_tunnel == 256  # defaults fill the absent table
    assert config.ddnsd is None


def test_cross_field_rules_name_both_keys(tmp_path: Path) -> None:
    for name in ("relay.crt", "relay.key"):
        (tmp_path / name).write_text("x")
    assert problems(
        RelaydConfig,
        """
        [relay]
        name = "relay.test"
        state_dir = "."
        [tunnel]
        listen = "127.0.0.1:1"
        cert_file = "relay.crt"
        key_file = "relay.key"
        keepalive_interval_s = 60
        keepalive_timeout_s = 30
        [ingress]
        link_zone = "link.test"
        """,
        "relayd.toml",
        tmp_path,
    ) == [
        "relayd.toml: (top level): [tunnel].keepalive_timeout_s must be longer than "
        "[tunnel].keepalive_interval_s"
    ]


def test_the_install_site_needs_files_or_acme_and_ddnsd(tmp_path: Path) -> None:
    for name in ("relay.crt", "relay.key"):
        (tmp_path / name).write_text("x")
    base = """
        [relay]
        name = "relay.test"
        state_dir = "."
        [tunnel]
        listen = "127.0.0.1:1"
        cert_file = "relay.crt"
        key_file = "relay.key"
        [ingress]
        link_zone = "link.test"
        """
    assert problems(RelaydConfig, base + "[install]\n", "relayd.toml", tmp_path) == [
        "relayd.toml: (top level): [install] needs cert_file and key_file, or [acme] and "
        "[ddnsd] so that relayd gets the site's certificate itself"
    ]
    half = base + '[install]\ncert_file = "relay.crt"\n'
    assert problems(RelaydConfig, half, "relayd.toml", tmp_path) == [
        "relayd.toml: (top level): [install] cert_file and key_file go together"
    ]
    acme = '[acme]\ndirectory_url = "https://ca.test/dir"\n'
    ddnsd = '[ddnsd]\naddress = "127.0.0.1:2"\nserver_name = "ddnsd.test"\nkey_file = "relay.key"\n'
    whole = loads(RelaydConfig, base + "[install]\n" + acme + ddnsd, "relayd.toml", tmp_path)
    assert whole.install is not None and whole.install.cert_file is None
    assert whole.acme is not None and whole.acme.directory_url == "https://ca.test/dir"


def test_agent_needs_a_way_to_trust_the_relay_and_valid_service_names() -> None:
    assert problems(
        AgentConfig,
        """
        [relay]
        addresses = ["relay.test:7443", 5]
        server_name = "relay.test"
        [services]
        web = "127.0.0.1:443"
        Admin = "127.0.0.1:8080"
        """,
        "agent.toml",
    ) == [
        'agent.toml: [relay].addresses[1]: expected "host:port", got an integer 5',
    ]
    assert problems(
        AgentConfig,
        """
        [relay]
        addresses = ["relay.test:7443"]
        server_name = "relay.test"
        """,
        "agent.toml",
    ) == [
        "agent.toml: [relay]: [relay] needs ca_file or pinned_sha256: the agent must know "
        "which relay to trust"
    ]


def test_agent_service_names_are_labels() -> None:
    assert problems(
        AgentConfig,
        """
        [relay]
        addresses = ["relay.test:7443"]
        server_name = "relay.test"
        pinned_sha256 = "%s"
        [services]
        Admin = "127.0.0.1:8080"
        """
        % ("ab" * 32),
        "agent.toml",
    ) == [
        "agent.toml: (top level): [services].Admin: the name 'Admin' must be lower-case "
        "(try 'admin')"
    ]


def test_ddnsd_listen_list_and_networks() -> None:
    assert problems(
        DdnsdConfig,
        """
        [zone]
        name = "dyn.test"
        primary_ns = "ns1.test"
        hostmaster = "hostmaster.test"
        relay_addresses = ["203.0.113.1", "not-an-ip"]
        [dns]
        listen = 53
        """,
        "ddnsd.toml",
    ) == [
        "ddnsd.toml: [zone].relay_addresses: 'not-an-ip' is not an IP address or network",
        "ddnsd.toml: [dns].listen: expected an array, got an integer 53",
    ]


def test_toml_syntax_errors_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        loads(RelaydConfig, "[relay\nname=", "broken.toml")
    [line] = info.value.problems
    assert line.startswith("broken.toml: not valid TOML: ")
    with pytest.raises(ConfigError) as info:
        load(RelaydConfig, tmp_path / "nope.toml")
    assert info.value.problems == [
        f"{tmp_path / 'nope.toml'}: cannot read: No such file or directory"
    ]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("host", 'expected "host:port"'),
        (":53", 'expected "host:port"'),
        ("::1:53", "write IPv6 addresses in brackets"),
        ("[::1:53", "unbalanced brackets"),
        ("a:-1", 'expected "host:port"'),
    ],
)
def test_hostport_errors(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        HostPort.parse(text)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_dumps_writes_what_loads_reads_back(name: str, tmp_path: Path) -> None:
    loaded: object = loads(MODELS[name], _example(name, tmp_path), name, tmp_path)
    written = dumps(loaded, "# written by a test\n")
    assert written.startswith("# written by a test\n")
    assert loads(MODELS[name], written, name, tmp_path) == loaded


def test_dumps_leaves_defaults_out_and_keeps_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("placeholder")
    config = AgentConfig(
        agent=AgentSection(key_file=Path("agent/device.key"), state_dir=Path("agent")),
        relay=RelayLink(
            addresses=(HostPort("127.0.0.1", 7443),),
            server_name="relay.test",
            ca_file=Path("ca.pem"),
        ),
    )
    written = dumps(config)
    assert 'key_file = "agent/device.key"' in written
    assert loads(AgentConfig, written, "agent.toml", tmp_path).relay.addresses == (
        HostPort("127.0.0.1", 7443),
    )
    assert "[reconnect]" not in written  # every value there is the default
    assert "keepalive" not in written


def test_a_listener_takes_one_address_or_a_list(tmp_path: Path) -> None:
    for name in ("relay.crt", "relay.key"):
        (tmp_path / name).write_text("placeholder")
    text = """
        [relay]
        name = "relay.test"
        state_dir = "state"
        [tunnel]
        listen = ["0.0.0.0:7443", "[::]:7443"]
        cert_file = "relay.crt"
        key_file = "relay.key"
        [ingress]
        link_zone = "link.test"
        https_listen = ["0.0.0.0:443", "[::]:443"]
        """
    config = loads(RelaydConfig, text, "relayd.toml", tmp_path)
    assert config.tunnel.listen == (HostPort("0.0.0.0", 7443), HostPort("::", 7443))
    assert config.ingress.https_listen == (HostPort("0.0.0.0", 443), HostPort("::", 443))
    assert config.ingress.http_listen == ()  # absent: off
    assert problems(
        RelaydConfig, text.replace('["0.0.0.0:7443", "[::]:7443"]', "[]"), "r.toml", tmp_path
    ) == ["r.toml: [tunnel].listen: needs at least one address"]
