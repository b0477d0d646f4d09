"""The one way a fuzz target runs under atheris: instrument our code and its parsers, then fuzz.

Imported only by the targets' `main()`: replaying a corpus (tests/fuzz/test_replay.py) needs
no atheris, so `make test` works where it is not installed.
"""

from __future__ import annotations

import gc
import importlib
import shlex
import sys
import time
import types
from collections.abc import Callable, Iterable

# What coverage should guide into: the project's packages, and the libraries that parse outside
# bytes for them. Not everything loaded (`atheris.instrument_all()`): the targets load pytest,
# hypothesis and trio too, and instrumenting all of it did not finish in 100 s; trio's
# scheduler would only add noise to the coverage.
PROJECT = (
    "config",
    "ddnsd",
    "httpapi",
    "nasagent",
    "nascloud",
    "portal",
    "protocol",
    "registry",
    "relayd",
    "service",
    "tunnel",
)
PARSERS = (
    "dnslib",
    "dns",
    "h11",
    "tomllib",
    "ipaddress",
    "urllib.parse",
    "base64",
    "webauthn",  # the passkey answers' parser and checks
    "cbor2",  # what webauthn reads attestation objects and keys with
)
INSTRUMENTED = PROJECT + PARSERS


def _covered(module: str, packages: Iterable[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def instrumentable(packages: Iterable[str] = INSTRUMENTED) -> list[types.FunctionType]:
    """Every function already loaded whose module is one of `packages` or inside one."""
    wanted = tuple(packages)
    return [
        obj
        for obj in gc.get_objects()
        if isinstance(obj, types.FunctionType)
        and isinstance(getattr(obj, "__module__", None), str)
        and _covered(obj.__module__, wanted)
    ]


def fuzz(one_input: Callable[[bytes], None]) -> None:
    """Run libFuzzer over `one_input`, with the command line's options and corpus dirs."""
    atheris = importlib.import_module("atheris")
    # The targets imported the code under test already (a replay needs it without atheris),
    # so `instrument_imports()` would come too late: patch the loaded functions in place.
    # Nested functions and lambdas are in their parent's code, which atheris patches too.
    start = time.monotonic()
    functions = instrumentable()
    for function in functions:
        atheris.instrument_func(function)
    print(
        f"INFO: instrumented {len(functions)} functions of {', '.join(INSTRUMENTED)}"
        f" in {time.monotonic() - start:.1f} s",
        file=sys.stderr,
    )
    # libFuzzer's -merge and -fork run argv[0] again through the shell; under `python -m` it is
    # the target's file, which is no program. Give it the command that runs this target.
    main = sys.modules["__main__"].__spec__
    if main is not None:
        sys.argv[0] = shlex.join([sys.executable, "-m", main.name])
    atheris.Setup(sys.argv, one_input)
    # Modules the inputs load later (dnspython loads one per record type) are patched as they
    # are imported. The hook takes top-level packages only: all of urllib, not only its parser.
    with atheris.instrument_imports(include=sorted({p.split(".")[0] for p in INSTRUMENTED})):
        atheris.Fuzz()
