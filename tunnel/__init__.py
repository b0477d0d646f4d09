"""The Trio and OS binding of the protocol: a `protocol.Connection` over a Trio stream.

`open_tunnel` runs a tunnel; `Tunnel` and `TunnelStream` are its API; `join_streams` copies
two streams into each other; `splice_sockets` joins two sockets in the kernel; `TlsStream`
is the tunnels' TLS; `tunnel_ending` tells how a tunnel ended and `Backoff` when to dial again;
the key files of devices and services live here too. Knows nothing of relayd, ddnsd, the agent
or the registry.
"""

from ._backoff import Backoff
from ._ending import Ending, TunnelEnd, tunnel_ending
from ._join import join_streams
from ._keys import load_key, load_or_create_key, public_key_base64, write_secret_file
from ._open import Authenticator, open_tunnel
from ._splice import Splicer, splice_sockets
from ._stream import TunnelStream
from ._tls import TlsStream
from ._tunnel import Tunnel

__all__ = [
    "Authenticator",
    "Backoff",
    "Ending",
    "Splicer",
    "TlsStream",
    "Tunnel",
    "TunnelEnd",
    "TunnelStream",
    "join_streams",
    "load_key",
    "load_or_create_key",
    "open_tunnel",
    "public_key_base64",
    "splice_sockets",
    "tunnel_ending",
    "write_secret_file",
]
