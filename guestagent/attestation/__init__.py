"""The attestation service for workloads: a unix socket bind-mounted into containers whose
policy entry sets `attestation_socket`.

Newline-delimited JSON (docs/attestation.md): a workload asks for a fresh report over 64 bytes
of its own data, or for a key derived by the secure processor from the launch measurement and
bound to the policy digest and its own policy entry::

    hub = AttestationHub(backend, state_dir)
    mount = await hub.open(container_id, entry_name)   # an OCI mount entry for config.json
    ...
    await hub.close(container_id)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from guestagent.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from guestagent.attestation.hub import AttestationHub, attestation_entry
    from guestagent.attestation.keys import derive_workload_key
    from guestagent.attestation.server import SOCKET_DESTINATION, AttestationServer, oci_mount

__all__ = [
    "SOCKET_DESTINATION",
    "AttestationHub",
    "AttestationServer",
    "attestation_entry",
    "derive_workload_key",
    "oci_mount",
]

# Loaded on first use: the agent's create path needs only the hub; the server and the key
# derivation (cryptography) load with the first attestation socket.
__getattr__ = lazy_exports(
    __name__,
    {
        "AttestationHub": "hub",
        "attestation_entry": "hub",
        "derive_workload_key": "keys",
        "SOCKET_DESTINATION": "server",
        "AttestationServer": "server",
        "oci_mount": "server",
    },
)
