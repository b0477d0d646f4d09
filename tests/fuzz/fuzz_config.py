"""Fuzz the config loader (`config.loads`) on random TOML, for each of the three models.

Contract: it returns a config or raises ConfigError whose every line names the source;
a config it returns is written back by `config.dumps` to TOML that loads to the same config.
"""

from __future__ import annotations

from pathlib import Path

from config import AgentConfig, ConfigError, DdnsdConfig, PortalConfig, RelaydConfig, dumps, loads

MODELS = (RelaydConfig, DdnsdConfig, AgentConfig, PortalConfig)
SOURCE = "fuzz.toml"
# Relative paths resolve here: "file" is a file and "state" a directory (seeds use them).
BASE_DIR = Path(__file__).parent / "config_root"


def one_input(data: bytes) -> None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return  # `config.load` refuses non-UTF-8 files before TOML parsing
    for model in MODELS:
        try:
            loaded = loads(model, text, SOURCE, BASE_DIR)
        except ConfigError as exc:
            lines = str(exc).splitlines()
            assert lines and all(line.startswith(SOURCE + ": ") for line in lines), lines
            continue
        assert isinstance(loaded, model)
        assert loads(model, dumps(loaded), SOURCE, BASE_DIR) == loaded, loaded


def main() -> None:
    from ._atheris import fuzz

    fuzz(one_input)


if __name__ == "__main__":
    main()
