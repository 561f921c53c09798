"""The `artnet` command. Each subcommand is a thin shell over a library function."""

from __future__ import annotations

import argparse
import sys


def _data_stats(args: argparse.Namespace) -> int:
    from artnet.stats import to_markdown, wga_statistics

    stats, out = wga_statistics(args.config, args.data_dir, args.out)
    print(to_markdown(stats, f"wga/{args.config} {stats['version']} ({args.data_dir})"))
    print(f"saved {out / 'statistics.json'} and {out / 'statistics.md'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="artnet", description=__doc__)
    from artnet import __version__

    parser.add_argument("--version", action="version", version=f"artnet {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    stats = commands.add_parser(
        "data-stats", help="counts per split x head x class of a built wga config (tables 1-2 of the 2020 report)"
    )
    stats.add_argument("--config", default="artist", help="wga config: artist, random or sample (default: artist)")
    stats.add_argument("--data-dir", default="data/tfds", help="TFDS data_dir the dataset was built into")
    stats.add_argument("--out", default=None, help="folder for statistics.json/.md (default: beside the records)")
    stats.set_defaults(run=_data_stats)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (FileNotFoundError, ValueError) as error:
        print(f"artnet {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
