"""Dataset loaders on small files the tests write; clear errors for missing/corrupt data;
the registry: every registered dataset meets the contract, toys can be added and removed."""

import argparse
import gzip
import json
import pickle

import numpy as np
import pytest
import torch

import demp
from demp.experiments.cli.options import add_train_options
from demp.experiments.data import (
    DATASETS,
    DataBundle,
    DataMissing,
    RawData,
    load_dataset,
    register_dataset,
)
from demp.experiments.data.augment import crop_flip
from demp.experiments.data.idx import read_idx


def write_idx(path, array, gz=False):
    codes = {np.uint8: 0x08}
    header = bytes([0, 0, codes[array.dtype.type], array.ndim])
    header += b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    raw = header + array.tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)


def write_mnist_like(folder, n_train=30, n_test=10, gz=True):
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    for split, n in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / f"{split}-images-idx3-ubyte{suffix}",
                  rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), gz)  # fmt: skip
        write_idx(folder / f"{split}-labels-idx1-ubyte{suffix}",
                  (np.arange(n) % 10).astype(np.uint8), gz)  # fmt: skip


@pytest.mark.parametrize("gz", [True, False])
def test_idx_dataset_loads_and_normalizes(tmp_path, gz):
    write_mnist_like(tmp_path, gz=gz)
    data = load_dataset("fashion-mnist", tmp_path)
    assert data.train_x.shape == (30, 1, 28, 28) and data.test_x.shape == (10, 1, 28, 28)
    assert data.num_classes == 10 and data.train_y[:3].tolist() == [0, 1, 2]
    assert abs(data.train_x.mean().item()) < 1e-5 and abs(data.train_x.std().item() - 1) < 1e-3
    assert torch.equal(data.probe(5), data.train_x[:5])


def test_idx_errors_name_the_file_and_how_to_get_it(tmp_path):
    with pytest.raises(DataMissing, match="train-images-idx3-ubyte.*dataset-fashion-mnist"):
        load_dataset("fashion-mnist", tmp_path)
    with pytest.raises(demp.DempError, match="setup-data.sh"):
        load_dataset("mnist", tmp_path)
    write_mnist_like(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(demp.DempError, match="truncated or corrupted") as err:
        load_dataset("mnist", tmp_path)
    assert not isinstance(err.value, DataMissing)  # corrupted files are not "absent"
    path.write_bytes(b"\x01\x02\x03\x04hello")
    with pytest.raises(demp.DempError, match="bad magic"):
        read_idx(path)
    (tmp_path / "x.gz").write_bytes(b"not gzip")
    with pytest.raises(demp.DempError, match="cannot read IDX"):
        read_idx(tmp_path / "x.gz")


def write_cifar(folder):
    root = folder / "cifar-10-batches-py"
    root.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
                 b"labels": [0, 1, 2, 9]}  # fmt: skip
        (root / name).write_bytes(pickle.dumps(batch))
    return root


def test_cifar_folder_loads_with_augmentation(tmp_path):
    write_cifar(tmp_path)
    data = load_dataset("cifar10", tmp_path)
    assert data.train_x.shape == (20, 3, 32, 32) and data.test_x.shape == (4, 3, 32, 32)
    assert data.num_classes == 10 and data.augment is not None
    (x1, _), (x2, _) = next(data.batches(4, 0, 0)), next(data.batches(4, 0, 0))
    assert torch.equal(x1, x2)  # augmentation is reproducible


def test_cifar_refuses_pickled_code_and_explains_absence(tmp_path):
    with pytest.raises(DataMissing, match="cannot be downloaded here"):
        load_dataset("cifar10", tmp_path)
    root = write_cifar(tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (root / "test_batch").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))
    with pytest.raises(demp.DempError, match="refusing to load builtins.print"):
        load_dataset("cifar10", tmp_path)
    with pytest.raises(DataMissing, match="needs --data-dir"):
        load_dataset("cifar10")


def test_mnist1d_is_generated_locally():
    data = load_dataset("mnist1d", train_size=400)
    assert data.train_x.shape == (400, 1, 40) and data.num_classes == 10
    assert len(data.test_x) == 1000


