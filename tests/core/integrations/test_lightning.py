"""The Lightning callback: prune events inside Trainer.fit, checkpoint, restore, continue."""

import math
import warnings

import pytest
import torch
from nets import VGG, kill
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import demp

L = pytest.importorskip("lightning.pytorch", reason="the [lightning] extra is not installed")
from demp.integrations.lightning import DemonPruning  # noqa: E402


class Module(L.LightningModule):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = VGG((6, 8), size=8, hidden=12, out=4)

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, _index):
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)


def loader():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(256, 3, 8, 8, generator=g), torch.randint(0, 4, (256,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=32, shuffle=False), x[:64]


def trainer(tmp_path, steps, callback):
    return L.Trainer(
        max_steps=steps, accelerator="cpu", logger=L.loggers.CSVLogger(tmp_path),
        enable_progress_bar=False, enable_model_summary=False, callbacks=[callback],
        default_root_dir=tmp_path,
    )  # fmt: skip


def test_lightning_callback_prunes_saves_restores_and_continues(tmp_path):
    data, probe = loader()
    module = Module()
    s = demp.build_structure(module, probe[:2])
    kill(module, s.groups["net.features.0"], [0, 3])
    config = demp.DemPConfig(reg_strength=1e-2, prune_every=10)
    callback = DemonPruning(probe, config, total_steps=60)
    first = trainer(tmp_path, 30, callback)
    first.fit(module, data)
    assert module.net.features[0].out_channels <= 4
    assert callback.pruner.history and callback.pruner.step == 30
    path = tmp_path / "shrunk.ckpt"
    first.save_checkpoint(path)
    widths = callback.pruner.structure.widths()

    fresh = Module()  # built at the original size
    assert fresh.net.features[0].out_channels == 6
    callback2 = DemonPruning(probe, config, total_steps=60)
    second = trainer(tmp_path, 60, callback2)
    second.fit(fresh, data, ckpt_path=path)
    assert second.global_step == 60 and callback2.pruner.step == 60
    assert all(callback2.pruner.structure.widths()[n] <= w for n, w in widths.items())
    metrics = (tmp_path / "lightning_logs").rglob("metrics.csv")
    assert any("demp/units" in m.read_text() for m in metrics)


class Scheduled(Module):
    """A cosine LambdaLR stepped every batch, as Lightning users write it."""

    total = 200
    interval = "step"

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.parameters(), lr=1e-2)
        cosine = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / self.total))
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": cosine, "interval": self.interval}}


class Rates(L.Callback):
    def __init__(self):
        self.lr = []

    def on_train_batch_start(self, trainer, *_args):
        self.lr.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_a_demp_plus_restart_restarts_the_lightning_scheduler(tmp_path):
    data, probe = loader()
    module, rates = Scheduled(), Rates()
    config = demp.DemPConfig(reg_strength=0.3, target_sparsity=0.5, prune_every=10,
                             target_max_scale=6.0)  # fmt: skip
    assert config.restart  # DemP+'s default
    callback = DemonPruning(probe, config, total_steps=Scheduled.total)
    fit = L.Trainer(
        max_steps=Scheduled.total, accelerator="cpu", logger=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[callback, rates], default_root_dir=tmp_path,
        enable_checkpointing=False,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the restart finds the schedule asked
        warnings.filterwarnings("ignore", message=".*(num_workers|does not have many workers).*")
        fit.fit(module, data)
    at, total = callback.pruner.restart.at, Scheduled.total
    assert at is not None and 0 < at < total
    for step in (at - 1, at, total - 1):  # the rate each step trained with
        s, span = (step, total) if step < at else (step - at, total - at)
        assert rates.lr[step] == pytest.approx(1e-2 * 0.5 * (1 + math.cos(math.pi * s / span)))


def test_a_scheduler_stepped_per_epoch_is_left_alone_and_the_restart_warns(tmp_path):
    data, probe = loader()
    module = Scheduled()
    module.interval = "epoch"
    config = demp.DemPConfig(reg_strength=0.3, target_sparsity=0.5, prune_every=10,
                             target_max_scale=6.0)  # fmt: skip
    callback = DemonPruning(probe, config, total_steps=Scheduled.total)
    fit = L.Trainer(
        max_steps=Scheduled.total, accelerator="cpu", logger=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[callback], default_root_dir=tmp_path,
        enable_checkpointing=False,
    )  # fmt: skip
    with pytest.warns(UserWarning, match="has not asked for the schedule's position"):
        fit.fit(module, data)
    assert callback.pruner.restart.at is not None
    scheduler = fit.lr_scheduler_configs[0].scheduler
    assert scheduler.lr_lambdas[0](3) == pytest.approx(0.5 * (1 + math.cos(math.pi * 3 / 200)))
