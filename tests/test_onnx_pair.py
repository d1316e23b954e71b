"""ONNX pairs: encoder.onnx + decoder.onnx + model.json open as a model that runs no Python, scores
what the PyTorch model scores, and every damaged or unsafe pair is refused with a one-line reason."""
from __future__ import annotations

import io
import json
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import helper

from apptest_support import SHIPPED
from conftest import tiny_config
from vae_core import VAE, onnx_pair
from vae_core.archive import Bundle, read_folder, read_zip
from vae_core.checkpoint import CheckpointError, load_checkpoint
from vae_core.datasets import load_dataset
from vae_core.metrics import evaluate
from vae_core.onnx_decoder import TOLERANCE, export_decoder
from vae_core.onnx_pair import FORMAT, ONNX_FILES, OnnxVAE, export_pair, open_onnx_pair

N_TEST = 500  # test images per shipped model: enough for a stable ELBO, quick on two cores
ELBO_NATS = 0.5


@pytest.fixture(scope="module")
def datasets():
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = load_dataset(name)
        return cache[name]
    return get


# An ONNX pair's encoder gives mu and logvar: the shipped autoencoder has no logvar, and is refused (below).
WITH_POSTERIOR = [name for name in SHIPPED if load_checkpoint(f"checkpoints/{name}.safetensors").config.probabilistic]


def test_an_autoencoder_is_refused_with_the_reason(tmp_path):
    from vae_core.model import NoPosterior

    checkpoint = load_checkpoint("checkpoints/mnist-ae.safetensors")
    with pytest.raises(NoPosterior, match="autoencoder"):
        export_pair(checkpoint.model, checkpoint.dataset, tmp_path / "ae", checkpoint.metrics)
    assert not (tmp_path / "ae").exists() or not any((tmp_path / "ae").iterdir()), "nothing half-written"


@pytest.mark.parametrize("name", WITH_POSTERIOR)
def test_every_shipped_checkpoint_scores_the_same_as_an_onnx_pair(name, tmp_path, datasets):
    checkpoint = load_checkpoint(f"checkpoints/{name}.safetensors")
    model = checkpoint.model.eval()
    folder = export_pair(model, checkpoint.dataset, tmp_path / name, checkpoint.metrics)
    assert sorted(p.name for p in folder.iterdir()) == sorted(ONNX_FILES), "no temp files left behind"
    pair = open_onnx_pair(read_folder(folder, ONNX_FILES))
    onnx_model = pair.model
    assert isinstance(onnx_model, OnnxVAE) and not onnx_model.training
    assert onnx_model.config == model.config
    assert pair.dataset == checkpoint.dataset and pair.metrics == checkpoint.metrics
    assert onnx_model.onnx_decoder == (folder / "decoder.onnx").read_bytes()

    data = datasets(checkpoint.dataset["name"])
    x, y = data.x_test[:N_TEST], data.y_test[:N_TEST]
    expected, got = evaluate(model, x, y), evaluate(onnx_model, x, y)
    assert abs(got["elbo"] - expected["elbo"]) <= ELBO_NATS, (got["elbo"], expected["elbo"])
    assert abs(got["kl"] - expected["kl"]) <= 1e-2
    assert got["active_units"] == expected["active_units"]

    labels = y[:64] if model.config.conditional else None
    with torch.inference_mode():
        mu, logvar = model.encode(x[:64], labels)
        onnx_mu, onnx_logvar = onnx_model.encode(x[:64], labels)
        assert onnx_mu.dtype == torch.float32 and onnx_mu.shape == mu.shape
        scale = max(1.0, float(mu.abs().max()), float(logvar.abs().max()))
        assert (onnx_mu - mu).abs().max() <= 1e-4 * scale
        assert (onnx_logvar - logvar).abs().max() <= 1e-4 * scale
        assert (onnx_model.reconstruct(x[:64], labels) - model.reconstruct(x[:64], labels)).abs().max() <= TOLERANCE


