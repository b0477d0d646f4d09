"""relayd's own certificate for its install site (`install.<link zone>` and
`*.install.<link zone>`), when `[install]` gives no files: obtained and renewed from the
`[acme]` CA with `certs`, the DNS-01 record asked of ddnsd through the service link (ddnsd
takes only that challenge under the reserved name), the site's TLS context replaced after
each issuance. The account and the files live in the state directory, `acme/`."""

from __future__ import annotations

import logging
from pathlib import Path

import protocol
from certs import Certificates, Wanted
from config.acme import AcmeCA

from ._ddns import DdnsLink
from ._install import InstallSite, site_context

__all__ = ["SiteCertificates"]

log = logging.getLogger("relayd.site_certs")

SITE: str = "install"  # the reserved name the site lives under in the link zone


class SiteCertificates:
    def __init__(self, config: AcmeCA, state_dir: Path, ddns: DdnsLink, site: InstallSite) -> None:
        self.ddns = ddns
        self.site = site
        files = state_dir / "acme"
        wanted = Wanted((site.host, f"*.{site.host}"), files / f"{SITE}.crt", files / f"{SITE}.key")
        self.certificates = Certificates(
            config, wanted, state_dir, self._set_challenge, reload=self._reload
        )
        if wanted.cert_file.exists():
            try:
                self.site.context = site_context(wanted.cert_file, wanted.key_file)
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                log.warning("the install site's certificate in %s is unusable: %s", files, exc)

    async def run(self) -> None:
        await self.certificates.run()

    async def _set_challenge(self, values: tuple[str, ...]) -> None:
        update = protocol.DdnsUpdate(0, SITE, protocol.ACME_PREFIX + SITE, "TXT", values)
        reply = await self.ddns.forward(update)
        if not isinstance(reply, protocol.Ack):
            detail = reply.message if isinstance(reply, protocol.Error) else reply
            raise RuntimeError(f"ddnsd refused the install site's challenge: {detail}")

    async def _reload(self) -> None:
        wanted = self.certificates.wanted
        self.site.context = site_context(wanted.cert_file, wanted.key_file)
        log.info("the install site serves its new certificate")
