"""The Trio and OS binding of the protocol: a `protocol.Connection` over a Trio stream.

`open_tunnel` runs a tunnel; `Tunnel` and `TunnelStream` are its API; `join_streams` copies
two streams into each other; `splice_sockets` joins two sockets in the kernel; `TlsStream`
is the tunnels' TLS; the key files of devices and services live here too. Knows nothing of
relayd, ddnsd, the agent or the registry.
"""

from ._join import join_streams
from ._keys import load_key, load_or_create_key, public_key_base64, write_secret_file
from ._splice import Splicer, splice_sockets
from ._stream import TunnelStream
from ._tls import TlsStream
from ._tunnel import Authenticator, Tunnel, open_tunnel

__all__ = [
    "Authenticator",
    "Splicer",
    "TlsStream",
    "Tunnel",
    "TunnelStream",
    "join_streams",
    "load_key",
    "load_or_create_key",
    "open_tunnel",
    "public_key_base64",
    "splice_sockets",
    "write_secret_file",
]
