"""`guestagent init`: bring the guest up, then supervise the agent; fail closed.

Run as PID 1 (switch_root from the initramfs) or as the main process of guestagent.service.
As PID 1 it never exits: when the agent ends, or bring-up fails, it syncs and powers the VM off,
and if even that fails it halts or hangs, never leaving an unmediated guest. Not as PID 1, it
exits non-zero instead and leaves powering off to its parent (systemd's FailureAction= and
SuccessAction=poweroff in guestagent.service).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable

from guestagent import startgc, timeline
from guestagent.errors import AgentError
from guestagent.init import entropy, modules, mounts, syscalls
from guestagent.init.config import InitConfig, resolve_config
from guestagent.init.supervisor import supervise

__all__ = ["add_arguments", "bring_up", "main", "power_off_machine", "run"]

ENV_FILE = "/etc/guestagent/agent.env"
EXIT_FAILED = 1


def log(message: str) -> None:
    print(f"guestagent-init: {message}", file=sys.stderr, flush=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", default=ENV_FILE, help=f"launch configuration file (default {ENV_FILE})"
    )
    parser.add_argument(
        "--cmdline", default="/proc/cmdline", help="kernel command line file (default: /proc)"
    )
    parser.add_argument(
        "--stop-grace",
        type=float,
        default=10.0,
        help="seconds between forwarding a stop signal and SIGKILL (default 10)",
    )
    parser.add_argument(
        "agent", nargs=argparse.REMAINDER, help="-- followed by the agent command line"
    )


def _read(path: str, *, optional: bool) -> str:
    try:
        with open(path) as handle:
            return handle.read()
    except FileNotFoundError:
        if optional:
            return ""
        raise


def load_config(args: argparse.Namespace) -> InitConfig:
    explicit = args.agent[1:] if args.agent[:1] == ["--"] else args.agent
    cmdline = _read(args.cmdline, optional=False)
    return resolve_config(explicit, cmdline, _read(args.config, optional=True))


def bring_up(config: InitConfig, *, pid1: bool) -> None:
    """Modules, entropy, hostname (after `mount_early`). Errors propagate."""
    module_dir = f"/lib/modules/{os.uname().release}"
    if os.path.exists(os.path.join(module_dir, "modules.dep")):
        index = modules.ModuleIndex.from_directory(module_dir)
        loaded = modules.load_modules(config.modules, index)
        log(f"loaded {len(loaded)} kernel modules")
    else:  # the initramfs loaded them; its modules are gone after switch_root
        missing = [name for name in config.modules if not modules.is_loaded(name)]
        if missing:
            log(f"warning: modules not loaded and no {module_dir}: {', '.join(missing)}")
    report = entropy.seed_entropy()
    log(f"entropy: crng ready={report.ready_before}, waited {report.waited_seconds:.2f}s")
    if pid1:  # under systemd the hostname is systemd's business
        set_hostname(config.hostname)


def set_hostname(name: str) -> None:
    """sethostname(2) for our UTS namespace, through its sysctl: the socket module (only for
    this) costs the guest's boot more than this write."""
    with open("/proc/sys/kernel/hostname", "w") as hostname:
        hostname.write(name)


def power_off_machine(reason: str) -> None:
    """Stop everything, sync, power off. Does not return."""
    log(f"power off: {reason}")
    for signum, pause in ((signal.SIGTERM, 1.0), (signal.SIGKILL, 0.2)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(-1, signum)  # as PID 1: every other process
        time.sleep(pause)
    os.sync()
    for command in (syscalls.LINUX_REBOOT_CMD_POWER_OFF, syscalls.LINUX_REBOOT_CMD_HALT):
        try:
            syscalls.reboot(command)
        except OSError as exc:
            log(f"reboot({command:#x}) failed: {exc}")
    _hang()


def _hang() -> None:
    """Last resort for PID 1: never exit (the kernel would panic), reap forever."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
    while True:
        signal.sigtimedwait({signal.SIGCHLD}, 3600)
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            pass


def _exit_instead(reason: str) -> None:
    log(f"agent supervision ended: {reason}")


def run(args: argparse.Namespace, *, pid1: bool | None = None) -> int:
    pid1 = os.getpid() == 1 if pid1 is None else pid1
    power_off: Callable[[str], None] = power_off_machine if pid1 else _exit_instead
    try:
        mounted = mounts.mount_early(log=log)
        log(f"mounted {', '.join(mounted) or 'nothing (all present)'}")
        config = load_config(args)
        bring_up(config, pid1=pid1)
        timeline.stamp("init_up")
        startgc.resume()  # before the agent's fork: its pages stay shared (startgc.py)
        supervise(config.agent_argv, power_off=power_off, log=log, stop_grace=args.stop_grace)
    except (AgentError, OSError) as exc:
        log(f"bring-up failed: {exc}")
        power_off(f"bring-up failed: {exc}")
    except BaseException as exc:  # PID 1 must not die of a bug either
        log(f"internal error: {exc!r}")
        power_off(f"internal error: {exc!r}")
    return EXIT_FAILED  # not PID 1: the agent ended, which is always a failure for a service


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="guestagent init", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))
