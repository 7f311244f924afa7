"""`guestagent verity format|verify|root`: dm-verity trees compatible with veritysetup."""

from __future__ import annotations

import argparse
import os
import sys
import uuid as uuidlib
from collections.abc import Callable

from guestagent.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, error
from guestagent.errors import AgentError, IntegrityError, InvalidArgumentError
from guestagent.storage.verity import format_tree, verify, verify_block
from guestagent.storage.verity_device import read_appended_params, root_from_device
from guestagent.storage.verity_params import VerityParams, parse_superblock

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("verity", help="build and check dm-verity hash trees")
    sub = parser.add_subparsers(dest="verity_command", metavar="ACTION", required=True)
    fmt = sub.add_parser("format", help="build a hash tree like `veritysetup format`")
    fmt.add_argument("data")
    fmt.add_argument("hash")
    _tree_options(fmt)
    fmt.add_argument("--salt", help="salt in hex, or - for none (default: 32 random bytes)")
    fmt.add_argument("--uuid", help="superblock UUID (default: random)")
    fmt.add_argument("--data-blocks", type=int, help="data blocks to cover (default: all)")
    fmt.set_defaults(func=_format)
    ver = sub.add_parser("verify", help="check data and tree against a root hash")
    ver.add_argument("data")
    ver.add_argument("hash")
    ver.add_argument("root", help="expected root hash (hex)")
    _tree_options(ver)
    ver.add_argument("--salt", default="-", help="salt in hex or - (with --no-superblock)")
    ver.add_argument("--data-blocks", type=int, help="with --no-superblock (default: all)")
    ver.add_argument("--block", type=int, help="check only this data block")
    ver.set_defaults(func=_verify)
    root = sub.add_parser("root", help="compute the root hash of an image with appended tree")
    root.add_argument("image")
    root.set_defaults(func=_root)


def _tree_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hash", dest="hash_name", default="sha256", help="hash algorithm")
    parser.add_argument("--no-superblock", action="store_true")
    parser.add_argument("--data-block-size", type=int, default=4096)
    parser.add_argument("--hash-block-size", type=int, default=4096)
    parser.add_argument("--hash-offset", type=int, default=None, help="bytes (default 0)")


def _salt(text: str | None) -> bytes:
    if text is None:
        return os.urandom(32)
    if text == "-":
        return b""
    try:
        return bytes.fromhex(text)
    except ValueError as exc:
        raise InvalidArgumentError(f"salt is not hex: {text!r}") from exc


def _params_from_args(args: argparse.Namespace, salt: bytes, uuid: bytes) -> VerityParams:
    blocks = args.data_blocks
    if blocks is None:
        size = _size(args.data)
        blocks = size // args.data_block_size
        if size % args.data_block_size:
            print(
                f"warning: last {size % args.data_block_size} bytes of {args.data} are not"
                " covered (as with veritysetup)",
                file=sys.stderr,
            )
    return VerityParams(
        data_blocks=blocks,
        hash_name=args.hash_name,
        data_block_size=args.data_block_size,
        hash_block_size=args.hash_block_size,
        salt=salt,
        hash_offset=args.hash_offset or 0,
        superblock=not args.no_superblock,
        uuid=uuid,
    )


def _size(path: str) -> int:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise InvalidArgumentError(f"cannot open {path}: {exc.strerror}") from exc
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


def _print_header(hash_path: str, params: VerityParams, root: str) -> None:
    geo = params.geometry()
    rows = [
        ("UUID:", params.uuid_str if params.superblock else ""),
        ("Hash type:", str(params.hash_type)),
        ("Data blocks:", str(params.data_blocks)),
        ("Data block size:", str(params.data_block_size)),
        ("Hash blocks:", str(geo.hash_blocks)),
        ("Hash block size:", str(params.hash_block_size)),
        ("Hash algorithm:", params.hash_name),
        ("Salt:", params.salt.hex() or "-"),
        ("Root hash:", root),
        ("Hash device size:", f"{geo.end_block() * params.hash_block_size} [bytes]"),
    ]
    print(f"VERITY header information for {hash_path}")
    for label, value in rows:
        print(f"{label:<18}\t{value}")


def _format(args: argparse.Namespace) -> int:
    def run() -> int:
        uuid = uuidlib.UUID(args.uuid).bytes if args.uuid else uuidlib.uuid4().bytes
        params = _params_from_args(args, _salt(args.salt), uuid)
        root = format_tree(args.data, args.hash, params).hex()
        _print_header(args.hash, params, root)
        return EXIT_OK

    return _guard(run)


def _verify_params(args: argparse.Namespace) -> VerityParams:
    if args.no_superblock:
        return _params_from_args(args, _salt(args.salt), bytes(16))
    if args.hash_offset is None and os.path.realpath(args.data) == os.path.realpath(args.hash):
        return read_appended_params(args.data)
    offset = args.hash_offset or 0
    with open(args.hash, "rb") as fh:
        fh.seek(offset)
        return parse_superblock(fh.read(512), hash_offset=offset)


def _verify(args: argparse.Namespace) -> int:
    def run() -> int:
        try:
            root = bytes.fromhex(args.root)
        except ValueError as exc:
            raise InvalidArgumentError(f"root hash is not hex: {args.root!r}") from exc
        params = _verify_params(args)
        if args.block is not None:
            verify_block(args.data, args.hash, root, params, args.block)
        else:
            verify(args.data, args.hash, root, params)
        print("verification ok")
        return EXIT_OK

    return _guard(run)


def _root(args: argparse.Namespace) -> int:
    def run() -> int:
        info = root_from_device(args.image)
        _print_header(args.image, info.params, info.root_hash)
        return EXIT_OK

    return _guard(run)


def _guard(run: Callable[[], int]) -> int:
    try:
        return run()
    except IntegrityError as exc:
        error("verity", exc.message)
        return EXIT_FAILED
    except (AgentError, OSError) as exc:
        error("verity", str(exc))
        return EXIT_USAGE