def test_the_decoder_file_is_the_browsers_graph_and_model_json_says_what_it_is(tmp_path):
    torch.manual_seed(0)
    model = VAE(tiny_config("conv")).eval()
    dataset = {"name": "digits", "label_names": list("0123456789"), "factor_names": None}
    folder = export_pair(model, dataset, tmp_path / "new" / "pair")  # parents created
    assert (folder / "decoder.onnx").read_bytes() == export_decoder(model)
    meta = json.loads((folder / "model.json").read_text())
    assert meta.pop("config") == json.loads(json.dumps(model.config.to_dict()))
    assert meta == {"format": FORMAT, "format_version": 1, "dataset": dataset, "metrics": {}}


@pytest.fixture(params=["mlp", "conv"])
def conditional_model(request):
    torch.manual_seed(0)
    return VAE(tiny_config(request.param, num_classes=4)).eval()


def test_a_conditional_pair_encodes_and_decodes_with_labels(conditional_model, tmp_path):
    model = conditional_model
    dataset = {"name": "toy", "label_names": ["a", "b", "c", "d"]}
    pair = open_onnx_pair(read_folder(export_pair(model, dataset, tmp_path, {"elbo": -1.5}), ONNX_FILES))
    onnx_model = pair.model
    assert pair.dataset == dataset and pair.metrics == {"elbo": -1.5}
    assert onnx_model.config.architecture == model.config.architecture
    x = torch.rand(6, *model.config.input_shape, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    with torch.inference_mode():
        mu, logvar = model.encode(x, labels)
        for y in (labels, torch.eye(4)[labels]):  # integer labels and one-hot rows
            got_mu, got_logvar = onnx_model.encode(x, y)
            assert (got_mu - mu).abs().max() <= 1e-4 and (got_logvar - logvar).abs().max() <= 1e-4
        images = onnx_model.decode(mu, labels)
        assert images.shape == (6, *model.config.input_shape)
        assert (images - model.decode(mu, labels)).abs().max() <= TOLERANCE
        assert (onnx_model.decode(mu, 2) - model.decode(mu, 2)).abs().max() <= TOLERANCE  # one label for all
        other = onnx_model.decode(mu, (labels + 1) % 4)
        assert (other - images).abs().max() > 1e-3, "the label changes the picture"
        assert (onnx_model.sample(4, y=1, generator=torch.Generator().manual_seed(0))
                - model.sample(4, y=1, generator=torch.Generator().manual_seed(0))).abs().max() <= TOLERANCE
        parts = onnx_model.loss(x, labels, eps=torch.zeros(6, model.config.latent_dim))
        expected = model.loss(x, labels, eps=torch.zeros(6, model.config.latent_dim))
        assert abs(parts["elbo"].item() - expected["elbo"].item()) <= 1e-3
    with pytest.raises(ValueError, match="needs a label"):
        onnx_model.encode(x)
    with pytest.raises(ValueError, match="labels must lie in"):
        onnx_model.decode(mu, torch.tensor([0, 1, 2, 3, 4, 0]))
    with pytest.raises(ValueError, match="label weights must have shape"):
        onnx_model.decode(mu, torch.eye(3))


def test_an_onnx_model_serves_several_threads(tmp_path):
    torch.manual_seed(0)
    model = VAE(tiny_config("conv")).eval()
    onnx_model = open_onnx_pair(read_folder(export_pair(model, {}, tmp_path), ONNX_FILES)).model
    inputs = [torch.rand(5, *model.config.input_shape, generator=torch.Generator().manual_seed(i)) for i in range(16)]

    def work(x):
        with torch.inference_mode():
            return onnx_model.reconstruct(x)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(work, inputs))
    with torch.inference_mode():
        for x, got in zip(inputs, results):
            assert (got - model.reconstruct(x)).abs().max() <= TOLERANCE


