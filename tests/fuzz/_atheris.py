"""The one way a fuzz target runs under atheris: instrument what is loaded, then fuzz.

Imported only by the targets' `main()`: replaying a corpus (tests/fuzz/test_replay.py) needs
no atheris, so `make test` works where it is not installed.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable


def fuzz(one_input: Callable[[bytes], None]) -> None:
    """Run libFuzzer over `one_input`, with the command line's options and corpus dirs."""
    atheris = importlib.import_module("atheris")
    # The targets imported the code under test already; instrument every function loaded
    # (ours, dnslib, dnspython, h11) so that coverage guides into the libraries' parsers too.
    atheris.instrument_all()
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
