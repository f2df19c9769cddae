"""``pixelrnn serve``: the interactive page (pixelrnn.app) on a local web server."""

from __future__ import annotations

import argparse
import sys

from ..errors import PixelRNNError


def add_serve_parser(commands) -> None:
    serve = commands.add_parser(
        "serve", help="a local web page: draw or pick an image, complete it, sample, see -log p and receptive fields",
        description="Serve the interactive page on http://HOST:PORT (needs: pip install 'pixelrnn[app]').")
    serve.add_argument("--checkpoint", action="append", default=[], metavar="PATH",
                       help="a run folder or model file to offer (repeatable); the shipped models are offered too")
    serve.add_argument("--no-shipped", action="store_true", help="offer only the --checkpoint models")
    serve.add_argument("--data", action="append", default=[], metavar="DATASET=DIR",
                       help="where a dataset's files are, for its example images, e.g. cifar10=data/cifar10")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8000, help="default 8000 (0: any free port)")
    serve.add_argument("--workers", type=int, default=2, help="sampling jobs run at once (more wait; default 2)")
    serve.set_defaults(run=serve_command)


def data_folders(pairs: list[str]) -> dict[str, str]:
    from ..data import dataset_info

    folders = {}
    for pair in pairs:
        name, _, folder = pair.partition("=")
        if not name or not folder:
            raise PixelRNNError(f"--data {pair!r}: expected DATASET=DIR")
        dataset_info(name)  # an unknown dataset is an error here, not on the page
        folders[name] = folder
    return folders


def serve_command(args: argparse.Namespace) -> None:
    try:
        import uvicorn

        from ..app.catalog import Catalog
        from ..app.server import create_app
    except ImportError as error:
        raise PixelRNNError(f"pixelrnn serve needs the app extra: pip install 'pixelrnn[app]' ({error})") from None
    if args.workers < 1 or not 0 <= args.port < 65536:
        raise PixelRNNError("--workers must be >= 1 and --port in 0..65535")
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"pixelrnn: warning: serving on {args.host}: anyone who reaches this address can use the page "
              "and this machine's CPU or GPU (there is no login)", file=sys.stderr)
    catalog = Catalog(args.checkpoint, shipped=not args.no_shipped, data=data_folders(args.data))
    app = create_app(catalog, workers=args.workers)
    print(f"pixelrnn: serving {len(catalog.names())} model(s) on http://{args.host}:{args.port}/ (Ctrl-C stops)",
          file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
