"""The NAS side of nascloud: one outbound tunnel to the relay, local services exposed through it;
install mode while the NAS is not set up yet."""

from ._install import load_or_create_cloud_key

__all__ = ["load_or_create_cloud_key"]