def test_synthetic_and_unknown():
    data = load_dataset("synthetic", train_size=64, test_size=16)
    assert data.train_x.shape == (64, 1, 12, 12) and data.test_x.shape == (16, 1, 12, 12)
    with pytest.raises(demp.DempError, match="unknown dataset 'imagenet'.*mnist1d.*synthetic"):
        load_dataset("imagenet")


def test_batches_are_a_function_of_seed_epoch_and_index():
    data = load_dataset("synthetic", train_size=64, test_size=16)
    full = list(data.batches(16, epoch=2, seed=1))
    tail = list(data.batches(16, epoch=2, seed=1, start=2))
    assert len(full) == 4 and torch.equal(full[2][0], tail[0][0])
    other = next(data.batches(16, epoch=3, seed=1))
    assert not torch.equal(full[0][1], other[1])


def test_crop_flip_keeps_shape_and_content():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    out = crop_flip(x, torch.Generator().manual_seed(0), pad=2)
    assert out.shape == x.shape
    g = torch.Generator().manual_seed(0)
    assert torch.equal(crop_flip(x, g, pad=0).flip(-1).sort(-1)[0], x.sort(-1)[0])


# -- the registry -------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(DATASETS))
def test_every_registered_dataset_meets_the_contract(name):
    spec = DATASETS[name]
    assert spec.name == name and spec.description and "\n" not in spec.description
    try:
        data = load_dataset(name, train_size=64, test_size=32, seed=1)
    except DataMissing as err:
        if not spec.needs_files:
            raise  # generated datasets load on every machine
        pytest.skip(f"{name}: its files are absent on this machine ({err})")
    check_contract(data, name, 64, 32)


def check_contract(data, name, n_train, n_test):
    assert isinstance(data, DataBundle) and data.name == name
    shape = data.input_shape
    assert len(shape) >= 2 and data.in_channels == shape[0]
    assert data.train_x.shape == (n_train, *shape) and data.train_y.shape == (n_train,)
    assert data.test_x.shape == (n_test, *shape) and data.test_y.shape == (n_test,)
    assert data.train_x.dtype == data.test_x.dtype == torch.float32
    assert data.train_y.dtype == data.test_y.dtype == torch.int64
    assert torch.isfinite(data.train_x).all() and torch.isfinite(data.test_x).all()
    dims = [0, *range(2, data.train_x.ndim)]  # normalized per channel on the training set
    assert data.train_x.mean(dims).abs().max() < 1e-4
    assert (data.train_x.std(dims) - 1).abs().max() < 1e-3
    assert data.test_x.mean(dims).abs().max() < 1.0  # same statistics, so near 0 too
    assert data.num_classes >= 2
    for y in (data.train_y, data.test_y):
        assert 0 <= int(y.min()) and int(y.max()) < data.num_classes
    x, y = next(data.batches(4, epoch=0, seed=0))
    assert x.shape == (4, *shape) and y.shape == (4,) and data.steps_per_epoch(4) == n_train // 4
    assert torch.equal(data.probe(4), data.train_x[:4])


@pytest.mark.parametrize("name", ["fashion-mnist", "mnist", "cifar10"])
def test_file_datasets_meet_the_contract_on_files_the_test_writes(tmp_path, name):
    write_cifar(tmp_path) if name == "cifar10" else write_mnist_like(tmp_path)
    check_contract(load_dataset(name, tmp_path, train_size=16, test_size=4), name, 16, 4)


def load_toy(data_dir, train_size, test_size, seed):
    x = torch.arange(2.0).repeat_interleave(8).reshape(16, 1, 1, 1).expand(16, 1, 2, 2)
    return RawData(x, torch.arange(2).repeat_interleave(8), x[:4], torch.zeros(4, dtype=torch.long))


@pytest.fixture
def toy_dataset():
    """Register ``toy`` for one test; unregistered after it, pass or fail."""
    register_dataset("toy", "two constant classes, 1x2x2 (a test registers it)")(load_toy)
    yield "toy"
    if "toy" in DATASETS:  # the test may have removed it itself
        DATASETS.unregister("toy")


def dataset_choices():
    parser = argparse.ArgumentParser()
    add_train_options(parser)
    return next(a.choices for a in parser._actions if a.dest == "dataset")


