"""Groups split into equal parts on their way (chunk): each unit is one channel of every
part, cut exactly; splits the model's code fixes are refused with their reason."""

import pytest
import torch
from nets import ChunkNet, CspNet, FixedSplitNet, GluNet
from zoo_contract import check_contract

import demp
from demp.structure.splits import index_table, split_period


@pytest.mark.parametrize("parts", [2, 3])
def test_chunked_group_is_cut_exactly_one_channel_per_part(parts, tmp_path):
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    stem = demp.build_checked_structure(ChunkNet(c=6, parts=parts), x[:2].float()).groups["stem"]
    assert (stem.width, stem.parts) == (6, parts)
    producer = next(s for s in stem.slots if s.role == "producer")
    # unit u is channel u of every part
    expected = torch.arange(6)[:, None] + 6 * torch.arange(parts)[None, :]
    assert torch.equal(producer.index, expected)
    structure, _, _ = check_contract(lambda: ChunkNet(c=6, parts=parts), x, tmp_path)
    assert structure.groups["stem"].width == 5  # one unit (one channel of each part) cut
    assert structure.sizes[("stem", "out")] == 5 * parts


def test_a_part_that_feeds_a_layer_and_a_residual_sum(tmp_path):
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    stem = demp.build_checked_structure(CspNet(c=6), x[:2].float()).groups["stem"]
    roles = {(s.path, s.role): s.index.tolist() for s in stem.slots}
    assert roles[("block", "producer")] == [[u] for u in range(6)]  # the residual's other side
    assert roles[("mix", "consumer")] == [[u, 6 + u] for u in range(6)]  # both halves, by cat
    check_contract(lambda: CspNet(c=6), x, tmp_path)


@pytest.mark.parametrize("shape", [(4, 5), (4, 7, 5)])
def test_gated_linear_unit_pairs_its_halves(shape, tmp_path):
    x = torch.randn(*shape, dtype=torch.float64)
    fc = demp.build_checked_structure(GluNet(), x[:2].float()).groups["fc"]
    assert (fc.width, fc.parts) == (6, 2)
    structure, _, _ = check_contract(GluNet, x, tmp_path, shift=0.0)  # a = 0: a * sigmoid(b) = 0
    assert structure.sizes[("fc", "out")] == 2 * structure.groups["fc"].width < 12


def test_a_unit_dead_in_one_part_only_is_kept():
    torch.manual_seed(0)
    model = ChunkNet(c=6, parts=2).eval()
    x = torch.randn(8, 3, 8, 8)
    structure = demp.build_checked_structure(model, x[:2])
    with torch.no_grad():  # channel 1 of the first part only: its twin (7) stays alive
        model.bn.weight[1] = 0.0
        model.bn.bias[1] = -1.0
    dead = demp.find_dead(model, x, structure=structure)
    assert not bool(dead.groups["stem"].dead.any())
    with torch.no_grad():
        model.bn.weight[7] = 0.0
        model.bn.bias[7] = -1.0
    dead = demp.find_dead(model, x, structure=structure)
    assert dead.groups["stem"].dead.nonzero().flatten().tolist() == [1]


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("fixed", "the model's split does not follow a cut"),
        ("unequal", "split into unequal parts"),
        ("slice", "a slice with fixed bounds"),
    ],
)
def test_splits_fixed_by_the_code_are_refused_and_the_model_is_unchanged(how, reason):
    torch.manual_seed(0)
    model = FixedSplitNet(how).eval()
    x = torch.randn(4, 3, 8, 8)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    before = model(x)
    structure = demp.build_checked_structure(model, x[:2])
    assert "stem" not in structure.groups
    assert reason in structure.skipped["stem"]
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert torch.equal(model(x), before)


def test_index_table_pairs_units_by_period_and_refuses_overlaps():
    # 4 channels split in 2 parts of 2: unit u = channels u and u + 2
    table = index_table([0, 1, 2, 3], [0, 1, 2, 3], period=2)
    assert table.tolist() == [[0, 2], [1, 3]]
    assert index_table([5, 6], [2, 3], period=2).tolist() == [[5], [6]]
    assert index_table([0, 0], [0, 1], period=2) is None  # one index, two units
    assert index_table([0, 1, 2], [0, 1, 2], period=2) is None  # unit 0 has 2, unit 1 has 1
    assert index_table([0, 1], [0, 1], period=2).tolist() == [[0], [1]]


def test_split_period_reasons():
    assert split_period([[3, 3], [3, 3]], 6, "g") == 3
    assert "unequal" in split_period([[2, 4]], 6, "g")
    assert "slice" in split_period([], 6, "g")
    assert "cannot follow" in split_period([None], 6, "g")


def test_demp_trains_and_cuts_a_chunked_group():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 3, 8, 8, generator=g)
    y = (x.mean((1, 2, 3)) > 0).long() + (x[:, 0].mean((1, 2)) > 0).long()
    model = ChunkNet(c=8, parts=2)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    cfg = demp.DemPConfig(reg_strength=0.1, prune_every=20, reg_weighting="params")
    pruner = demp.DemonPruner(model, opt, x[:128], total_steps=100, config=cfg, batch_size=64)
    for step in range(100):
        if step == 30:  # unit 2 dies: channel 2 of each part (2 and 10)
            with torch.no_grad():
                model.bn.weight[[2, 10]] = 0.0
                model.bn.bias[[2, 10]] = -1.0
        i = torch.arange(64) + 64 * (step % 8)
        loss = torch.nn.functional.cross_entropy(model(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    stem = pruner.structure.groups["stem"]
    assert pruner.history[0]["widths"]["stem"] == 8
    assert pruner.history[1]["widths"]["stem"] == 7  # cut at the step-40 check
    assert stem.width < 8 and model.stem.out_channels == 2 * stem.width
    assert model.bn.num_features == 2 * stem.width
    assert all(b.in_channels == stem.width for b in model.branches)
    assert model.mix.in_channels == stem.width + pruner.structure.widths()["branches.0"]
    assert torch.isfinite(loss)


def test_slimming_scores_a_unit_by_its_largest_scale():
    from demp.methods.slimming import gamma_scores

    model = ChunkNet(c=4, parts=2)
    structure = demp.build_checked_structure(model, torch.randn(2, 3, 8, 8))
    with torch.no_grad():
        model.bn.weight.copy_(torch.tensor([0.1, -0.9, 0.3, 0.0, 0.5, 0.2, -0.4, 0.7]))
    assert gamma_scores(model, structure)["stem"].tolist() == pytest.approx([0.5, 0.9, 0.4, 0.7])
