"""PID-1-adjacent bring-up of the guest: mounts, modules, entropy, hostname, agent supervision.

`main.run` is the entry point (`guestagent init`, or `python3 -m guestagent.init` from the
initramfs); `supervisor.step` is the pure supervision state machine.
"""

__all__: list[str] = []
