"""pixelrnn.receptive_field and `pixelrnn receptive-field`: the field of every value is the row of
the dependency matrix (tests/helpers.py, the causality tests' oracle), for every architecture with
1 and 3 channels, and for Multi-Scale models what changing each value moves (an oracle without
gradients); trained models have their architecture's field; the picture and the values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import ARCHITECTURES, dependency_matrix, raster_index, tiny_model, tiny_multiscale
from PIL import Image
from test_training import pixelrnn_cli_here

import pixelrnn
from pixelrnn.errors import PixelRNNError
from pixelrnn.receptive_field import describe, earlier_values, generation_order, receptive_field

ROOT = Path(__file__).resolve().parents[1]
HEIGHT, WIDTH = 4, 5


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_the_field_of_every_value_is_its_row_of_the_dependency_matrix(arch, channels):
    model = tiny_model(arch, channels, 2 if channels == 1 else 256)
    dep = dependency_matrix(model, HEIGHT, WIDTH)
    order = raster_index(channels, HEIGHT, WIDTH)
    assert torch.equal(generation_order(model, HEIGHT, WIDTH), order)
    for c in range(channels):
        for i in range(HEIGHT):
            for j in range(WIDTH):
                field = receptive_field(model, HEIGHT, WIDTH, (i, j), c, images=3, seed=i * WIDTH + j)
                assert torch.equal(field > 0, dep[order[c, i, j]][order]), (c, i, j)
                counts = describe(field, earlier_values(model, HEIGHT, WIDTH, (i, j), c))
                assert counts["later_seen"] == 0 and counts["earlier"] == order[c, i, j]


def test_the_paper_blind_spots_show_at_default_initialisation():
    """Models as ``build_model`` makes them (float32, 3 layers, pixel (8, 3) of a 10 x 12 image):
    the PixelCNN misses the triangle to the right of its pixel and the rows beyond its depth, the
    Row LSTM the triangle only, the Diagonal BiLSTM one value (the end of the row above), and the
    Gated PixelCNN no triangle: the same columns in every row within its reach."""
    pixel, height, width = (8, 3), 10, 12
    missed = {}
    for arch in ARCHITECTURES:
        torch.manual_seed(0)
        model = pixelrnn.build_model(arch, channels=1, levels=2, hidden=8, layers=3)
        earlier = earlier_values(model, height, width, pixel)
        missed[arch] = (earlier & ~(receptive_field(model, height, width, pixel) > 0))[0]
    pixelcnn, row_lstm = (torch.zeros(height, width, dtype=torch.bool) for _ in range(2))
    for r in range(1, 9):  # r rows above: 3 + (r - 1) columns to the right seen, min(3, r - 1) after 3 blocks
        row_lstm[8 - r, 3 + 3 + (r - 1) + 1 :] = True
        pixelcnn[8 - r, 3 + 3 + min(3, r - 1) + 1 :] = True
    pixelcnn[:2] = True  # beyond the 3 + 3 rows that the 7 x 7 input layer and 3 blocks reach
    assert torch.equal(missed["pixelcnn"], pixelcnn)
    assert torch.equal(missed["row_lstm"], row_lstm)
    assert missed["diagonal_bilstm"].nonzero().tolist() == [[7, 11]]
    gated = missed["gated_pixelcnn"]
    assert gated[7].any() and all(torch.equal(gated[row], gated[7]) for row in range(2, 8)) and gated[:2].all()


def test_a_shipped_model_has_its_architectures_field_and_is_left_as_it_was():
    model = pixelrnn.load_model(ROOT / "checkpoints" / "binarized-mnist-diagonal-bilstm")
    before = {name: p.clone() for name, p in model.state_dict().items()}
    pixel = (20, 5)
    field = receptive_field(model, 28, 28, pixel)
    assert describe(field, earlier_values(model, 28, 28, pixel)) == {"earlier": 20 * 28 + 5, "seen": 20 * 28 + 4, "blind_spot": 1, "later_seen": 0}
    assert field[0, 19, 27] == 0
    state = model.state_dict()
    assert all(torch.equal(state[name], value) and state[name].dtype == value.dtype for name, value in before.items())


def test_bad_requests_are_one_clear_error():
    model = tiny_model("pixelcnn", 3, 256)
    with pytest.raises(PixelRNNError, match=r"pixel \(4, 0\) is outside the 4 x 5 image"):
        receptive_field(model, HEIGHT, WIDTH, (4, 0))
    with pytest.raises(PixelRNNError, match=r"channel 3: the model has channels 0..2"):
        receptive_field(model, HEIGHT, WIDTH, (1, 1), channel=3)


def what_changing_each_value_moves(model, images: torch.Tensor) -> torch.Tensor:
    """(C, H, W, C, H, W) bool, an oracle without gradients: [target, source] is True where setting
    the source value to another level, in one of ``images``, moves the target's predictive
    distribution (``predictive_log_probs``)."""
    before = model.predictive_log_probs(images)
    moves = torch.zeros(*images.shape[1:], *images.shape[1:], dtype=torch.bool)
    for c, i, j in np.ndindex(*images.shape[1:]):
        for level in range(model.levels):
            changed = images.clone()
            changed[:, c, i, j] = level
            moved = (model.predictive_log_probs(changed) - before).abs().amax(dim=(0, 2)) > 1e-12  # (C, H, W)
            moves[..., c, i, j] |= moved
    return moves


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_a_multiscale_models_field_is_what_changing_each_value_moves(arch, channels):
    """Both stages: the small image's pixels (2 i, 2 j) see the small image before them, the others
    their stage's context and, through the conditioning network, the small image near them; every
    field lies in the values the Multi-Scale order generates before it (its small image first)."""
    model = tiny_multiscale(arch, channels, 3)
    images = torch.randint(0, 3, (3, channels, HEIGHT, WIDTH), generator=torch.Generator().manual_seed(1))
    moves = what_changing_each_value_moves(model, images)
    for c, i, j in np.ndindex(channels, HEIGHT, WIDTH):
        field = receptive_field(model, HEIGHT, WIDTH, (i, j), c, at=images.double())
        assert torch.equal(field > 0, moves[c, i, j]), (c, i, j)
        assert not (moves[c, i, j] & ~earlier_values(model, HEIGHT, WIDTH, (i, j), c)).any()
    small_values = generation_order(model, HEIGHT, WIDTH) < channels * 2 * 3  # a 2 x 3 small image
    assert torch.equal(small_values[0], torch.tensor([[1, 0, 1, 0, 1], [0] * 5, [1, 0, 1, 0, 1], [0] * 5]).bool())
    assert moves[0, 1, 1][small_values].any()  # the conditional stage sees the small image


def test_a_class_conditional_model_is_measured_given_a_class():
    model = tiny_model("row_lstm", 1, 2, classes=3)
    field = receptive_field(model, HEIGHT, WIDTH, (2, 2))
    assert describe(field, earlier_values(model, HEIGHT, WIDTH, (2, 2)))["later_seen"] == 0 and (field > 0).any()


def test_the_command_draws_every_architecture_and_writes_the_fields(tmp_path):
    out = tmp_path / "pictures" / "fields.png"
    result = pixelrnn_cli_here("receptive-field", "--model", *ARCHITECTURES, "--channels", "3", "--height", "6",
                               "--width", "7", "--pixel", "4", "2", "--channel", "1", "--out", out)
    assert result.returncode == 0, result.stderr
    fields = np.load(out.with_suffix(".npy"))
    assert fields.shape == (len(ARCHITECTURES), 3, 6, 7) and fields.dtype == np.float64
    earlier = earlier_values(tiny_model("pixelcnn", 3, 256), 6, 7, (4, 2), 1).numpy()
    assert not (fields[:, ~earlier] > 0).any() and (fields[:, earlier] > 0).any(axis=1).all()
    assert "diagonal_bilstm: sees 90 of the 91 earlier values (1 not seen)" in result.stdout
    with Image.open(out) as picture:
        assert picture.format == "PNG" and picture.width > picture.height  # a column per model


def test_the_command_takes_trained_models_at_their_size(tmp_path):
    shipped = [ROOT / "checkpoints" / name for name in ("binarized-mnist-pixelcnn", "binarized-mnist-row-lstm")]
    result = pixelrnn_cli_here("receptive-field", "--checkpoint", *shipped, "--json", "--out", tmp_path / "f.png")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["height"], report["width"], report["pixel"]) == (28, 28, [21, 14])
    assert [m["model"] for m in report["models"]] == [p.name for p in shipped]
    assert all(m["earlier"] == 21 * 28 + 14 and m["later_seen"] == 0 and m["blind_spot"] > 0 for m in report["models"])


def test_the_command_draws_a_multiscale_model_in_its_order(tmp_path):
    pixelrnn.save_model(tmp_path / "ms.safetensors", tiny_multiscale("row_lstm", 1, 2))
    out = tmp_path / "ms.png"
    result = pixelrnn_cli_here("receptive-field", "--checkpoint", tmp_path / "ms.safetensors", "--height", "6",
                               "--pixel", "3", "1", "--json", "--out", out)
    assert result.returncode == 0, result.stderr
    (counts,) = json.loads(result.stdout)["models"]
    field = torch.from_numpy(np.load(out.with_suffix(".npy"))[0])
    earlier = earlier_values(tiny_multiscale("row_lstm", 1, 2), 6, 6, (3, 1))
    # the 3 x 3 small image, then the others in raster order: 3 + 6 + 3 in rows 0-2 and 1 in row 3
    assert counts["earlier"] == int(earlier.sum()) == 9 + 3 + 6 + 3 + 1
    assert counts["later_seen"] == 0 and counts["seen"] == int((field > 0).sum()) > 0


def test_the_command_measures_a_class_conditional_model_given_a_class(tmp_path):
    shipped = ROOT / "checkpoints" / "mnist-binarized-conditional-pixelcnn"
    result = pixelrnn_cli_here("receptive-field", "--checkpoint", shipped, "--label", "7", "--out", tmp_path / "f.png")
    assert result.returncode == 0, result.stderr
    expected = receptive_field(pixelrnn.load_model(shipped), 28, 28, (21, 14), label=7)
    assert np.array_equal(np.load(tmp_path / "f.npy")[0], expected.numpy())
    wrong = pixelrnn_cli_here("receptive-field", "--checkpoint", shipped, "--label", "10", "--out", tmp_path / "f.png")
    assert wrong.returncode == 2 and "class 10: the model has classes 0..9" in wrong.stderr


def test_the_command_refuses_what_it_cannot_draw(tmp_path):
    mixed = pixelrnn_cli_here("receptive-field", "--checkpoint", ROOT / "checkpoints" / "binarized-mnist-pixelcnn",
                              ROOT / "checkpoints" / "cifar10-row-lstm-h32", "--out", tmp_path / "f.png")
    assert mixed.returncode == 2 and "different numbers of channels" in mixed.stderr
    outside = pixelrnn_cli_here("receptive-field", "--model", "pixelcnn", "--pixel", "16", "0", "--out", tmp_path / "f.png")
    assert outside.returncode == 2 and outside.stderr.strip() == "pixelrnn: error: pixel (16, 0) is outside the 16 x 16 image"
    both = pixelrnn_cli_here("receptive-field", "--model", "pixelcnn", "--checkpoint", "x", "--out", tmp_path / "f.png")
    assert both.returncode == 2 and "not allowed with argument --model" in both.stderr
    unread = pixelrnn_cli_here("receptive-field", "--checkpoint", ROOT / "checkpoints" / "binarized-mnist-pixelcnn",
                               "--layers", "2", "--out", tmp_path / "f.png")
    assert unread.returncode == 2 and "--layers sizes the random models of --model" in unread.stderr
    staged = pixelrnn_cli_here("receptive-field", "--checkpoint", ROOT / "checkpoints" / "binarized-mnist-pixelcnn",
                               "--scale-factor", "2", "--out", tmp_path / "f.png")
    assert staged.returncode == 2 and "--scale-factor sizes the random models of --model" in staged.stderr
    single = pixelrnn_cli_here("receptive-field", "--model", "pixelcnn", "--scale-factor", "1", "--out", tmp_path / "f.png")
    assert single.returncode == 2 and "1: needs a whole number >= 2" in single.stderr
    assert not list(tmp_path.glob("f.*"))
