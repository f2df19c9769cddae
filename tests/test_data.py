"""Dataset loaders on small files written here in the official formats, and on the real files."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch

import pixelrnn
from pixelrnn.data import datasets as registry
from pixelrnn.errors import PixelRNNError

SHARED = Path(os.environ.get("PIXELRNN_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
FASHION = Path("/usr/share/datasets/fashion-mnist")


def write_amat(path: Path, images: np.ndarray) -> None:
    text = "".join(" ".join(str(v) for v in row) + "\n" for row in images.reshape(len(images), -1))
    data = text.encode()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def write_idx(path: Path, images: np.ndarray) -> None:
    data = struct.pack(">BBBB", 0, 0, 8, images.ndim) + struct.pack(f">{images.ndim}I", *images.shape)
    data += images.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# --- binarized MNIST -------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".amat", ".amat.gz"])
def test_binarized_mnist_plain_and_gz(tmp_path, rng, monkeypatch, suffix):
    monkeypatch.setitem(registry._BMNIST_COUNT, "test", 5)
    images = rng.integers(0, 2, (5, 784))
    write_amat(tmp_path / f"binarized_mnist_test{suffix}", images)
    loaded = pixelrnn.load_dataset("binarized-mnist", "test", tmp_path)
    assert loaded.shape == (5, 1, 28, 28) and loaded.dtype == torch.uint8
    assert np.array_equal(loaded.numpy().reshape(5, -1), images)


def test_binarized_mnist_irregular_whitespace_is_read(tmp_path, rng):
    images = rng.integers(0, 2, (2, 784))
    text = "".join("  ".join(map(str, row)) + " \r\n" for row in images)
    (tmp_path / "x.amat").write_text(text)
    assert np.array_equal(registry.read_amat(tmp_path / "x.amat"), images)


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda lines: lines[:2] + [lines[2][:-4]] + lines[3:], "line 3: 782 values, expected 784"),
        (lambda lines: lines[:1] + [lines[1].replace("0", "2", 1)] + lines[2:], "line 2: value '2'"),
    ],
)
def test_binarized_mnist_malformed_line_is_named(tmp_path, rng, corrupt, message):
    lines = [" ".join(map(str, row)) for row in rng.integers(0, 2, (4, 784))]
    (tmp_path / "binarized_mnist_valid.amat").write_text("\n".join(corrupt(lines)) + "\n")
    with pytest.raises(PixelRNNError, match=message):
        pixelrnn.load_dataset("binarized-mnist", "valid", tmp_path)


def test_binarized_mnist_truncated_file_is_refused(tmp_path, rng):
    write_amat(tmp_path / "binarized_mnist_valid.amat", rng.integers(0, 2, (7, 784)))
    with pytest.raises(PixelRNNError, match="7 images, expected 10000"):
        pixelrnn.load_dataset("binarized-mnist", "valid", tmp_path)


@pytest.mark.skipif(not (SHARED / "binarized_mnist").is_dir(), reason="shared data folder absent")
def test_binarized_mnist_real_files():
    folder = SHARED / "binarized_mnist"
    valid = pixelrnn.load_dataset("binarized-mnist", "valid", folder)
    train = pixelrnn.load_dataset("binarized-mnist", "train", folder)
    assert valid.shape == (10_000, 1, 28, 28) and train.shape == (50_000, 1, 28, 28)
    assert set(valid.unique().tolist()) == {0, 1}
    assert 0.1 < train.float().mean() < 0.16  # MNIST ink density
    with pytest.raises(PixelRNNError, match="binarized_mnist_test.amat not found"):
        pixelrnn.load_dataset("binarized-mnist", "test", folder)


# --- MNIST / Fashion-MNIST (IDX) --------------------------------------------------------


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
@pytest.mark.parametrize("gz", [True, False])
def test_idx_datasets_and_their_splits(tmp_path, rng, monkeypatch, name, gz):
    monkeypatch.setattr(registry, "MNIST_VALID", 3)
    train, test = rng.integers(0, 256, (10, 28, 28)), rng.integers(0, 256, (4, 28, 28))
    suffix = ".gz" if gz else ""
    write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", train)
    write_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", test)
    assert np.array_equal(pixelrnn.load_dataset(name, "train", tmp_path)[:, 0], train[:7])
    assert np.array_equal(pixelrnn.load_dataset(name, "valid", tmp_path)[:, 0], train[7:])
    assert np.array_equal(pixelrnn.load_dataset(name, "test", tmp_path)[:, 0], test)


def test_idx_truncated_and_bad_magic(tmp_path, rng):
    path = tmp_path / "t10k-images-idx3-ubyte"
    write_idx(path, rng.integers(0, 256, (4, 28, 28)))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(PixelRNNError, match="truncated or corrupt"):
        pixelrnn.load_dataset("mnist", "test", tmp_path)
    path.write_bytes(b"\x00\x00\x09\x03" + bytes(100))
    with pytest.raises(PixelRNNError, match="bad magic number"):
        pixelrnn.load_dataset("mnist", "test", tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte").unlink()
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(PixelRNNError, match="cannot read"):
        pixelrnn.load_dataset("mnist", "test", tmp_path)


@pytest.mark.skipif(not (SHARED / "mnist").is_dir(), reason="shared data folder absent")
def test_mnist_real_files():
    folder = SHARED / "mnist"
    sizes = {s: len(pixelrnn.load_dataset("mnist", s, folder)) for s in ("train", "valid", "test")}
    assert sizes == {"train": 50_000, "valid": 10_000, "test": 10_000}


@pytest.mark.skipif(not FASHION.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_found_in_debians_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("PIXELRNN_DATA", str(tmp_path))  # an empty cache: the Debian copy is used
    test = pixelrnn.load_dataset("fashion-mnist", "test")
    assert test.shape == (10_000, 1, 28, 28) and int(test.max()) == 255


# --- CIFAR-10 ----------------------------------------------------------------------------


def cifar_batch(images: np.ndarray, protocol: int = 2) -> bytes:
    return pickle.dumps({b"batch_label": b"x", b"labels": [0] * len(images),
                         b"data": images.reshape(len(images), 3072)}, protocol=protocol)


def make_cifar(folder: Path, rng, per_batch: int = 4) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batches[name] = rng.integers(0, 256, (per_batch, 3, 32, 32), dtype=np.uint8)
        (folder / name).write_bytes(cifar_batch(batches[name]))
    return batches


@pytest.mark.parametrize("as_archive", [False, True])
def test_cifar10_folder_and_archive(tmp_path, rng, monkeypatch, as_archive):
    monkeypatch.setattr(registry, "CIFAR_VALID", 3)
    batches = make_cifar(tmp_path / "cifar-10-batches-py", rng)
    data_dir = tmp_path
    if as_archive:
        data_dir = tmp_path / "archive"
        data_dir.mkdir()
        with tarfile.open(data_dir / "cifar-10-python.tar.gz", "w:gz") as tar:
            tar.add(tmp_path / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    train_all = np.concatenate([batches[f"data_batch_{i}"] for i in range(1, 6)])
    train = pixelrnn.load_dataset("cifar10", "train", data_dir)
    assert train.shape == (17, 3, 32, 32)
    assert np.array_equal(train.numpy(), train_all[:17])
    assert np.array_equal(pixelrnn.load_dataset("cifar10", "valid", data_dir).numpy(), train_all[17:])
    assert np.array_equal(pixelrnn.load_dataset("cifar10", "test", data_dir).numpy(), batches["test_batch"])


def test_cifar10_plane_order_is_r_then_g_then_b(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    flat = np.zeros((1, 3072), np.uint8)
    flat[0, :1024], flat[0, 1024:2048], flat[0, 2048:] = 10, 20, 30
    flat[0, 1] = 99  # R plane, row 0, column 1
    for name in ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps({b"data": flat, b"labels": [0]}))
    image = pixelrnn.load_dataset("cifar10", "test", tmp_path)[0]
    assert image[:, 0, 0].tolist() == [10, 20, 30] and image[0, 0, 1] == 99


def test_cifar10_refuses_pickles_that_run_code(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()

    class Exploit:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Exploit()}))
    with pytest.raises(PixelRNNError, match="refusing to load"):
        pixelrnn.load_dataset("cifar10", "test", tmp_path)


# --- ImageNet tar of PNGs, and a folder of images ------------------------------------------


def png_bytes(array: np.ndarray, fmt: str = "PNG") -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def test_imagenet32_tar_of_pngs(tmp_path, rng):
    images = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    with tarfile.open(tmp_path / "valid_32x32.tar", "w") as tar:
        for i, image in enumerate(images[::-1]):  # stored out of order: loaded sorted by name
            blob = png_bytes(image)
            info = tarfile.TarInfo(f"valid_32x32/{2 - i:05d}.png")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    loaded = pixelrnn.load_dataset("imagenet32", "valid", tmp_path)
    assert np.array_equal(loaded.numpy(), images.transpose(0, 3, 1, 2))
    with pytest.raises(PixelRNNError, match="no split 'test'; its splits: train, valid"):
        pixelrnn.load_dataset("imagenet32", "test", tmp_path)


def test_imagenet_wrong_image_size_is_named(tmp_path, rng):
    blob = png_bytes(rng.integers(0, 256, (31, 32, 3), dtype=np.uint8))
    with tarfile.open(tmp_path / "valid_32x32.tar", "w") as tar:
        info = tarfile.TarInfo("a.png")
        info.size = len(blob)
        tar.addfile(info, io.BytesIO(blob))
    with pytest.raises(PixelRNNError, match=r"a.png: 32x31 pixels, expected 32x32"):
        pixelrnn.load_dataset("imagenet32", "valid", tmp_path)


def test_folder_dataset_grey_and_rgb(tmp_path, rng):
    (tmp_path / "train").mkdir()
    rgb = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    (tmp_path / "train" / "a.png").write_bytes(png_bytes(rgb))
    (tmp_path / "train" / "b.jpg").write_bytes(png_bytes(rgb[:8, :8], "JPEG"))
    (tmp_path / "train" / "notes.txt").write_text("ignored")
    images = pixelrnn.load_dataset("folder", "train", tmp_path, image_size=16, channels=3)
    assert images.shape == (2, 3, 16, 16)
    assert np.array_equal(images[0].numpy(), rgb.transpose(2, 0, 1))
    grey = pixelrnn.load_dataset("folder", "train", tmp_path, image_size=8, channels=1)
    assert grey.shape == (2, 1, 8, 8)
    (tmp_path / "train" / "c.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(PixelRNNError, match="c.png: not a readable image"):
        pixelrnn.load_dataset("folder", "train", tmp_path, image_size=8, channels=1)
    # a wide image is cropped to its central square, not stretched
    (tmp_path / "train" / "c.png").write_bytes(png_bytes(np.concatenate([rgb[:, :4], rgb, rgb[:, :5]], axis=1)))
    wide = pixelrnn.load_dataset("folder", "train", tmp_path, image_size=16, channels=3)
    assert np.array_equal(wide[2].numpy(), rgb.transpose(2, 0, 1))
    (tmp_path / "train" / "c.png").write_bytes(png_bytes(rgb)[:60])  # truncated
    with pytest.raises(PixelRNNError, match="c.png: not a readable image"):
        pixelrnn.load_dataset("folder", "train", tmp_path, image_size=8, channels=1)
    # split folders, but not the one asked for: an error, not the top folder read instead
    with pytest.raises(PixelRNNError, match=r"no test/ folder \(it has train/\)"):
        pixelrnn.load_dataset("folder", "test", tmp_path, image_size=8, channels=1)


# --- the embedded digits and the registry ---------------------------------------------------


def test_embedded_digits():
    sizes = {s: pixelrnn.load_dataset("digits", s).shape for s in ("train", "valid", "test")}
    assert sizes == {"train": (2000, 1, 28, 28), "valid": (500, 1, 28, 28), "test": (500, 1, 28, 28)}
    train = pixelrnn.load_dataset("digits", "train")
    assert set(train.unique().tolist()) == {0, 1} and 0.1 < train.float().mean() < 0.16


def test_options_that_nothing_would_read_are_refused(tmp_path):
    with pytest.raises(PixelRNNError, match="for the folder dataset; digits has 28x28 images"):
        pixelrnn.load_dataset("digits", "test", image_size=8)
    with pytest.raises(PixelRNNError, match="for the folder dataset; digits"):
        pixelrnn.load_dataset("digits", "test", channels=1)
    with pytest.raises(PixelRNNError, match="digits are part of the package: no data folder"):
        pixelrnn.load_dataset("digits", "test", tmp_path)


def test_unknown_dataset_and_split():
    with pytest.raises(PixelRNNError, match="known datasets: digits, binarized-mnist"):
        pixelrnn.load_dataset("svhn", "train")
    with pytest.raises(PixelRNNError, match="no split 'dev'"):
        pixelrnn.load_dataset("digits", "dev")


def test_dynamic_binarization_draws_bernoulli():
    grey = torch.full((2000, 1, 2, 2), 64, dtype=torch.uint8)
    draws = pixelrnn.data.binarize(grey, torch.Generator().manual_seed(0))
    assert set(draws.unique().tolist()) <= {0, 1}
    assert abs(draws.float().mean().item() - 64 / 255) < 0.02


# --- downloads ----------------------------------------------------------------------------------


@pytest.fixture
def http_server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(root)))
    server.RequestHandlerClass.log_message = lambda *args: None
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_download_into_the_cache_with_checksum(http_server, tmp_path, rng, monkeypatch):
    root, url = http_server
    test = rng.integers(0, 256, (4, 28, 28))
    write_idx(root / "t10k-images-idx3-ubyte.gz", test)
    md5 = hashlib.md5((root / "t10k-images-idx3-ubyte.gz").read_bytes()).hexdigest()
    monkeypatch.setitem(registry._IDX_FILES, "mnist", (url, {"test": ("t10k-images-idx3-ubyte.gz", md5)}))
    monkeypatch.setenv("PIXELRNN_DATA", str(tmp_path / "cache"))
    loaded = pixelrnn.load_dataset("mnist", "test")
    assert np.array_equal(loaded[:, 0].numpy(), test)
    assert (tmp_path / "cache" / "mnist" / "t10k-images-idx3-ubyte.gz").is_file()
    (root / "t10k-images-idx3-ubyte.gz").unlink()  # now served from the cache
    assert np.array_equal(pixelrnn.load_dataset("mnist", "test")[:, 0].numpy(), test)


def test_download_with_a_wrong_checksum_leaves_nothing(http_server, tmp_path, rng, monkeypatch):
    root, url = http_server
    write_idx(root / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (2, 28, 28)))
    monkeypatch.setitem(registry._IDX_FILES, "mnist", (url, {"test": ("t10k-images-idx3-ubyte.gz", "0" * 32)}))
    monkeypatch.setenv("PIXELRNN_DATA", str(tmp_path / "cache"))
    with pytest.raises(PixelRNNError, match="has MD5 .*, expected 0000"):
        pixelrnn.load_dataset("mnist", "test")
    assert list((tmp_path / "cache" / "mnist").iterdir()) == []


def test_offline_error_names_the_file_and_the_folder(http_server, tmp_path, monkeypatch):
    _, url = http_server
    monkeypatch.setattr(registry, "_BMNIST_URL", url + "missing/")
    monkeypatch.setenv("PIXELRNN_DATA", str(tmp_path / "cache"))
    with pytest.raises(PixelRNNError, match=r"could not download binarized_mnist_test.amat .*put the file in"):
        pixelrnn.load_dataset("binarized-mnist", "test")
    with pytest.raises(PixelRNNError, match=f"binarized_mnist_test.amat not found in {tmp_path}"):
        pixelrnn.load_dataset("binarized-mnist", "test", tmp_path)
