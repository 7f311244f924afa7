"""Kata's protobuf OCI spec back to OCI runtime-spec JSON, for the agent's own spec reader.

Every field that is set is carried over under its OCI JSON name, and nothing is dropped:
a field the native spec reader does not translate (rlimits, uid mappings, hooks, Solaris, ...)
arrives there under its OCI name and is refused, or ruled by the policy, exactly as in a
native request. proto3 hides unset scalars; that is the same as leaving the JSON key out.

One translation is the agent's own: a mount source under the Kata shared directory
(`/run/kata-containers/shared/containers/`, where CopyFile puts hostname, hosts and
resolv.conf) names the file in the agent's shared directory that CopyFile wrote to.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

__all__ = ["KATA_SHARED", "process_to_json", "spec_to_json"]

KATA_SHARED = "/run/kata-containers/shared/containers/"

# Kata field name -> OCI JSON name, where lower-casing the first letter is not the answer.
_NAMES = {
    "Version": "ociVersion",
    "UID": "uid",
    "GID": "gid",
    "CPU": "cpu",
    "OOMScoreAdj": "oomScoreAdj",
    "UIDMappings": "uidMappings",
    "GIDMappings": "gidMappings",
    "BlockIO": "blockIO",
    "KernelTCP": "kernelTCP",
    "DisableOOMKiller": "disableOOMKiller",
    "HostID": "hostID",
    "ContainerID": "containerID",
    "ClassID": "classID",
    "L3CacheSchema": "l3CacheSchema",
    "IntelRdt": "intelRdt",
    "HugepageLimits": "hugepageLimits",
    "ReadonlyPaths": "readonlyPaths",
    "errnoret": "errnoRet",
}


def _name(field: str) -> str:
    return _NAMES.get(field) or field[:1].lower() + field[1:]


def _repeated(field: FieldDescriptor) -> bool:
    # protobuf 3.21 (Debian bookworm, the guest) has `label`; protobuf 6+ has `is_repeated`.
    if hasattr(field, "is_repeated"):
        return bool(field.is_repeated)
    return field.label == FieldDescriptor.LABEL_REPEATED


def _value(field: FieldDescriptor, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        if field.message_type.GetOptions().map_entry:
            return dict(value)  # map<string, string>
        if _repeated(field):
            return [message_to_json(item) for item in value]
        return message_to_json(value)
    if _repeated(field):
        return list(value)
    return value


def message_to_json(message: Message) -> dict[str, Any]:
    return {_name(field.name): _value(field, value) for field, value in message.ListFields()}


def spec_to_json(spec: Message, shared_root: str) -> dict[str, Any]:
    """The OCI JSON of a Kata `Spec`; Kata shared-directory sources point into `shared_root`."""
    result = message_to_json(spec)
    for mount in result.get("mounts", []):
        source = mount.get("source", "")
        if source.startswith(KATA_SHARED):
            mount["source"] = shared_root.rstrip("/") + source
    return result


def process_to_json(process: Message) -> dict[str, Any]:
    return message_to_json(process)
