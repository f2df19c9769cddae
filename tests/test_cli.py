"""Bad input: one clear line on stderr and exit status 2, never a traceback.

Most tests call the command line's ``main`` in this process (``pixelrnn_cli_here``); the first
tests go through ``python -m pixelrnn`` in a new process, as a user does."""

from __future__ import annotations

import pytest
from test_training import TRAIN, pixelrnn_cli, pixelrnn_cli_here

from pixelrnn.cli.demo import SHIPPED_MODEL


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pixelrnn: error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_unknown_model_lists_the_known_ones(tmp_path):
    result = pixelrnn_cli("train", "--model", "pixelsnail", "--dataset", "digits", "--out", str(tmp_path / "r"))
    assert_one_line_error(result, "unknown model 'pixelsnail'", "pixelcnn, row_lstm, diagonal_bilstm, gated_pixelcnn")


def test_unknown_dataset_lists_the_known_ones(tmp_path):
    result = pixelrnn_cli_here("train", "--model", "pixelcnn", "--dataset", "svhn", "--out", str(tmp_path / "r"))
    assert_one_line_error(result, "unknown dataset 'svhn'", "binarized-mnist", "cifar10")


def test_missing_data_files_are_named(tmp_path):
    result = pixelrnn_cli_here("evaluate", "--checkpoint", str(tmp_path), "--dataset", "binarized-mnist",
                               "--split", "test", "--data-dir", str(tmp_path))
    assert_one_line_error(result)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("cli") / "run"
    assert pixelrnn_cli_here(*TRAIN, "--out", run).returncode == 0
    return run


def test_corrupt_checkpoint(tmp_path, trained):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes((trained / "best.safetensors").read_bytes()[:100])
    result = pixelrnn_cli("evaluate", "--checkpoint", str(bad), "--dataset", "digits", "--split", "test")
    assert_one_line_error(result, "corrupt or truncated")


def test_missing_folders_and_files_are_named(tmp_path, trained):
    result = pixelrnn_cli_here("evaluate", "--checkpoint", str(trained), "--dataset", "folder", "--split", "test",
                               "--data-dir", str(tmp_path / "none"))
    assert_one_line_error(result)
    result = pixelrnn_cli_here("evaluate", "--checkpoint", str(trained), "--dataset", "mnist", "--split", "test",
                               "--data-dir", str(tmp_path))
    assert_one_line_error(result, "t10k-images-idx3-ubyte.gz not found")


def test_levels_mismatch_is_refused(tmp_path, trained):
    import gzip
    import struct

    data = struct.pack(">BBBB", 0, 0, 8, 3) + struct.pack(">3I", 2, 28, 28) + bytes(2 * 784)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(data))
    result = pixelrnn_cli_here("evaluate", "--checkpoint", str(trained), "--dataset", "mnist", "--split", "test",
                               "--data-dir", str(tmp_path))
    assert_one_line_error(result, "256 levels", "the model 1 channel(s) and 2 levels")


@pytest.mark.parametrize("option, value", [
    ("--steps", "-5"), ("--epochs", "0"), ("--batch-size", "0"), ("--checkpoint-every", "0"),
    ("--eval-every", "0"), ("--patience", "0"), ("--limit", "0"), ("--hidden", "0"), ("--layers", "0"),
    ("--lr", "-1"), ("--lr-decay", "0"), ("--clip", "-1"), ("--ema-from", "-2"), ("--dropout", "1"),
    ("--lr", "nan"), ("--lr", "inf"), ("--lr-decay", "inf"), ("--clip", "nan"), ("--dropout", "nan"),
    ("--ema", "nan"), ("--lr-at", "10:inf"),
])
def test_training_options_out_of_range_are_refused_before_any_work(tmp_path, option, value):
    args = ["train", "--model", "pixelcnn", "--dataset", "digits", "--hidden", "4", "--layers", "1",
            "--out", str(tmp_path / "run"), option, value]
    if option not in ("--steps", "--epochs"):
        args += ["--steps", "2"]
    assert_one_line_error(pixelrnn_cli_here(*args), option)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", [
    ["sample", "--n", "0"], ["sample", "--height", "0"], ["sample", "--width", "-1"],
    ["sample", "--columns", "0"], ["sample", "--scale", "0"], ["sample", "--n", "two"],
    ["sample", "--temperature", "nan"], ["sample", "--temperature", "inf"], ["sample", "--temperature", "0"],
    ["complete", "--dataset", "digits", "--known-rows", "-1"],
    ["complete", "--dataset", "digits", "--known-rows", "4", "--samples", "0"],
    ["complete", "--dataset", "digits", "--known-rows", "4", "--n", "0"],
    ["evaluate", "--dataset", "digits", "--split", "test", "--limit", "-3"],
    ["evaluate", "--dataset", "digits", "--split", "test", "--batch-size", "0"],
])
def test_generation_and_evaluation_counts_out_of_range_are_refused(tmp_path, trained, command):
    out = ["--out", str(tmp_path / "x.png")] if command[0] != "evaluate" else []
    result = pixelrnn_cli_here(*command, "--checkpoint", str(trained), *out)
    assert_one_line_error(result, f"pixelrnn {command[0]} --help")
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("command", [["sample"], ["complete", "--dataset", "digits", "--known-rows", "4"]])
@pytest.mark.parametrize("name", ["x.jpg", "x.txt", "x"])
def test_a_grid_file_not_named_png_is_refused(tmp_path, trained, command, name):
    result = pixelrnn_cli_here(*command, "--checkpoint", str(trained), "--out", str(tmp_path / name))
    assert_one_line_error(result, "needs a file name ending in .png")
    assert list(tmp_path.iterdir()) == []


