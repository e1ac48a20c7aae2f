"""The Lightning callback: prune events inside Trainer.fit, checkpoint, restore, continue."""

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
