"""ChannelSelect: a fixed channel selection (0/1 or gains), exact, FLOP-free, cut by its row."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import demp
from demp.ops.rules import DEFAULT_RULES, rule_for, side_size
from demp.ops.select import ChannelSelect
from demp.ops.slicing import apply_cuts
from demp.structure.verify import _restored


def random_selection(out: int, inp: int, seed: int) -> torch.Tensor:
    """At most one nonzero per row (some rows empty): mostly 1, some gains in (0, 1)."""
    g = torch.Generator().manual_seed(seed)
    sel = torch.zeros(out, inp, dtype=torch.float64)
    for o in range(out):
        if inp and torch.rand(1, generator=g) < 0.8:
            gain = 1.0 if torch.rand(1, generator=g) < 0.5 else float(torch.rand(1, generator=g))
            sel[o, torch.randint(inp, (1,), generator=g)] = max(gain, 1e-3)
    return sel


@settings(max_examples=30, deadline=None)
@given(
    out=st.integers(1, 7),
    inp=st.integers(1, 7),
    rank=st.integers(2, 5),
    seed=st.integers(0, 2**16),
)
def test_forward_is_the_selection_matrix_exactly(out, inp, rank, seed):
    sel = random_selection(out, inp, seed)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(3, inp, *[4] * (rank - 2), generator=g, dtype=torch.float64)
    y = ChannelSelect(sel)(x)
    want = torch.einsum("oi,ni...->no...", sel, x)
    assert y.shape == want.shape
    assert torch.equal(y, want)  # a gather: bit-exact, empty rows exactly zero


def test_identity_and_gradient():
    x = torch.randn(2, 5, 3, 3, dtype=torch.float64, requires_grad=True)
    select = ChannelSelect.identity(5, dtype=torch.float64)
    y = select(x)
    assert torch.equal(y, x)
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))
    assert select.selection.requires_grad is False
    assert list(select.parameters()) == []
    assert "selection" in select.state_dict()
    assert repr(select) == "ChannelSelect(5 -> 5)"


def test_no_counted_flops():
    model = nn.Sequential(nn.Conv2d(3, 4, 1, bias=False), ChannelSelect.identity(4))
    x = torch.randn(2, 3, 5, 5)
    assert demp.forward_flops(model, x) == demp.forward_flops(model[:1], x)


@pytest.mark.parametrize(
    "bad",
    [torch.ones(3), torch.full((2, 2), 1.5), -torch.eye(2), torch.full((2, 3), 0.5)],
    ids=["1-D", "above 1", "negative", "two sources"],
)
def test_invalid_selections_refused(bad):
    with pytest.raises(ValueError):
        ChannelSelect(bad)


def test_wrong_channel_count_is_a_clear_error():
    with pytest.raises(ValueError, match="expects 4 channels"):
        ChannelSelect.identity(4)(torch.randn(2, 3, 5))


def test_every_input_column_cut_gives_zeros():
    select = ChannelSelect(torch.zeros(3, 0))
    assert torch.equal(select(torch.randn(2, 0, 4)), torch.zeros(2, 3, 4))


def test_table_row_cuts_rows_and_columns_and_trial_restores():
    select = ChannelSelect.identity(6, dtype=torch.float64)
    row = rule_for(select)
    assert row is DEFAULT_RULES.rule_for(select) and row.kind == "root"
    model = nn.Sequential(select)
    x = torch.randn(2, 6, 3, dtype=torch.float64)
    before = select.selection
    with _restored(model, {"0"}, DEFAULT_RULES):
        apply_cuts(
            model, {("0", "out"): torch.tensor([0, 2, 5]), ("0", "in"): torch.tensor([2, 3])}
        )
        assert (side_size(select, "out"), side_size(select, "in")) == (3, 2)
        assert (select.out_channels, select.in_channels) == (3, 2)
        # output 0 and 5 lost their source (input 0 and 5 are gone); output 2 reads input 2
        want = torch.zeros(2, 3, 3, dtype=torch.float64)
        want[:, 1] = x[:, 2]
        assert torch.equal(select(x[:, [2, 3]]), want)
    assert select.selection is before and select.out_channels == select.in_channels == 6
