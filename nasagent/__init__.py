"""The NAS side of nascloud: one outbound tunnel to the relay, local services exposed through it."""
