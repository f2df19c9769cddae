"""Bad input: one clear line on stderr and exit status 2, never a traceback."""

from __future__ import annotations

import pytest
from test_training import TRAIN, pixelrnn_cli


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pixelrnn: error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_unknown_model_lists_the_known_ones(tmp_path):
    result = pixelrnn_cli("train", "--model", "pixelsnail", "--dataset", "digits", "--out", str(tmp_path / "r"))
    assert_one_line_error(result, "unknown model 'pixelsnail'", "pixelcnn, row_lstm, diagonal_bilstm")


def test_unknown_dataset_lists_the_known_ones(tmp_path):
    result = pixelrnn_cli("train", "--model", "pixelcnn", "--dataset", "svhn", "--out", str(tmp_path / "r"))
    assert_one_line_error(result, "unknown dataset 'svhn'", "binarized-mnist", "cifar10")


def test_missing_data_files_are_named(tmp_path):
    result = pixelrnn_cli("evaluate", "--checkpoint", str(tmp_path), "--dataset", "binarized-mnist",
                          "--split", "test", "--data-dir", str(tmp_path))
    assert_one_line_error(result)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("cli") / "run"
    assert pixelrnn_cli(*TRAIN, "--out", str(run)).returncode == 0
    return run


def test_corrupt_checkpoint(tmp_path, trained):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes((trained / "best.safetensors").read_bytes()[:100])
    result = pixelrnn_cli("evaluate", "--checkpoint", str(bad), "--dataset", "digits", "--split", "test")
    assert_one_line_error(result, "corrupt or truncated")


def test_missing_folders_and_files_are_named(tmp_path, trained):
    result = pixelrnn_cli("evaluate", "--checkpoint", str(trained), "--dataset", "folder", "--split", "test",
                          "--data-dir", str(tmp_path / "none"))
    assert_one_line_error(result)
    result = pixelrnn_cli("evaluate", "--checkpoint", str(trained), "--dataset", "mnist", "--split", "test",
                          "--data-dir", str(tmp_path))
    assert_one_line_error(result, "t10k-images-idx3-ubyte.gz not found")


def test_levels_mismatch_is_refused(tmp_path, trained):
    import gzip
    import struct

    data = struct.pack(">BBBB", 0, 0, 8, 3) + struct.pack(">3I", 2, 28, 28) + bytes(2 * 784)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(data))
    result = pixelrnn_cli("evaluate", "--checkpoint", str(trained), "--dataset", "mnist", "--split", "test",
                          "--data-dir", str(tmp_path))
    assert_one_line_error(result, "256 levels", "the model 1 channel(s) and 2 levels")
