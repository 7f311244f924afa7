"""One-pass shape checks for the hot points (create_container, exec_in_container).

Each returns True only for an input the exact schema check (`check_input`) accepts; it may
be stricter (plain dicts and lists only, no int subclasses), never looser. An input it does
not accept goes through the exact check, which raises the precise BadInput naming the field
(or accepts an unusual but valid shape). So failing closed, and the field named in a
denial, are exactly those of the schema; only the common case is cheaper.

Instead of a call per field and per item, the work is done in few, bulk steps: the field
values are fetched with one itemgetter, the containers and flags type-checked inline, and
every string of the request gathered into one list that is checked once for exact str type,
once (one join) for NUL and once for length. tests/policy/test_fast_input.py holds these
checks to the schema.
"""

from __future__ import annotations

from operator import countOf, itemgetter
from typing import Any

from guestagent.policy.rules._common import CAP_SET_NAMES, MAX_FIELD_TEXT, MAX_LIST

__all__ = ["create_input_ok", "exec_input_ok"]

_INT = frozenset({int})
_U32 = 2**32
_MAX_MOUNTS = 1024
_MAX_SYSCTL = 1024
_MAX_RESOURCES = 64
_U64 = 2**64
_I64 = 2**63
_rlimit = itemgetter("type", "soft", "hard")

_caps = itemgetter(*CAP_SET_NAMES)
_user = itemgetter("uid", "gid", "additional_gids")
_USER_TYPES = (int, int, list)
_mount = itemgetter("destination", "source", "type", "options")

# The process fields exec and create share, with their types, in this order.
_PROCESS = (
    ("container_id", str),
    ("working_dir", str),
    ("argv", list),
    ("env", list),
    ("user", dict),
    ("capabilities", dict),
    ("no_new_privileges", bool),
    ("terminal", bool),
)
_CREATE = (
    *(name for name, _ in _PROCESS),
    "seccomp_profile_sha256",
    "rootfs",
    "namespaces",
    "devices",
    "privileged_reasons",
    "host_namespaces",
    "unsupported_fields",
    "mounts",
    "sysctl",
    "hooks",
    "privileged",
    "umask",
    "hostname",
    "readonly_rootfs",
    "masked_paths",
    "readonly_paths",
    "rlimits",
    "oom_score_adj",
    "resources",
    "device_conflicts",
)
_exec_fields = itemgetter(*(name for name, _ in _PROCESS))
_EXEC_TYPES = tuple(kind for _, kind in _PROCESS)
_create_fields = itemgetter(*_CREATE)


def _texts_ok(texts: list[Any]) -> bool:
    """Every item a str without NUL of at most MAX_FIELD_TEXT characters."""
    if countOf(map(type, texts), str) != len(texts):
        return False
    joined = "".join(texts)
    if "\x00" in joined:
        return False
    return len(joined) <= MAX_FIELD_TEXT or max(map(len, texts)) <= MAX_FIELD_TEXT


def _user_ok(user: dict[str, Any]) -> bool:
    if len(user) != 3:
        return False
    try:
        uid, gid, gids = _user(user)
    except KeyError:
        return False
    if (type(uid), type(gid), type(gids)) != _USER_TYPES:
        return False
    if not (0 <= uid < _U32 and 0 <= gid < _U32) or len(gids) > MAX_LIST:
        return False
    return not gids or (set(map(type, gids)) <= _INT and min(gids) >= 0 and max(gids) < _U32)


def _cap_sets(caps: dict[str, Any]) -> tuple[list[str], ...] | None:
    """The five capability lists, if `caps` holds exactly those (as lists)."""
    if len(caps) != len(CAP_SET_NAMES):
        return None
    try:
        b, e, i, p, a = sets = _caps(caps)
    except KeyError:
        return None
    if type(b) is list and type(e) is list and type(i) is list and type(p) is list:
        return sets if type(a) is list else None
    return None


def _rlimits_ok(rlimits: list[Any], texts: list[Any]) -> bool:
    """Each rlimit a {type, soft, hard} record; its type joins `texts`."""
    for rlimit in rlimits:
        if type(rlimit) is not dict or len(rlimit) != 3:
            return False
        try:
            kind, soft, hard = _rlimit(rlimit)
        except KeyError:
            return False
        if type(soft) is not int or type(hard) is not int:
            return False
        if not (0 <= soft < _U64 and 0 <= hard < _U64):
            return False
        texts.append(kind)
    return True


