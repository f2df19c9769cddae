"""Command-line interface: ``pixelrnn COMMAND ...``."""

from __future__ import annotations

import argparse
import sys

from .configs import PAPER_CONFIGS, build_paper_model, parameter_count


def _configs(args: argparse.Namespace) -> None:
    """Print the paper's configurations with their parameter counts."""
    header = f"{'name':40} {'model':16} {'h':>4} {'layers':>6} {'params':>11} {'effective':>11}  paper"
    print(header)
    print("-" * len(header))
    for name, config in PAPER_CONFIGS.items():
        model = build_paper_model(name)
        print(
            f"{name:40} {config.architecture:16} {config.model['hidden']:>4} "
            f"{config.model['layers']:>6} {parameter_count(model):>11,} "
            f"{parameter_count(model, effective=True):>11,}  "
            f"{config.paper_result:.2f} {config.unit} ({config.split})"
        )
    print("\nparams: stored weights; effective: without the weights that masks hold at zero.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pixelrnn", description="PixelCNN, Row LSTM and Diagonal BiLSTM (PixelRNN, ICML 2016)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    configs = commands.add_parser("configs", help="list the paper's configurations and their sizes")
    configs.set_defaults(run=_configs)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (ValueError, OSError) as error:
        print(f"pixelrnn: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
