"""What every daemon shares at run time, and nothing of any one daemon.

- `daemon_main`: the command line (--config, --check-config), logging, then Trio;
  `config_reloader`: SIGHUP's reload of the config file.
- systemd: `until_stopped` (READY, the watchdog, SIGHUP, SIGTERM), `notify`, `listen_fds`.
- the operational log filter (`mask_text`, `MaskingFilter`): privacy rule 2 on every line.
- `Listening`: bind, serve and report listeners (`listening.json`); `server_tls_context`;
  `Accepting` and `drain`: stop accepting, then let what is in progress finish.
- `Boundary`, `serve_contained`: one unit of work's failure stays its own, logged once and
  counted (`nascloud_handler_errors_total`).
- `SlidingWindow`: per-key rate limits (lookups, cloud keys, DynDNS2 updates).
"""

from ._boundary import Boundary, Handler, LogBudget, serve_contained
from ._listen import (
    Accepting,
    Listening,
    Serve,
    bound_address,
    drain,
    port_of,
    server_tls_context,
)
from ._main import (
    EXIT_REGISTRY_GONE,
    config_reloader,
    daemon_main,
    end_when_gone,
    exit_for_gone,
    package_version,
)
from ._oplog import MaskingFilter, mask_text, own
from ._oplog import setup as setup_logging
from ._ratelimit import SlidingWindow
from ._systemd import (
    listen_fds,
    notify,
    reloading,
    run_watchdog,
    until_stopped,
    watchdog_interval_s,
)

__all__ = [
    "EXIT_REGISTRY_GONE",
    "Accepting",
    "Boundary",
    "Handler",
    "Listening",
    "LogBudget",
    "MaskingFilter",
    "Serve",
    "SlidingWindow",
    "bound_address",
    "config_reloader",
    "daemon_main",
    "drain",
    "end_when_gone",
    "exit_for_gone",
    "listen_fds",
    "mask_text",
    "notify",
    "own",
    "package_version",
    "port_of",
    "reloading",
    "run_watchdog",
    "serve_contained",
    "server_tls_context",
    "setup_logging",
    "until_stopped",
    "watchdog_interval_s",
]
