"""The measured execution policy: document, pure engine, and the gate the agent consults.

Nothing in this package performs I/O (a test enforces it): the clock, the measurements and the
host data come in as arguments, so every decision can be replayed, proven and fuzzed alone.
"""
