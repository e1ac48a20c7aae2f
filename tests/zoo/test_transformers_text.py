"""Hugging Face text models (random init from small configs, nothing downloaded): their MLP
units are found and cut exactly, attention is left alone with its reason, and
save_pruned / load_pruned round trips."""

import pytest
import torch

transformers = pytest.importorskip("transformers")
from zoo_contract import check_contract, output  # noqa: E402

import demp  # noqa: E402
from demp.integrations.hf import load_pruned, save_pruned  # noqa: E402

SMALL = {"vocab_size": 97, "hidden_size": 32, "num_hidden_layers": 2,
         "num_attention_heads": 2, "intermediate_size": 64}  # fmt: skip


def bert():
    config = transformers.BertConfig(**SMALL, max_position_embeddings=32, num_labels=3)
    return transformers.BertForSequenceClassification(config)


def gpt2():
    config = transformers.GPT2Config(vocab_size=97, n_embd=32, n_layer=2, n_head=2, n_inner=64,
                                     n_positions=32, pad_token_id=0)  # fmt: skip
    return transformers.GPT2LMHeadModel(config)


def llama():
    config = transformers.LlamaConfig(**SMALL, num_key_value_heads=1,
                                      max_position_embeddings=32)  # fmt: skip
    return transformers.LlamaForCausalLM(config)


def phi3():  # a packed gated MLP: gate_up_proj's output chunked in two halves
    config = transformers.Phi3Config(**SMALL, num_key_value_heads=1, max_position_embeddings=32,
                                     pad_token_id=0)  # fmt: skip
    return transformers.Phi3ForCausalLM(config)


# name -> (builder, the MLP's cut layers: producers..., consumer)
MODELS = {
    "bert": (bert, ("bert.encoder.layer.{}.intermediate.dense",
                    "bert.encoder.layer.{}.output.dense")),
    "gpt2": (gpt2, ("transformer.h.{}.mlp.c_fc", "transformer.h.{}.mlp.c_proj")),
    "llama": (llama, ("model.layers.{}.mlp.gate_proj", "model.layers.{}.mlp.up_proj",
                      "model.layers.{}.mlp.down_proj")),
    "phi3": (phi3, ("model.layers.{}.mlp.gate_up_proj", "model.layers.{}.mlp.down_proj")),
}  # fmt: skip
PAIRED = {"phi3"}  # a unit is one row of each half of gate_up_proj


def tokens():
    return {"input_ids": torch.randint(1, 97, (4, 12), generator=torch.Generator().manual_seed(0))}


def width(model, path):
    layer = model.get_submodule(path)
    if hasattr(layer, "nf"):  # GPT-2's Conv1D: weight (in, out)
        return layer.weight.shape[1]
    return layer.weight.shape[0]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_text_model_mlp_units_cut_exactly(name, tmp_path):
    build, layers = MODELS[name]
    structure, dead, report = check_contract(build, tokens(), tmp_path, shift=0.0)
    mlp = {layers[0].format(i) for i in range(2)}
    assert mlp <= set(structure.groups)  # every block's MLP units form a group
    attention = ("attn", "attention", "q_proj", "k_proj", "v_proj", "o_proj")
    assert not any(a in n for n in structure.groups for a in attention)  # left alone...
    assert any(a in n for n in structure.skipped for a in attention)  # ...with a reason
    assert all(structure.skipped.values())
    assert report.removed >= 2 * 16


@pytest.mark.parametrize("name", sorted(MODELS))
def test_text_model_save_pruned_round_trip(name, tmp_path):
    build, layers = MODELS[name]
    torch.manual_seed(0)
    model = build()
    x = tokens()
    structure = demp.build_checked_structure(model, x)
    group = structure.groups[layers[0].format(0)]
    demp.remove_units(model, {group.name: [0, 5, 9]}, structure=structure)
    left = 2 * 61 if name in PAIRED else 61
    assert group.parts == (2 if name in PAIRED else 1)
    assert width(model, layers[0].format(0)) == left
    save_pruned(model, tmp_path / "saved")
    again = load_pruned(type(model), tmp_path / "saved")
    assert width(again, layers[0].format(0)) == left
    assert torch.allclose(output(again, x), output(model, x), atol=1e-6)
