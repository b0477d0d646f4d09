"""The nascloud DNS server: authoritative for the device zone, updated by DynDNS2,
RFC 2136 and the relay."""
