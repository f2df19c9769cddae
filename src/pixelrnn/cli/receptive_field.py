"""``pixelrnn receptive-field``: which earlier values one prediction sees, drawn for architectures
(random models of a chosen size) or trained models, side by side (paper Figures 2 and 4)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import PixelRNNError
from ..models.registry import ARCHITECTURES
from .types import count, png_path


def add_receptive_field_parser(commands) -> None:
    parser = commands.add_parser(
        "receptive-field", help="draw which earlier values one prediction depends on, model by model",
        description="Draw the receptive field of one value's prediction: the earlier values it depends on "
        "(shaded by the size of the gradient, log scale), those it cannot see, and the later ones; one "
        "column per model, one row per input channel. Give architectures (random models of the size "
        "below) or trained models.")
    models = parser.add_mutually_exclusive_group(required=True)
    models.add_argument("--model", nargs="+", choices=list(ARCHITECTURES), metavar="ARCH",
                        help=f"architectures: {', '.join(ARCHITECTURES)}")
    models.add_argument("--checkpoint", nargs="+", metavar="PATH", help="run folders or model files")
    parser.add_argument("--out", type=png_path, required=True, metavar="FILE.png",
                        help="the picture (PNG); the fields go beside it as .npy, (models, C, H, W) float64")
    parser.add_argument("--height", type=count(1), help="image height (default 16, or the size a model was trained on)")
    parser.add_argument("--width", type=count(1), help="image width (default: the height, or the trained size)")
    parser.add_argument("--pixel", type=count(0), nargs=2, metavar=("ROW", "COLUMN"),
                        help="the predicted pixel (default: three quarters down, in the middle)")
    parser.add_argument("--channel", type=count(0), default=0, help="the predicted channel (0: R or grey; 1: G; 2: B)")
    sizes = parser.add_argument_group("with --model: the models' size (random weights)")
    sizes.add_argument("--channels", type=int, choices=[1, 3], help="1 (2 levels) or 3 (RGB, 256 levels); default 1")
    sizes.add_argument("--layers", type=count(1), help="default 4")
    sizes.add_argument("--hidden", type=count(1), help="h (default 8: the field does not depend on it)")
    sizes.add_argument("--kernel-size", type=count(1), help="PixelCNN, Row LSTM and Gated PixelCNN kernels (odd)")
    sizes.add_argument("--scale-factor", type=count(2), metavar="F",
                       help="Multi-Scale models (section 3.6) whose stages are each ARCH, small image 1/F the size")
    parser.add_argument("--label", type=count(0), default=0, metavar="K",
                        help="class-conditional models: measured given class K (default 0; the class does not "
                        "change which values a prediction sees)")
    parser.add_argument("--images", type=count(1), default=4,
                        help="random images whose gradients are averaged (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="the random weights and images")
    parser.add_argument("--json", action="store_true", help="print the counts as JSON")
    parser.set_defaults(run=receptive_field_command)


def _models(args: argparse.Namespace) -> list[tuple[str, object, tuple[int, int] | None]]:
    """(label, model, trained image size or None) for each --model or --checkpoint."""
    import torch

    from ..models import build_model, build_multiscale
    from ..training.checkpoints import load_model_with_meta, trained_image_size

    sizes = {"--channels": args.channels, "--layers": args.layers, "--hidden": args.hidden,
             "--kernel-size": args.kernel_size, "--scale-factor": args.scale_factor}
    if args.checkpoint:
        given = [flag for flag, value in sizes.items() if value is not None]
        if given:
            raise PixelRNNError(f"{given[0]} sizes the random models of --model; a --checkpoint has its own size")
        loaded = [(path, *load_model_with_meta(path, "cpu")) for path in args.checkpoint]
        return [(Path(path).name, model, trained_image_size(meta)) for path, model, meta in loaded]
    args.channels, args.layers, args.hidden = args.channels or 1, args.layers or 4, args.hidden or 8
    options = dict(channels=args.channels, levels=2 if args.channels == 1 else 256, hidden=args.hidden,
                   layers=args.layers)
    built = []
    for arch in args.model:
        torch.manual_seed(args.seed)
        kernel = {} if args.kernel_size is None or not ARCHITECTURES[arch].uses_kernel_size else {
            "kernel_size": args.kernel_size}
        if args.scale_factor:
            built.append((f"{arch}, multi-scale x{args.scale_factor}",
                          build_multiscale(arch, args.scale_factor, **options, **kernel), None))
        else:
            built.append((arch, build_model(arch, **options, **kernel), None))
    return built


def receptive_field_command(args: argparse.Namespace) -> None:
    import torch

    from ..receptive_field import describe, earlier_values, receptive_field
    from ..visualize import field_picture, plot_receptive_fields
    from .io import make_parent, save_array

    make_parent(args.out)
    models = _models(args)
    channels = {model.channels for _, model, _ in models}
    if len(channels) > 1:
        raise PixelRNNError("the models have different numbers of channels: draw them apart")
    (channels,) = channels
    trained = next((size for _, _, size in models if size), None) or (16, 16)
    height = args.height or trained[0]
    width = args.width or (args.height if args.height else trained[1])
    pixel = tuple(args.pixel) if args.pixel else (height * 3 // 4, width // 2)
    fields, panels, counts = [], [], []
    for label, model, _ in models:
        field = receptive_field(model, height, width, pixel, args.channel, images=args.images, seed=args.seed,
                                label=args.label)
        fields.append(field)
        earlier = earlier_values(model, height, width, pixel, args.channel)  # in the model's own order
        panels.append((label, field_picture(field, earlier, pixel, args.channel)))
        counts.append({"model": label, **describe(field, earlier)})
    channel = f"{'RGB'[args.channel]} of " if channels == 3 else ""
    built = "" if args.checkpoint else f", random models of {args.layers} layers"
    plot_receptive_fields(panels, args.out, f"the receptive field of {channel}pixel {pixel} (row, column) in a "
                                            f"{height} x {width} image{built}")
    values = Path(args.out).with_suffix(".npy")
    save_array(torch.stack(fields).numpy(), values)
    if args.json:
        print(json.dumps({"pixel": list(pixel), "channel": args.channel, "height": height, "width": width,
                          "models": counts}))
        return
    for entry in counts:
        print(f"{entry['model']}: sees {entry['seen']} of the {entry['earlier']} earlier values "
              f"({entry['blind_spot']} not seen)")
    print(f"wrote {args.out} (fields: {values})")