def test_sample_streams_any_number_of_images_to_a_npy_file(tmp_path, trained):
    import numpy as np
    import torch

    import pixelrnn

    out = tmp_path / "set.npy"
    result = pixelrnn_cli_here("sample", "--checkpoint", str(trained), "--n", "5", "--batch-size", "2", "--height", "4",
                               "--seed", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr
    values = np.load(out)
    assert values.shape == (5, 1, 4, 4) and values.dtype == np.uint8
    model = pixelrnn.load_model(trained)
    assert torch.equal(torch.from_numpy(values[:2]).long(), model.sample(2, 4, 4, seed=1))
    too_many = pixelrnn_cli_here("sample", "--checkpoint", str(trained), "--n", "5000",
                                 "--out", str(tmp_path / "g.png"))
    assert_one_line_error(too_many, "a PNG grid holds at most 4096 images", "FILE.npy")
    huge = pixelrnn_cli_here("sample", "--checkpoint", str(trained), "--n", "1000000000000",
                             "--out", str(tmp_path / "h.npy"))
    assert_one_line_error(huge, "GB are free")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set.npy"]


def test_sample_writes_into_a_new_folder_what_the_api_draws(tmp_path, trained):
    import numpy as np
    import torch

    import pixelrnn

    out = tmp_path / "new" / "folder" / "s.png"
    result = pixelrnn_cli_here("sample", "--checkpoint", str(trained), "--n", "3", "--height", "5", "--width", "7",
                               "--seed", "4", "--out", str(out))
    assert result.returncode == 0, result.stderr
    values = torch.from_numpy(np.load(out.with_suffix(".npy"))).long()
    assert out.stat().st_size > 0 and values.shape == (3, 1, 5, 7)
    assert torch.equal(values, pixelrnn.sample(pixelrnn.load_model(trained), 3, 5, 7, seed=4))


def test_complete_keeps_the_known_rows(tmp_path, trained):
    import numpy as np

    import pixelrnn

    out = tmp_path / "c.png"
    result = pixelrnn_cli_here("complete", "--checkpoint", str(trained), "--dataset", "digits", "--known-rows", "9",
                               "--n", "2", "--samples", "3", "--seed", "0", "--out", str(out))
    assert result.returncode == 0, result.stderr
    values = np.load(out.with_suffix(".npy"))  # (images, completions, C, H, W)
    originals = pixelrnn.load_dataset("digits", "test")[:2].numpy()
    assert values.shape == (2, 3, 1, 28, 28) and out.stat().st_size > 0
    assert (values[:, :, :, :9] == originals[:, None, :, :9]).all()
    assert set(np.unique(values)) <= {0, 1}


def test_complete_says_how_many_images_it_completed(tmp_path, trained):
    import numpy as np

    out = tmp_path / "c.png"
    result = pixelrnn_cli_here("complete", "--checkpoint", str(trained), "--dataset", "digits", "--known-rows", "27",
                               "--limit", "2", "--n", "5", "--samples", "1", "--seed", "0", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("2 images (5 asked, 2 available) x 1 completions")  # --limit 2 kept
    assert np.load(out.with_suffix(".npy")).shape == (2, 1, 1, 28, 28)


def test_an_output_folder_that_is_a_file_is_one_line(tmp_path, trained):
    (tmp_path / "taken").write_text("a file, not a folder")
    result = pixelrnn_cli_here("sample", "--checkpoint", str(trained), "--out", str(tmp_path / "taken" / "x.png"))
    assert_one_line_error(result, f"{tmp_path / 'taken'}: cannot write there (File exists)")
    assert "Errno" not in result.stderr


@pytest.mark.parametrize("command", ["evaluate", "complete"])
def test_binarizing_binary_data_is_refused(tmp_path, trained, command):
    # Bernoulli(value / 255) of 0/1 data would be almost all zeros: a silently wrong NLL.
    args = ["--split", "test"] if command == "evaluate" else ["--known-rows", "4", "--out", str(tmp_path / "c.png")]
    result = pixelrnn_cli_here(command, "--checkpoint", str(trained), "--dataset", "digits", "--binarize", *args)
    assert_one_line_error(result, "--binarize needs a grey 256-level dataset, not digits")


def test_samples_default_to_the_size_the_model_was_trained_on(tmp_path):
    import numpy as np
    from PIL import Image

    from pixelrnn.training.checkpoints import read_checkpoint, trained_image_size

    (tmp_path / "images").mkdir()
    for i in range(4):
        Image.fromarray(np.full((6, 6, 3), 40 * i, np.uint8)).save(tmp_path / "images" / f"{i}.png")
    run = tmp_path / "run"
    trained = pixelrnn_cli_here("train", "--model", "pixelcnn", "--dataset", "folder", "--data-dir",
                                str(tmp_path / "images"), "--image-size", "6", "--hidden", "4", "--layers", "1",
                           "--steps", "1", "--out", str(run), "--quiet")
    assert trained.returncode == 0, trained.stderr
    drawn = pixelrnn_cli_here("sample", "--checkpoint", str(run), "--n", "2", "--seed", "0",
                              "--out", str(tmp_path / "s.png"))
    assert drawn.returncode == 0, drawn.stderr
    assert np.load(tmp_path / "s.npy").shape == (2, 3, 6, 6)
    shipped = read_checkpoint(SHIPPED_MODEL)[1]  # saved before sizes were recorded: its dataset's
    assert trained_image_size(shipped) == (28, 28)


@pytest.mark.parametrize("device", ["gpu", "cuda:7"])
@pytest.mark.parametrize("command", [
    [*TRAIN, "--out", "{tmp}/run"], ["evaluate", "--dataset", "digits", "--split", "test", "--checkpoint", "{run}"],
    ["sample", "--checkpoint", "{run}", "--out", "{tmp}/run/x.png"],
    ["complete", "--dataset", "digits", "--known-rows", "4", "--checkpoint", "{run}", "--out", "{tmp}/run/x.png"],
    ["demo", "--out", "{tmp}/run"],
], ids=lambda c: c[0] if isinstance(c, list) else c)
def test_a_device_that_is_not_here_is_refused_before_any_work(tmp_path, trained, command, device):
    import torch

    if device.startswith("cuda") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    args = [a.format(tmp=tmp_path, run=trained) for a in command]
    result = pixelrnn_cli_here(*args, "--device", device)
    assert_one_line_error(result, f"--device {device}: ")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", ["datasets", "configs"])
def test_a_reader_that_leaves_early_stops_the_cli_quietly(command):
    """`pixelrnn datasets | head -1`: no error message, the SIGPIPE status (as Unix tools)."""
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-m", "pixelrnn", command],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # before the command writes anything
    stderr = process.stderr.read()
    assert process.wait() == 141 and stderr == b""


@pytest.mark.parametrize("command", [
    ["train", "--model", "pixelcnn", "--dataset", "digits", "--out", "{tmp}/run", "--steps", "1", "--image-size", "8"],
    ["train", "--model", "pixelcnn", "--dataset", "digits", "--out", "{tmp}/run", "--steps", "1", "--data-dir", "{tmp}"],
    ["evaluate", "--checkpoint", "{run}", "--dataset", "digits", "--split", "test", "--channels", "1"],
    ["complete", "--checkpoint", "{run}", "--dataset", "digits", "--known-rows", "4", "--out", "{tmp}/c.png",
     "--data-dir", "{tmp}"],
])
def test_a_dataset_option_that_nothing_would_read_is_refused(tmp_path, trained, command):
    """--image-size / --channels for a dataset other than folder, --data-dir for the embedded digits."""
    args = [a.format(tmp=tmp_path, run=trained) for a in command]
    expected = "folder dataset" if "--data-dir" not in args else "part of the package"
    assert_one_line_error(pixelrnn_cli_here(*args), expected)
    assert list(tmp_path.iterdir()) == []


def test_evaluate_writes_each_images_nll(tmp_path, trained):
    import json

    import numpy as np
    import torch

    import pixelrnn

    out = tmp_path / "new" / "nll.npy"
    result = pixelrnn_cli_here("evaluate", "--checkpoint", str(trained), "--dataset", "digits", "--split", "test",
                               "--limit", "40", "--json", "--per-image", str(out))
    assert result.returncode == 0, result.stderr
    report, nll = json.loads(result.stdout), np.load(out)
    assert nll.shape == (40,) and nll.dtype == np.float64 and report["per_image"] == str(out)
    assert abs(nll.mean() - report["nll_nats"]) < 1e-9
    model, images = pixelrnn.load_model(trained), pixelrnn.load_dataset("digits", "test")[:40]
    torch.testing.assert_close(torch.from_numpy(nll), -model.log_prob(images.long()).double())
    assert_one_line_error(pixelrnn_cli_here("evaluate", "--checkpoint", str(trained), "--dataset", "digits", "--split",
                                            "test", "--per-image", str(tmp_path / "nll.txt")), "ending in .npy")


def test_the_installed_command_is_the_cli():
    from importlib.metadata import entry_points

    from pixelrnn.cli.main import main

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "pixelrnn"]
    assert script.load() is main
