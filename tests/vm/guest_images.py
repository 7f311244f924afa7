"""Build (or reuse) the guest kernel, initramfs and root filesystem for the VM tier.

Each artifact is cached under a directory named by the SHA-256 of its inputs (scripts, package
versions, this checkout's guestagent sources), in $GUESTAGENT_VM_CACHE or <repo>/.cache/vm
(gitignored). CI starts from an empty cache and builds everything (about 80 s).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["GuestImages", "build_images", "cache_dir", "rootfs_cmdline"]

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "initramfs"


@dataclass(frozen=True)
class GuestImages:
    kernel: Path
    initramfs: Path
    rootfs: Path  # erofs data with the verity tree appended
    root_env: dict[str, str]  # ROOT_HASH, ROOT_SALT, ROOT_BLOCKS
    kernel_package: str


def cache_dir() -> Path:
    return Path(os.environ.get("GUESTAGENT_VM_CACHE", REPO / ".cache" / "vm"))


def _sha256_files(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(str(path.relative_to(REPO)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _run(argv: list[str], log: Path) -> None:
    with open(log, "ab") as out:
        result = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-30:]
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}):\n" + "\n".join(tail))


def _output(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()


def _cached(kind: str, key: str, build) -> Path:
    """cache/<kind>-<key>/ built once by `build(tmpdir)`; older <kind>-* entries are pruned."""
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{kind}-{key[:16]}"
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / ".complete").exists():
            return final
        tmp = root / f".tmp-{kind}-{key[:16]}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        build(tmp)
        (tmp / ".complete").write_text(key + "\n")
        for old in root.glob(f"{kind}-*"):
            shutil.rmtree(old, ignore_errors=True)
        tmp.rename(final)
    return final


def _kernel() -> tuple[Path, str]:
    package = _output([str(SCRIPTS / "resolve-kernel.sh")])
    version = _output(["apt-cache", "policy", package]).split("Candidate:")[1].split()[0]
    key = hashlib.sha256(
        f"{package}={version}\n{_sha256_files([SCRIPTS / 'fetch-kernel.sh'])}".encode()
    ).hexdigest()

    def build(tmp: Path) -> None:
        _run([str(SCRIPTS / "fetch-kernel.sh"), str(tmp), package], tmp / "build.log")

    return _cached("kernel", key, build), key


def _initramfs(kernel_dir: Path, kernel_key: str) -> Path:
    inputs = [SCRIPTS / n for n in ("build-initramfs.sh", "init", "modules.txt")]
    busybox = hashlib.sha256(Path("/bin/busybox").read_bytes()).hexdigest()
    key = hashlib.sha256(f"{kernel_key}{_sha256_files(inputs)}{busybox}".encode()).hexdigest()

    def build(tmp: Path) -> None:
        script = SCRIPTS / "build-initramfs.sh"
        _run([str(script), str(kernel_dir), str(tmp / "initramfs.cpio.gz")], tmp / "build.log")

    return _cached("initramfs", key, build) / "initramfs.cpio.gz"


def _tree() -> tuple[Path, str]:
    mirror = _output([str(SCRIPTS / "apt-mirror.sh")])
    inputs = [
        SCRIPTS / n for n in ("rootfs-tree.sh", "rootfs-packages.txt", "rootfs-requirements.txt")
    ]
    key = hashlib.sha256(f"{mirror}\n{_sha256_files(inputs)}".encode()).hexdigest()

    def build(tmp: Path) -> None:
        _run([str(SCRIPTS / "rootfs-tree.sh"), str(tmp / "tree")], tmp / "build.log")

    return _cached("tree", key, build) / "tree", key


def _rootfs(tree: Path, tree_key: str) -> Path:
    sources = sorted(p for p in (REPO / "guestagent").rglob("*") if p.is_file())
    sources = [p for p in sources if "__pycache__" not in p.parts]
    inputs = [SCRIPTS / "pack-rootfs.sh", REPO / "systemd" / "agent.env", *sources]
    key = hashlib.sha256(f"{tree_key}{_sha256_files(inputs)}".encode()).hexdigest()

    def build(tmp: Path) -> None:
        _run([str(SCRIPTS / "pack-rootfs.sh"), str(tree), str(REPO), str(tmp)], tmp / "build.log")

    return _cached("rootfs", key, build)


def read_env(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key: value for key, value in pairs}


def build_images() -> GuestImages:
    kernel_dir, kernel_key = _kernel()
    initramfs = _initramfs(kernel_dir, kernel_key)
    tree, tree_key = _tree()
    rootfs_dir = _rootfs(tree, tree_key)
    return GuestImages(
        kernel=kernel_dir / "vmlinuz",
        initramfs=initramfs,
        rootfs=rootfs_dir / "rootfs.img",
        root_env=read_env(rootfs_dir / "rootfs.env"),
        kernel_package=(kernel_dir / "package").read_text().strip(),
    )


def rootfs_cmdline(root_env: dict[str, str]) -> str:
    """The kernel parameters that bind the boot to this root filesystem's verity tree."""
    names = {"ROOT_HASH": "root_hash", "ROOT_SALT": "root_salt", "ROOT_BLOCKS": "root_blocks"}
    return " ".join(f"guestagent.{names[k]}={v}" for k, v in sorted(root_env.items()) if k in names)
