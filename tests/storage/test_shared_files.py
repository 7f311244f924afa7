"""CopyFile's writer and its rule: files, directories and symlinks with owners, made without
following any link on the way, and symlink targets ruled before anything is made."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from guestagent.errors import AgentError
from guestagent.policy.document import parse_policy
from guestagent.policy.engine import decide
from guestagent.policy.rules.host import resolve_link
from guestagent.policy.state import EMPTY_STATE
from guestagent.storage.shared_files import SharedEntry, write_shared_file

VOLUME = "/run/kata-containers/shared/containers/sa-token"
POLICY = parse_policy(
    json.dumps(
        {
            "version": 1,
            "containers": [],
            "copy_file": {
                "destinations": [VOLUME + "(/[.a-z0-9_]+){0,2}"],
                "symlinks": True,
                "uid": {"min": 0, "max": 1000},
                "gid": 2000,
            },
        }
    ).encode()
)


def copy(dest: str, kind: str = "file", target: str = "", uid: int = 0, gid: int = 2000):
    request = {"destination": dest, "mode": 0o644, "dir_mode": 0o755, "size": len(target),
               "kind": kind, "target": target, "uid": uid, "gid": gid}  # fmt: skip
    return decide(POLICY, EMPTY_STATE, "copy_file", request)


@pytest.mark.parametrize(
    ("dest", "target", "resolved"),
    [
        ("/a/b/link", "c", "/a/b/c"),
        ("/a/b/link", "..data/token", "/a/b/..data/token"),
        ("/a/b/link", "../c", "/a/c"),
        ("/a/b/link", "../../c", "/c"),
        ("/a/b/link", "../../../c", None),  # above the root
        ("/a/b/link", "/etc/shadow", None),  # absolute
        ("/a/b/link", "c/../../x", None),  # '..' after a name: that name may be a link
        ("/a/b/link", "./c", None),
        ("/a/b/link", "c//d", None),
        ("/a/b/link", "", None),
    ],
)
def test_resolve_link(dest, target, resolved):
    assert resolve_link(dest, target) == resolved


def test_projected_volume_symlinks_and_owners_are_allowed():
    assert copy(VOLUME + "/..2026_01", "directory", uid=1000).allowed
    assert copy(VOLUME + "/..2026_01/token", uid=1000).allowed
    assert copy(VOLUME + "/..data", "symlink", "..2026_01").allowed
    assert copy(VOLUME + "/token", "symlink", "..data/token").allowed


@pytest.mark.parametrize(
    ("request_args", "rule", "says"),
    [
        ((VOLUME + "/token", "symlink", "../../../../etc/shadow"), "copy_file.target",
         "resolves to /run/etc/shadow, which is not a copy_file destination"),
        ((VOLUME + "/token", "symlink", "/etc/shadow"), "copy_file.target", "only a relative"),
        ((VOLUME + "/token", "symlink", "../other"), "copy_file.target", "not a copy_file"),
        ((VOLUME + "/token", "file", "", 1001), "copy_file.uid", "owner uid 1001"),
        ((VOLUME + "/token", "file", "", 0, 0), "copy_file.gid", "owner gid 0"),
    ],
)  # fmt: skip
def test_what_the_copy_rules_deny(request_args, rule, says):
    decision = copy(*request_args)
    assert not decision.allowed
    assert decision.rule == rule and says in decision.reason


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_entries_get_their_kind_mode_and_owner(tmp_path):
    root = str(tmp_path / "shared")
    write_shared_file(root, "/v/..d1", b"", SharedEntry("directory", 0o750, 1000, 2000))
    write_shared_file(root, "/v/..d1/token", b"secret", SharedEntry("file", 0o640, 1000, 2000))
    write_shared_file(root, "/v/..data", b"", SharedEntry("symlink", 0o777, 0, 0, "..d1"))
    write_shared_file(
        root, "/v/token", b"", SharedEntry("symlink", 0o777, 1000, 2000, "..data/token")
    )
    base = tmp_path / "shared" / "v"
    for name, mode in (("..d1", 0o750), ("..d1/token", 0o640)):
        st = (base / name).stat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (1000, 2000, mode)
    assert os.readlink(base / "..data") == "..d1"
    assert os.readlink(base / "token") == "..data/token"
    assert os.lstat(base / "token").st_uid == 1000
    assert (base / "token").read_bytes() == b"secret"
    # A new version: the link is replaced, never followed.
    write_shared_file(root, "/v/..d2", b"", SharedEntry("directory", 0o750, 1000, 2000))
    write_shared_file(root, "/v/..data", b"", SharedEntry("symlink", 0o777, 0, 0, "..d2"))
    assert os.readlink(base / "..data") == "..d2"
    assert (base / "..d1").is_dir() and not (base / "..d1").is_symlink()
    # Missing parents are made with the requested directory mode.
    write_shared_file(root, "/w/x/f", b"", SharedEntry("file", 0o644, 0, 0, None, 0o775))
    assert [(base.parent / d).stat().st_mode & 0o777 for d in ("w", "w/x")] == [0o775, 0o775]


def test_nothing_is_written_through_a_symlink(tmp_path):
    root = tmp_path / "shared"
    outside = tmp_path / "outside"
    outside.mkdir()
    write_shared_file(str(root), "/v/esc", b"", SharedEntry("symlink", 0o777, *_me(), "x"))
    os.replace(root / "v" / "esc", root / "v" / "tmp-link")
    os.symlink(outside, root / "v" / "esc")  # as if made another way: never followed
    for entry in (SharedEntry("file", 0o644, *_me()), SharedEntry("directory", 0o755, *_me())):
        with pytest.raises(AgentError, match="never followed"):
            write_shared_file(str(root), "/v/esc/x", b"data", entry)
    with pytest.raises(AgentError):
        write_shared_file(str(root), "/v/esc", b"", SharedEntry("directory", 0o755, *_me()))
    assert list(Path(outside).iterdir()) == []


def _me() -> tuple[int, int]:
    return os.geteuid(), os.getegid()
