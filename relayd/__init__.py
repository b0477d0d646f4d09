"""The nascloud relay: NAS tunnels in, browsers through to them, HTTPS passed through by SNI."""
