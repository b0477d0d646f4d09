"""The operator's command line, `nascloud`: accounts, devices, tokens, logs, and `run`."""
