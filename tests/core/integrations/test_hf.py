"""The Hugging Face Trainer callback on a tiny randomly initialized ViT (no download)."""

import pytest
import torch

transformers = pytest.importorskip("transformers")
from hf_nets import Images, vit  # noqa: E402
from transformers import Trainer, TrainingArguments, ViTForImageClassification  # noqa: E402

from demp import DemPConfig  # noqa: E402
from demp.errors import CheckpointError  # noqa: E402
from demp.integrations.hf import DemonPruningCallback, load_pruned, save_pruned  # noqa: E402


def arguments(out, steps=12):
    return TrainingArguments(
        output_dir=str(out), max_steps=steps, per_device_train_batch_size=16,
        learning_rate=1e-3, logging_steps=4, save_strategy="steps", save_steps=8,
        report_to="none", use_cpu=True, disable_tqdm=True, seed=0,
        dataloader_num_workers=0,
    )  # fmt: skip


def callback(data, criterion="eps"):
    cfg = DemPConfig(reg_strength=0.0, criterion=criterion, prune_every=4, prune_start=6)
    return DemonPruningCallback(data.x[:64], cfg)


def widths(model):
    return [layer.mlp.fc1.out_features for layer in model.vit.layers]


@pytest.mark.parametrize("act,criterion", [("gelu", "eps"), ("relu", "zero")])
def test_trainer_prunes_mlp_units_and_reloads(tmp_path, act, criterion):
    data = Images()
    model, cb = vit(act), callback(data, criterion)
    trainer = Trainer(model=model, args=arguments(tmp_path / "out"), train_dataset=data,
                      callbacks=[cb])  # fmt: skip
    trainer.train()
    assert [e["step"] for e in cb.pruner.history] == [8, 12]  # none before prune_start
    assert cb.pruner.history[0]["removed"] == 15
    assert widths(model) == [54, 59]
    assert model.vit.layers[1].mlp.fc2.in_features == 59
    assert any("attention" in name for name in cb.skipped)  # attention is left alone
    logged = [r for r in trainer.state.log_history if "demp/units" in r]
    assert logged and logged[-1]["demp/units"] == 113
    x = data.x[:8]
    with torch.no_grad():
        expected = model.eval()(pixel_values=x).logits
    save_pruned(model, tmp_path / "saved")
    again = load_pruned(ViTForImageClassification, tmp_path / "saved")
    assert widths(again) == [54, 59]
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(pixel_values=x).logits, expected)
    # the Trainer's own checkpoint carries the spec and the pruner state
    ckpt = tmp_path / "out" / "checkpoint-8"
    assert (ckpt / "demp_spec.json").is_file() and (ckpt / "demp_pruner.json").is_file()
    assert widths(load_pruned(ViTForImageClassification, ckpt)) == [54, 59]


def test_trainer_resumes_a_shrunk_run(tmp_path):
    data = Images()
    straight = vit()
    Trainer(model=straight, args=arguments(tmp_path / "a"), train_dataset=data,
            callbacks=[callback(data)]).train()  # fmt: skip

    cut = vit()
    Trainer(model=cut, args=arguments(tmp_path / "b", steps=12), train_dataset=data,
            callbacks=[callback(data)]).train()  # fmt: skip
    ckpt = tmp_path / "b" / "checkpoint-8"
    resumed, cb = load_pruned(ViTForImageClassification, ckpt), callback(data)
    trainer = Trainer(model=resumed, args=arguments(tmp_path / "b"), train_dataset=data,
                      callbacks=[cb])  # fmt: skip
    trainer.train(resume_from_checkpoint=str(ckpt))
    assert cb.pruner.step == 12 and [e["step"] for e in cb.pruner.history] == [8, 12]
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(),
                            strict=True):  # fmt: skip
        torch.testing.assert_close(a, b, msg=name)


def test_load_pruned_needs_the_spec(tmp_path):
    vit().save_pretrained(tmp_path / "plain")
    with pytest.raises(CheckpointError, match="demp_spec.json not found"):
        load_pruned(ViTForImageClassification, tmp_path / "plain")


def test_resume_without_pruner_state_warns(tmp_path):
    data = Images()
    Trainer(model=vit(), args=arguments(tmp_path / "b"), train_dataset=data,
            callbacks=[callback(data)]).train()  # fmt: skip
    ckpt = tmp_path / "b" / "checkpoint-8"
    (ckpt / "demp_pruner.json").unlink()
    model = load_pruned(ViTForImageClassification, ckpt)
    trainer = Trainer(model=model, args=arguments(tmp_path / "b"), train_dataset=data,
                      callbacks=[callback(data)])  # fmt: skip
    with pytest.warns(UserWarning, match="demp_pruner.json is missing"):
        trainer.train(resume_from_checkpoint=str(ckpt))


def test_the_trainers_schedule_starts_again_at_a_restart(tmp_path):
    """The callback wraps the Trainer's LambdaLR; a restart at step 4 replays it over 8."""
    from transformers import TrainerCallback

    class RestartAt4(TrainerCallback):  # stands in for the pruner's check after the target
        def __init__(self, cb):
            self.cb = cb

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 4:
                self.cb.pruner.restart.at = 4

    data = Images()
    cfg = DemPConfig(reg_strength=0.0, criterion="eps", prune_every=4, prune_start=100,
                     target_sparsity=0.05)  # fmt: skip
    cb = DemonPruningCallback(data.x[:64], cfg)
    trainer = Trainer(model=vit(), args=arguments(tmp_path / "out"), train_dataset=data,
                      callbacks=[cb, RestartAt4(cb)])  # fmt: skip
    trainer.train()
    logged = {r["step"]: r["learning_rate"] for r in trainer.state.log_history if "loss" in r}
    # linear decay from 1e-3 over 12 steps (a line logs the rate of its step's last
    # update, step - 1); after the restart at 4, the same decay over the 8 steps left
    assert logged[4] == pytest.approx(1e-3 * 9 / 12)
    assert logged[8] == pytest.approx(1e-3 * (1 - 3 / 8))  # without the restart 5 / 12
    assert logged[12] == pytest.approx(1e-3 * (1 - 7 / 8))  # without: 1 / 12