def test_a_registered_dataset_loads_and_is_a_cli_choice(toy_dataset):
    data = load_dataset(toy_dataset, train_size=8)
    assert data.train_x.shape == (8, 1, 2, 2) and data.num_classes == 2
    assert data.test_x.shape == (4, 1, 2, 2)
    assert "toy" in dataset_choices() and "toy: two constant" in DATASETS.describe()
    parser = argparse.ArgumentParser()
    add_train_options(parser)
    assert parser.parse_args(["--dataset", "toy"]).dataset == "toy"
    assert "toy" in parser.format_help()
    with pytest.raises(demp.DempError, match="'toy' is already registered"):
        register_dataset("toy", "again")(load_toy)


def test_unregistered_datasets_are_gone_everywhere(toy_dataset):
    assert DATASETS.unregister(toy_dataset).loader is load_toy
    assert "toy" not in DATASETS and "toy" not in dataset_choices()
    with pytest.raises(demp.DempError, match="unknown dataset 'toy'; registered datasets: "):
        load_dataset("toy")
    with pytest.raises(demp.DempError, match="unknown dataset"):
        DATASETS.unregister("toy")
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_train_options(parser)
    with pytest.raises(argparse.ArgumentError, match="invalid choice"):
        parser.parse_args(["--dataset", "toy"])


def test_builtin_datasets_and_bad_registrations():
    assert {"fashion-mnist", "mnist", "mnist1d", "cifar10", "synthetic"} <= set(DATASETS)
    assert not DATASETS["synthetic"].needs_files and DATASETS["cifar10"].needs_files
    with pytest.raises(demp.DempError, match="one non-empty line"):
        register_dataset("toy3", "two\nlines")
    with pytest.raises(demp.DempError, match="invalid dataset name"):
        register_dataset(" ", "blank")
    assert "toy3" not in DATASETS


def test_mnist1d_honours_both_sizes_and_its_data_seed():
    from demp.experiments.data.mnist1d import samples_for

    data = load_dataset("mnist1d", train_size=400, test_size=1500)
    assert data.train_x.shape == (400, 1, 40) and len(data.test_x) == 1500
    for train, test in [(None, None), (4000, 1000), (4001, None), (100, 2345), (9000, 3000)]:
        n = samples_for(train, test)
        assert n % 10 == 0 and int(0.8 * n) >= (train or 0) and n - int(0.8 * n) >= (test or 0)
        assert samples_for(train, test) == max(5000, n)
    again = load_dataset("mnist1d", train_size=400, test_size=1500)
    other = load_dataset("mnist1d", train_size=400, test_size=1500, seed=1)
    assert torch.equal(again.test_x, data.test_x) and not torch.equal(other.test_x, data.test_x)


def test_every_training_seed_trains_on_the_same_data(monkeypatch, tmp_path):
    from demp.experiments.harness import runner
    from demp.experiments.harness.config import TrainConfig

    seen = []

    def spy(*args):
        seen.append(args[-1])
        raise demp.DempError("stop")

    monkeypatch.setattr(runner, "load_dataset", spy)
    for seed in (0, 3):
        with pytest.raises(demp.DempError, match="stop"):
            runner.run_training(TrainConfig(steps=1, seed=seed), tmp_path / f"s{seed}")
    with pytest.raises(demp.DempError, match="stop"):
        runner.run_training(TrainConfig(steps=1, data_seed=5), tmp_path / "d")
    # a run folder written before data_seed existed resumes on its own seed's data
    old = tmp_path / "old"
    old.mkdir()
    saved = TrainConfig(steps=1, seed=3).to_dict()
    del saved["data_seed"]
    (old / "config.json").write_text(json.dumps(saved))
    from demp.experiments.cli.main import main

    assert main(["train", "--resume", str(old), "--no-progress"]) != 0
    assert seen == [0, 0, 5, 3]


def test_a_size_larger_than_the_dataset_is_refused(toy_dataset):
    with pytest.raises(demp.DempError, match="test_size 5 is larger than the 4 test examples"):
        load_dataset(toy_dataset, test_size=5)
    with pytest.raises(demp.DempError, match="train_size 17 is larger than the 16 train"):
        load_dataset(toy_dataset, train_size=17)
    assert len(load_dataset(toy_dataset, train_size=16, test_size=4).test_x) == 4
