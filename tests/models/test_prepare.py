"""Loaders prepare the weights' checksum and the fast path's transposed first layer in the background."""

import torch

import sigscan as ss
from sigscan._engine import _warmup, transposed_weight


def test_loaded_model_is_prepared_in_the_background(scimilarity_model, tmp_path):
    folder = scimilarity_model.save(tmp_path / "model")
    loaded = ss.models.SCimilarity(folder)
    thread = loaded.__dict__["_preparing"]
    _warmup.wait()  # what the engine does on entry
    assert not thread.is_alive()
    assert loaded.__dict__["_checksum"][1] == scimilarity_model.checksum  # computed by the thread, the same value
    weight = loaded.first_linear().weight
    assert transposed_weight(weight) is transposed_weight(weight)  # cached (by the thread)
    torch.testing.assert_close(transposed_weight(weight), weight.detach().T)


def test_checksum_follows_weight_changes(scimilarity_model, tmp_path):
    model = ss.models.SCimilarity(scimilarity_model.save(tmp_path / "model"))
    layer = model.encoder.network[0][1]
    original = layer.weight.detach().clone()
    before = model.checksum
    assert model.checksum == before == scimilarity_model.checksum  # kept while nothing changes
    with torch.no_grad():
        layer.weight.add_(1.0)  # an in-place update (training, load_state_dict)
    assert model.checksum != before
    layer.weight = torch.nn.Parameter(original)  # a new tensor with the original values: the original checksum
    assert model.checksum == before