def test_two_pairs_of_one_config_have_different_state_dicts(tmp_path):
    """Caches keyed on the weights (onnx_decoder.weights_digest) must not mix two pairs up."""
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        models.append(open_onnx_pair(read_folder(export_pair(VAE(tiny_config()).eval(), {}, tmp_path / str(seed)),
                                                 ONNX_FILES)).model)
    first, second = (m.state_dict()["graph_digest"] for m in models)
    assert not torch.equal(first, second)
    assert next(models[0].parameters()).numel() == 0


# -- pairs that are refused --------------------------------------------------------------------
@pytest.fixture(scope="module")
def pair_files(tmp_path_factory) -> dict[str, bytes]:
    torch.manual_seed(0)
    folder = export_pair(VAE(tiny_config("mlp")).eval(), {"name": "digits"}, tmp_path_factory.mktemp("pair"))
    return {name: (folder / name).read_bytes() for name in ONNX_FILES}


def bundle(files: dict[str, bytes], **changes) -> Bundle:
    files = {**files, **{name.replace("_", "."): data for name, data in changes.items()}}
    files = {name: data for name, data in files.items() if data is not None}
    return Bundle("pair", files, set(files))


def refused(b: Bundle, monkeypatch, match: str) -> str:
    """open_onnx_pair(b) raises CheckpointError matching `match`, before any ONNX Runtime session exists."""
    def no_session(data):
        raise AssertionError("an ONNX Runtime session was created for a pair that the checks refuse")
    monkeypatch.setattr(onnx_pair, "_session", no_session)
    with pytest.raises(CheckpointError, match=match) as info:
        open_onnx_pair(b)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def edited(data: bytes, edit) -> bytes:
    proto = onnx.load_model_from_string(data)
    edit(proto)
    return proto.SerializeToString()


def test_the_unchanged_pair_opens(pair_files):
    assert open_onnx_pair(bundle(pair_files)).model.config.latent_dim == 3


@pytest.mark.parametrize("missing", sorted(ONNX_FILES))
def test_a_missing_file_is_named(pair_files, monkeypatch, missing):
    refused(bundle(pair_files, **{missing.replace(".", "_"): None}), monkeypatch, rf"pair: {missing} is missing")


@pytest.mark.parametrize("fraction", [0.05, 0.5, 0.95])
def test_a_truncated_graph_is_refused(pair_files, monkeypatch, fraction):
    data = pair_files["encoder.onnx"]
    refused(bundle(pair_files, encoder_onnx=data[:int(len(data) * fraction)]), monkeypatch,
            r"pair/encoder\.onnx: truncated or not an ONNX file")


def test_a_file_that_is_not_onnx_is_refused(pair_files, monkeypatch):
    refused(bundle(pair_files, decoder_onnx=b"PK\x03\x04 a zip, say"), monkeypatch,
            r"pair/decoder\.onnx: truncated or not an ONNX file")


