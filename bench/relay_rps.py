"""HTTP requests per second through the relay with wrk (keep-alive, small page), side by side:
direct to the NAS, `ssh -R` (default cipher and aes128-gcm), and relayd + nascloud-agent with
HTTPS passed through by SNI.

wrk sends the server name of its URL and cannot be pointed at another address, which SNI
routing needs: it runs in a private mount namespace whose /etc/hosts maps the NAS's relay name
to 127.0.0.1 (root, util-linux `unshare`). The NAS stand-in is a small asyncio HTTPS server.

Run: .venv/bin/python bench/relay_rps.py [--seconds 10] [--connections 32]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from bench._servers import free_port, process, wait_port, write_certificate
from bench.relay import relay_and_agent, sshd_reverse

NAME = "nas1.link.test"

PAGE_SERVER = """
import asyncio, ssl, sys
port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
body = b"<!doctype html><title>NAS</title><p>" + b"x" * 400 + b"</p>"
response = (b"HTTP/1.1 200 OK\\r\\nContent-Type: text/html\\r\\nContent-Length: "
            + str(len(body)).encode() + b"\\r\\n\\r\\n" + body)
class Page(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.buffer = transport, b""
    def data_received(self, data):
        self.buffer += data
        while (end := self.buffer.find(b"\\r\\n\\r\\n")) >= 0:
            self.buffer = self.buffer[end + 4:]
            self.transport.write(response)
async def main():
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = await asyncio.get_running_loop().create_server(
        Page, "127.0.0.1", port, ssl=context, backlog=512)
    print("ready", flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


def wrk(port: int, seconds: int, connections: int, hosts: Path) -> float:
    """Requests per second of wrk against https://NAME:port/ (NAME resolved by `hosts`)."""
    script = (
        f"mount --bind {hosts} /etc/hosts && exec wrk -t2 -c{connections} -d{seconds}s "
        f"https://{NAME}:{port}/"
    )
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    )
    match = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
    assert match, done.stdout + done.stderr
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", done.stdout)
    assert errors is None, done.stdout
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    missing = [p for p in ("wrk", "unshare", "ssh") if shutil.which(p) is None]
    if missing:
        sys.exit(f"missing {missing}: `make test` installs them")
    with tempfile.TemporaryDirectory(prefix="nascloud-rps-bench-") as tmp:
        work = Path(tmp)
        hosts = work / "hosts"
        hosts.write_text(f"127.0.0.1 localhost {NAME}\n")
        ca = write_certificate(work, "nas", NAME)
        page = free_port()
        rates: dict[str, float] = {}
        server = [sys.executable, "-c", PAGE_SERVER, str(page)]
        server += [str(work / "nas.crt"), str(work / "nas.key")]
        with process(server, None, work / "page.log", ready="ready"):
            wait_port(page)
            measure = (args.seconds, args.connections, hosts)
            rates["direct"] = wrk(page, *measure)
            for cipher in (None, "aes128-gcm@openssh.com"):
                with sshd_reverse(work, page, cipher, page) as (port, _):
                    rates[f"ssh -R ({cipher or 'default cipher'})"] = wrk(port, *measure)
            with relay_and_agent(work, ca, page, page) as port:
                rates["relayd + agent (SNI passthrough)"] = wrk(port, *measure)
    ours = rates["relayd + agent (SNI passthrough)"]
    print(
        f"wrk, {args.connections} keep-alive connections, {args.seconds} s, a 0.5 KB page "
        "over HTTPS\n"
    )
    for label, rate in rates.items():
        print(f"  {label:<36}{rate:>10,.0f} req/s   relayd/this {ours / rate:>5.2f}")
    best_ssh = max(v for k, v in rates.items() if k.startswith("ssh"))
    print(f"\n  relayd vs best ssh -R: {ours / best_ssh:.2f}x (target 1x)")


if __name__ == "__main__":
    main()
