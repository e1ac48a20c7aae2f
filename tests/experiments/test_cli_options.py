"""Every DemPConfig field has a flag and every DemP flag a field (declared once, principle 14)."""

import dataclasses

import pytest

import demp
from demp.errors import DempError
from demp.experiments.cli.main import build_parser
from demp.experiments.cli.options import all_options, overrides_from_args
from demp.experiments.harness.config import RUN_WIDE


def train_parser():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices["train"]


def test_every_demp_field_has_a_flag_and_every_flag_a_field():
    fields = {f.name: f for f in dataclasses.fields(demp.DemPConfig)}
    rows = {key: flag for flag, section, key, *_ in all_options()
            if section == "demp" or key in RUN_WIDE}  # fmt: skip
    assert set(rows) <= set(fields)  # every DemP flag names a field
    flags = {s for a in train_parser()._actions for s in a.option_strings}
    for name, f in fields.items():
        if name in rows:
            assert rows[name] in flags
            continue
        cli = f.metadata.get("cli", "missing")
        assert cli != "missing", f"DemPConfig.{name} declares no flag"
        if cli is not None:  # a field set only in code (a custom schedule) says None
            assert all(part in flags for part in cli.split("/")), (name, cli)


@pytest.mark.parametrize(
    "argv, key, value",
    [(["--shift-push", "2"], "shift_push", 2.0), (["--revive", "false"], "revive", False),
     (["--death-stats", "reestimate"], "death_stats", "reestimate"),
     (["--demp-seed", "7"], "seed", 7), (["--variant", "paper"], "variant", "paper")],
)  # fmt: skip
def test_generated_flags_reach_the_config(argv, key, value):
    args = train_parser().parse_args(argv)
    assert overrides_from_args(args)["demp"][key] == value
    assert getattr(demp.DemPConfig(**{key: value}), key) == value


@pytest.mark.parametrize(
    "flag, value",
    [("--lr", "inf"), ("--lr", "nan"), ("--weight-decay", "-1"), ("--epochs", "-1"),
     ("--steps", "0"), ("--momentum", "nan"), ("--reg-strength", "nan"), ("--noise-std", "nan"),
     ("--reg-strength", "inf"), ("--batch-size", "0")],
)  # fmt: skip
def test_bad_numbers_are_refused_in_one_line_naming_the_flag(flag, value, tmp_path, capsys):
    from demp.experiments.cli.main import main

    argv = ["train", "--dataset", "synthetic", "--steps", "2", flag, value, "--no-progress",
            "--out", str(tmp_path / "run")]  # fmt: skip
    assert main(argv) != 0
    err = capsys.readouterr().err
    name = flag.lstrip("-").replace("-", "_")
    assert name in err and "must be" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "checkpoint").exists()


def test_one_target_flag_for_every_method():
    from demp.experiments.harness.config import TrainConfig, merge

    def config(method, *argv):
        args = train_parser().parse_args(["--method", method, *argv])
        return TrainConfig.from_dict(merge({"steps": 8}, overrides_from_args(args)))

    run = config("demp", "--target", "0.6", "--target-metric", "weight")
    assert (run.demp.target_sparsity, run.demp.target_metric) == (0.6, "weight")
    assert "target" not in run.method_options
    assert config("demp", "--target-sparsity", "0.6").demp.target_sparsity == 0.6
    assert config("snap", "--target", "0.6").method_config().target == 0.6
    with pytest.raises(DempError, match="--target 0.6 and DemP's target_sparsity 0.7 disagree"):
        config("demp", "--target", "0.6", "--target-sparsity", "0.7")


def test_run_wide_options_belong_to_the_run_and_reach_demp():
    from demp.experiments.harness.config import TrainConfig, merge

    def config(*argv):
        args = train_parser().parse_args(list(argv))
        return TrainConfig.from_dict(merge({"steps": 8}, overrides_from_args(args)))

    snap = config("--method", "snap", "--probe-size", "64", "--criterion", "eps", "--eps", "0.1",
                  "--ignored-layers", "fc", "--allow-inexact-norm")  # fmt: skip
    assert (snap.probe_size, snap.criterion, snap.eps) == (64, "eps", 0.1)
    assert snap.ignored_layers == ("fc",) and snap.allow_inexact_norm
    assert (
        snap.structure_options()
        == demp.DemPConfig(ignored_layers=("fc",), allow_inexact_norm=True).structure_options()
    )
    run = config("--method", "demp", "--probe-size", "64")
    assert run.method_config().probe_size == 64 and "probe_size" not in run.to_dict()["demp"]
    assert TrainConfig.from_dict(run.to_dict()) == run  # config.json round trip
    # a config written before the move (the [demp] table held them) still loads
    old = TrainConfig.from_dict({"steps": 8, "demp": {"probe_size": 32, "criterion": "eps"}})
    assert (old.probe_size, old.criterion) == (32, "eps")
    with pytest.raises(DempError, match="probe_size given twice"):
        TrainConfig.from_dict({"steps": 8, "probe_size": 16, "demp": {"probe_size": 32}})
    with pytest.raises(DempError, match="probe_size"):
        config("--method", "snap", "--probe-size", "0")


def test_every_baseline_number_is_refused_when_not_finite_or_negative():
    from demp.methods import registry

    checked = 0
    for name in registry.method_names():
        spec = registry.get_method(name)
        for f in dataclasses.fields(spec.options) if spec.options is not None else ():
            if "float" not in str(f.type) and "int" not in str(f.type):
                continue
            bad = (float("nan"), float("inf"), -1.0) if "float" in str(f.type) else (-1,)
            for value in bad:
                with pytest.raises(DempError, match=f"invalid options for method '{name}'"):
                    spec.make_options({f.name: value})
                checked += 1
    assert checked >= 20  # the options of every baseline were seen
