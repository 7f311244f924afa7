"""The console client's command language and its interactive prompt.

A command line is `COMMAND [VALUE ...] [name=value ...]`: positional values fill the
command's parameters in order (`decisions denied 20`, `report <128 hex digits>`,
`processes 1`). The prompt keeps a readline history (under $XDG_CACHE_HOME or ~/.cache; if it
cannot be written, nothing is lost but the history) and completes command names with TAB.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from guestagent.client.display import to_json
from guestagent.console.commands import COMMANDS, DECISION_FILTERS
from guestagent.console.render import render

__all__ = [
    "PARAMETERS",
    "CommandLineError",
    "history_path",
    "parse_command",
    "print_result",
    "run_interactive",
]

PROMPT = "guestagent console> "
BUILTINS = ("help", "quit", "exit")
HISTORY_LENGTH = 1000


class CommandLineError(ValueError):
    """A command line that cannot be sent (unknown command, bad value)."""


def _hex64(text: str) -> bytes:
    try:
        data = bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        raise CommandLineError(f"report_data: not hex: {text[:40]!r}") from None
    if len(data) != 64:
        raise CommandLineError(f"report_data: need 64 bytes (128 hex digits), got {len(data)}")
    return data


def _integer(name: str) -> Callable[[str], int]:
    def convert(text: str) -> int:
        try:
            return int(text, 0)
        except ValueError:
            raise CommandLineError(f"{name}: not an integer: {text!r}") from None

    return convert


# command -> its parameters in positional order, with their converters
PARAMETERS: dict[str, tuple[tuple[str, Callable[[str], Any]], ...]] = {
    "report": (("report_data", _hex64),),
    "processes": (("pid", _integer("pid")),),
    "decisions": (("filter", str), ("limit", _integer("limit"))),
    "trace": (("action", str),),
}


def parse_command(words: Sequence[str]) -> tuple[str, dict[str, Any]]:
    """["decisions", "denied", "limit=5"] -> ("decisions", {"filter": "denied", "limit": 5})."""
    if not words:
        raise CommandLineError("no command given")
    command, *rest = words
    if command not in COMMANDS:
        raise CommandLineError(f"unknown command {command!r}; commands: {', '.join(COMMANDS)}")
    params = dict(PARAMETERS.get(command, ()))
    order = [name for name, _ in PARAMETERS.get(command, ())]
    args: dict[str, Any] = {}
    for word in rest:
        name, sep, value = word.partition("=")
        if not sep:
            if not order:
                raise CommandLineError(f"{command} takes no more values (got {word!r})")
            name, value = order[0], word
        if name not in params:
            raise CommandLineError(f"{command} has no parameter {name!r}")
        if name in args:
            raise CommandLineError(f"{name} given twice")
        args[name] = params[name](value)
        order = [n for n in order if n != name]
    return command, args


def print_result(command: str, result: Any, as_json: bool, out: TextIO) -> None:
    if as_json:
        out.write(json.dumps(to_json(result), indent=2, sort_keys=True) + "\n")
    else:
        out.write(render(command, result) + "\n")
    out.flush()


def history_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "guestagent" / "console_history"


def _help(out: TextIO, summaries: dict[str, str]) -> None:
    for name in COMMANDS:
        params = " ".join(f"[{p}]" for p, _ in PARAMETERS.get(name, ()))
        out.write(f"  {(name + ' ' + params).strip():<34} {summaries.get(name, '')}\n")
    out.write(f"  {'help | quit':<34} this list | leave (or Ctrl-D)\n")
    out.write(f"  decisions filters: {', '.join(DECISION_FILTERS)}\n")


def _setup_readline(words: Sequence[str], history: Path) -> Callable[[], None]:
    """Enable TAB completion and history; returns the function that saves the history."""
    try:
        import readline
    except ImportError:  # pragma: no cover - every CPython build on Linux has it
        return lambda: None

    def complete(text: str, state: int) -> str | None:
        line = readline.get_line_buffer().lstrip()
        first = " " not in line
        pool = words if first else DECISION_FILTERS if line.startswith("decisions ") else ()
        matches = [w + " " for w in pool if w.startswith(text)]
        return matches[state] if state < len(matches) else None

    readline.set_completer(complete)
    readline.set_completer_delims(" \t")
    readline.parse_and_bind("tab: complete")
    readline.set_history_length(HISTORY_LENGTH)
    with contextlib.suppress(OSError):
        readline.read_history_file(history)

    def save() -> None:
        with contextlib.suppress(OSError):
            history.parent.mkdir(parents=True, exist_ok=True)
            readline.write_history_file(history)

    return save


def run_interactive(
    call: Callable[[str, dict[str, Any]], Any],
    *,
    as_json: bool,
    summaries: dict[str, str],
    errors: Callable[[BaseException], str | None],
    out: TextIO = sys.stdout,
) -> int:
    """Read commands until quit or EOF. `errors` turns a failed call into a message to print
    (None: the failure is fatal, e.g. the connection is gone)."""
    save_history = _setup_readline([*COMMANDS, *BUILTINS], history_path())
    out.write("guestagent debug console (read-only). Type help for commands.\n")
    try:
        while True:
            try:
                line = input(PROMPT)
            except EOFError:
                out.write("\n")
                return 0
            except KeyboardInterrupt:
                out.write("\n")
                continue
            try:
                words = shlex.split(line)
            except ValueError as exc:
                out.write(f"error: {exc}\n")
                continue
            if not words:
                continue
            if words[0] in ("quit", "exit"):
                return 0
            if words[0] == "help":
                _help(out, summaries)
                continue
            try:
                command, args = parse_command(words)
                print_result(command, call(command, args), as_json, out)
            except CommandLineError as exc:
                out.write(f"error: {exc}\n")
            except Exception as exc:
                message = errors(exc)
                if message is None:
                    raise
                out.write(message + "\n")
            out.flush()
    finally:
        save_history()