def test_a_graph_with_external_data_is_refused(pair_files, monkeypatch, tmp_path):
    from onnx.external_data_helper import convert_model_to_external_data

    proto = onnx.load_model_from_string(pair_files["decoder.onnx"])
    convert_model_to_external_data(proto, all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    onnx.save_model(proto, tmp_path / "decoder.onnx")
    assert (tmp_path / "weights.bin").stat().st_size > 0
    refused(bundle(pair_files, decoder_onnx=(tmp_path / "decoder.onnx").read_bytes()), monkeypatch,
            r"pair/decoder\.onnx: the graph refers to external data files")


def test_external_data_inside_a_node_attribute_is_refused(pair_files, monkeypatch):
    def edit(proto):
        tensor = helper.make_tensor("c", onnx.TensorProto.FLOAT, [1], [1.0])
        tensor.data_location = onnx.TensorProto.EXTERNAL
        tensor.ClearField("float_data")
        tensor.external_data.add(key="location", value="../../etc/passwd")
        proto.graph.node.insert(0, helper.make_node("Constant", [], ["unused_c"], value=tensor))
    refused(bundle(pair_files, encoder_onnx=edited(pair_files["encoder.onnx"], edit)), monkeypatch,
            "refers to external data files")


def test_a_custom_op_domain_is_refused(pair_files, monkeypatch):
    def edit(proto):
        proto.graph.node[0].domain = "com.evil"
        proto.opset_import.append(helper.make_opsetid("com.evil", 1))
    message = refused(bundle(pair_files, encoder_onnx=edited(pair_files["encoder.onnx"], edit)), monkeypatch,
                      r"pair/encoder\.onnx: uses operators of the custom domain 'com\.evil'")
    assert "ai.onnx" in message


def test_an_opset_import_of_a_custom_domain_alone_is_refused(pair_files, monkeypatch):
    edit = lambda proto: proto.opset_import.append(helper.make_opsetid("com.microsoft.experimental", 1))  # noqa: E731
    refused(bundle(pair_files, decoder_onnx=edited(pair_files["decoder.onnx"], edit)), monkeypatch,
            "custom domain 'com.microsoft.experimental'")


def test_a_function_defined_in_the_model_may_have_its_own_domain(pair_files):
    """What torch.onnx emits when it keeps torch_lib functions: the domain names a function inside."""
    def edit(proto):
        node = proto.graph.node[-1]  # the last node: wrap it in a function of a private domain
        function = helper.make_function("pkg.local", "Wrapped", list(node.input), list(node.output),
                                        [helper.make_node(node.op_type, list(node.input), list(node.output),
                                                          name=node.name)],
                                        opset_imports=[helper.make_opsetid("", 18)])
        function.node[0].attribute.extend(node.attribute)
        proto.functions.append(function)
        proto.graph.node.remove(node)
        proto.graph.node.append(helper.make_node("Wrapped", list(node.input), list(node.output), domain="pkg.local"))
        proto.opset_import.append(helper.make_opsetid("pkg.local", 1))
    files = {**pair_files, "decoder.onnx": edited(pair_files["decoder.onnx"], edit)}
    model = open_onnx_pair(bundle(files)).model
    reference = open_onnx_pair(bundle(pair_files)).model
    z = torch.randn(4, 3)
    assert torch.allclose(model.decode(z), reference.decode(z))


def test_a_graph_over_the_size_limit_is_refused(pair_files, monkeypatch):
    monkeypatch.setattr(onnx_pair, "MAX_GRAPH_BYTES", len(pair_files["encoder.onnx"]) - 1)
    refused(bundle(pair_files), monkeypatch, r"pair/encoder\.onnx: .* MB is larger than this app loads")


@pytest.mark.parametrize("text, match", [
    (b"{not json", "model.json: not valid JSON"),
    (b"\xff\xfe", "model.json: not valid JSON"),
    (b"[1, 2]", "model.json: expected a JSON object, got list"),
    (json.dumps({"format": "latent-explorer-vae", "format_version": 1}).encode(),
     "model.json: not a Latent Explorer ONNX model"),
    (json.dumps({"format": FORMAT, "format_version": 2}).encode(), "model.json: format version 2 is not supported"),
    (json.dumps({"format": FORMAT, "format_version": 1, "config": {"latent_dim": 0}}).encode(),
     "model.json: invalid VAE config: latent_dim must be at least 1"),
    (json.dumps({"format": FORMAT, "format_version": 1, "config": {"colour": "blue"}}).encode(),
     r"model.json: invalid VAE config: unknown fields \['colour'\]"),
    (json.dumps({"format": FORMAT, "format_version": 1, "config": "mlp"}).encode(), "model.json: 'config' must be an object"),
])
def test_a_bad_model_json_is_refused(pair_files, monkeypatch, text, match):
    refused(bundle(pair_files, model_json=text), monkeypatch, "pair/" + match)


def test_swapped_graphs_are_refused_by_their_names(pair_files, monkeypatch):
    refused(bundle(pair_files, encoder_onnx=pair_files["decoder.onnx"]), monkeypatch,
            r"pair/encoder\.onnx: expected inputs \['x'\] and outputs \['mu', 'logvar'\], "
            r"the graph has inputs \['z'\] and outputs \['image'\]")


def test_a_config_that_does_not_fit_the_graphs_is_refused(pair_files):
    meta = json.loads(pair_files["model.json"])
    meta["config"]["latent_dim"] = 5  # the graphs were exported with 3
    with pytest.raises(CheckpointError, match=r"pair/encoder\.onnx: mu and logvar have shapes \(2, 3\)"):
        open_onnx_pair(bundle(pair_files, model_json=json.dumps(meta).encode()))
    meta = json.loads(pair_files["model.json"])
    meta["config"]["input_shape"] = [1, 4, 4]
    with pytest.raises(CheckpointError, match=r"pair/encoder\.onnx: ONNX Runtime cannot run it on a batch of"):
        open_onnx_pair(bundle(pair_files, model_json=json.dumps(meta).encode()))


def test_a_graph_that_onnx_runtime_cannot_load_is_refused(pair_files):
    def edit(proto):  # an operator the default domain does not have: parses, but no kernel exists
        proto.graph.node[0].op_type = "NoSuchOperator"
    with pytest.raises(CheckpointError, match=r"pair/decoder\.onnx: ONNX Runtime cannot load it"):
        open_onnx_pair(bundle(pair_files, decoder_onnx=edited(pair_files["decoder.onnx"], edit)))


@pytest.mark.parametrize("prefix", ["", "my-model/"])
def test_a_zip_of_a_pair_opens(pair_files, prefix):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in pair_files.items():
            archive.writestr(prefix + name, data)
        archive.writestr(prefix + "README.txt", "exported by Latent Explorer")
    b = read_zip(buffer.getvalue(), "my-model.zip", ONNX_FILES)
    assert set(b.files) == ONNX_FILES
    model = open_onnx_pair(b).model
    reference = open_onnx_pair(bundle(pair_files)).model
    x = torch.rand(3, 1, 8, 8)
    with torch.inference_mode():
        assert torch.equal(model.encode(x)[0], reference.encode(x)[0])


def test_every_file_is_replaced_whole_when_exporting_again(tmp_path):
    torch.manual_seed(0)
    folder = export_pair(VAE(tiny_config()).eval(), {}, tmp_path)
    torch.manual_seed(1)
    other = VAE(tiny_config(latent_dim=4)).eval()
    export_pair(other, {"name": "digits"}, folder, {"elbo": -2.0})
    pair = open_onnx_pair(read_folder(folder, ONNX_FILES))
    assert pair.config.latent_dim == 4 and pair.metrics == {"elbo": -2.0}
    assert sorted(p.name for p in Path(folder).iterdir()) == sorted(ONNX_FILES)
    with torch.inference_mode():
        z = torch.zeros(2, 4)
        assert np.abs((pair.model.decode(z) - other.decode(z)).numpy()).max() <= TOLERANCE


def test_a_graph_that_asks_for_a_huge_tensor_is_refused_before_it_runs(pair_files, monkeypatch):
    """A few bytes of ConstantOfShape can ask ONNX Runtime for terabytes: refused by shape inference."""
    from onnx import TensorProto, helper

    def bomb(proto):
        proto.graph.initializer.append(helper.make_tensor("bomb_shape", TensorProto.INT64, [2], [1_000_000] * 2))
        proto.graph.node.append(helper.make_node("ConstantOfShape", ["bomb_shape"], ["bomb"]))
        proto.graph.output.append(helper.make_tensor_value_info("bomb", TensorProto.FLOAT, None))

    refused(bundle(pair_files, decoder_onnx=edited(pair_files["decoder.onnx"], bomb)), monkeypatch,
            r"pair/decoder\.onnx: the graph builds a tensor of 1,000,000,000,000 elements")
