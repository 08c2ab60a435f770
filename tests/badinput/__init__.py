"""The bad-input harness: wrong values for every command, option, setting and endpoint, generated from the
code (the typer app, the settings classes and the README's settings table, the Starlette routes), each
proven harmless: a clear message, exit 1 or 2 (HTTP: a 4xx), no traceback, nothing written.

`tests/test_badinput.py` runs a short seeded version in `make test`; `benchmarks/bad_input.py` runs it for
a fixed budget and prints the figures. CLARION_FUZZ=long (or the benchmark) tries many more inputs.
"""