def _resources_ok(resources: dict[Any, Any], texts: list[Any]) -> bool:
    """Each limit an int64/uint64 or a string; the strings join `texts`."""
    for value in resources.values():
        if type(value) is str:
            texts.append(value)
        elif type(value) is not int or not -_I64 <= value < _U64:
            return False
    return True


def exec_input_ok(req: Any) -> bool:
    """True if the exec_in_container input is certainly well formed."""
    if type(req) is not dict or len(req) != len(_PROCESS):
        return False
    try:
        values = _exec_fields(req)
    except KeyError:
        return False
    if tuple(map(type, values)) != _EXEC_TYPES or not _user_ok(values[4]):
        return False
    sets = _cap_sets(values[5])
    if sets is None:
        return False
    cid, working_dir, argv, env = values[:4]
    b, e, i, p, a = sets
    texts = [cid, working_dir, *argv, *env, *b, *e, *i, *p, *a]
    # Every string list is in `texts`: if it has at most MAX_LIST items, so does each list.
    return len(texts) <= MAX_LIST and _texts_ok(texts)


def create_input_ok(req: Any) -> bool:
    """True if the create_container input is certainly well formed."""
    if type(req) is not dict or len(req) != len(_CREATE):
        return False
    try:
        values = _create_fields(req)
    except KeyError:
        return False
    cid, working_dir, argv, env, user, caps, nnp, terminal, seccomp, rootfs = values[:10]
    ns, devices, reasons, host_ns, unsupported, mounts, sysctl, hooks, privileged = values[10:19]
    umask, hostname, readonly_rootfs, masked, readonly, rlimits, oom, resources = values[19:27]
    conflicts = values[27]
    # The strings are checked with all the others below; here the containers and flags.
    lists_ok = (
        type(argv) is list
        and type(env) is list
        and type(ns) is list
        and type(devices) is list
        and type(reasons) is list
        and type(host_ns) is list
        and type(unsupported) is list
        and type(mounts) is list
    )
    if not lists_ok or type(user) is not dict or type(caps) is not dict or type(sysctl) is not dict:
        return False
    if not (type(nnp) is bool and type(terminal) is bool and type(hooks) is bool):
        return False
    if type(privileged) is not bool or type(readonly_rootfs) is not bool:
        return False
    # Rare shapes (devices, and device conflicts: a denial) take the exact check.
    if devices or conflicts or type(conflicts) is not list:
        return False
    if type(masked) is not list or type(readonly) is not list or type(rlimits) is not list:
        return False
    if type(resources) is not dict or len(resources) > _MAX_RESOURCES:
        return False
    if oom is not None and (type(oom) is not int or not -1000 <= oom <= 1000):
        return False
    if umask is not None and (type(umask) is not int or not 0 <= umask < _U32):
        return False
    if len(mounts) > _MAX_MOUNTS or len(sysctl) > _MAX_SYSCTL or len(caps) != 5:
        return False
    try:
        b, e, i, p, a = _caps(caps)
    except KeyError:
        return False
    if not (type(b) is list and type(e) is list and type(i) is list and type(p) is list):
        return False
    if type(a) is not list or len(user) != 3:
        return False
    try:
        uid, gid, gids = _user(user)
    except KeyError:
        return False
    if type(uid) is not int or type(gid) is not int or type(gids) is not list:
        return False
    if not (0 <= uid < _U32 and 0 <= gid < _U32) or len(gids) > MAX_LIST:
        return False
    if gids and not (set(map(type, gids)) <= _INT and min(gids) >= 0 and max(gids) < _U32):
        return False
    texts = [cid, working_dir, seccomp, rootfs, hostname, *argv, *env, *ns, *reasons, *host_ns]
    texts += (*masked, *readonly, *resources)
    if rlimits and not _rlimits_ok(rlimits, texts):
        return False
    if resources and not _resources_ok(resources, texts):
        return False
    texts += (*unsupported, *b, *e, *i, *p, *a, *sysctl)
    texts += sysctl.values()
    for mount in mounts:
        if type(mount) is not dict or len(mount) != 4:
            return False
        try:
            destination, source, kind, options = _mount(mount)
        except KeyError:
            return False
        if type(options) is not list:
            return False
        texts += (destination, source, kind, *options)
    # Every string list of the request is in `texts`: if it has at most MAX_LIST items, so
    # does each list (requests beyond that take the exact check).
    if len(texts) > MAX_LIST or countOf(map(type, texts), str) != len(texts):
        return False
    joined = "".join(texts)
    return "\x00" not in joined and (
        len(joined) <= MAX_FIELD_TEXT or max(map(len, texts)) <= MAX_FIELD_TEXT
    )
