"""`guestagent layer build SRC -o IMAGE`: an OCI layer into an erofs image with verity tree."""

from __future__ import annotations

import argparse
import sys

from guestagent.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, error
from guestagent.errors import AgentError, InvalidArgumentError
from guestagent.storage.layer import build_layer

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("layer", help="build read-only layer images")
    sub = parser.add_subparsers(dest="layer_command", metavar="ACTION", required=True)
    build = sub.add_parser("build", help="OCI layer (tar, tar.gz or directory) -> image")
    build.add_argument("source")
    build.add_argument("-o", "--output", required=True, help="image file to write")
    build.add_argument("--work-dir", help="where to stage the extracted layer")
    build.add_argument("-v", "--verbose", action="store_true", help="print all parameters")
    build.set_defaults(func=_build)


def _build(args: argparse.Namespace) -> int:
    try:
        image = build_layer(args.source, args.output, args.work_dir)
    except InvalidArgumentError as exc:
        error("layer", exc.message)
        return EXIT_USAGE
    except (AgentError, OSError) as exc:
        error("layer", str(exc))
        return EXIT_FAILED
    print(image.root_hash)
    if args.verbose:
        params = image.verity.params
        print(f"diff_id sha256:{image.diff_id}", file=sys.stderr)
        print(f"filesystem erofs, {image.fs_size} bytes", file=sys.stderr)
        print(
            f"verity {params.hash_name} salt {params.salt.hex()} data_blocks {params.data_blocks}"
            f" hash_start_block {image.verity.hash_start_block}",
            file=sys.stderr,
        )
    return EXIT_OK
