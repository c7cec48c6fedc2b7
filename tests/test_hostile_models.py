"""Crafted model packages, as an attacker or a clumsy colleague would send them: nothing of a model runs at
import, nothing is written or removed outside the user's models folder, links are refused, bundle
expressions are bounded, weights and cards are checked at import with messages that name the field."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path
from typing import List  # noqa: UP035 - TorchScript's annotations

import pytest
import torch
from safetensors.torch import save_file

from medvision.ai.importers import import_any
from medvision.ai.package import ModelPackage, PackageError, Registry, sha256_of, user_dir
from medvision.paths import cache_dir

from .test_importers import make_bundle, minimal_card, spleen_inference, tiny_unet, zip_folder


# ---- TorchScript carries code: never loaded or run at import -----------------------------------------
class _Writer(torch.nn.Module):
    """Overwrites 8 bytes of ``path`` when loaded (``__setstate__``) and when run (``forward``)."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = torch.from_file(self.path, shared=True, size=8, dtype=torch.uint8)
        t.fill_(65)
        return x + t.sum() * 0

    @torch.jit.export
    def __getstate__(self) -> List[str]:  # noqa: UP006
        return [self.path, str(self.training)]

    @torch.jit.export
    def __setstate__(self, state: List[str]) -> None:  # noqa: UP006
        self.path = state[0]
        self.training = state[1] == "True"
        t = torch.from_file(self.path, shared=True, size=8, dtype=torch.uint8)
        t.fill_(66)
        self.path = self.path + str(int(t.sum()) * 0)[:0]


class _Spinner(torch.nn.Module):
    """Never returns when loaded or run."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        while bool(x.sum() > -1.0):
            x = x + 1
        return x

    @torch.jit.export
    def __getstate__(self) -> List[str]:  # noqa: UP006
        return [str(self.training)]

    @torch.jit.export
    def __setstate__(self, state: List[str]) -> None:  # noqa: UP006
        self.training = state[0] == "True"
        n = 0
        while n >= 0:
            n = n + 1 - 1


@pytest.fixture
def victim(tmp_path) -> Path:
    path = tmp_path / "victim.bin"
    path.write_bytes(b"original")
    return path


def _scripted(module: torch.nn.Module, path: Path) -> Path:
    torch.jit.save(torch.jit.script(module), str(path))
    return path


def test_the_crafted_torchscript_really_runs_code_when_loaded(victim, tmp_path):
    """The trap works: loading it (what an import must never do) writes into the victim file."""
    ts = _scripted(_Writer(str(victim)), tmp_path / "evil.ts")
    victim.write_bytes(b"original")
    torch.jit.load(str(ts))
    assert victim.read_bytes() == b"BBBBBBBB"


def _import_within(seconds: float, *args, **kwargs):
    """import_any in a thread: its result or exception, or a failure if it has not returned in time."""
    out: dict = {}

    def work():
        try:
            out["package"] = import_any(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out["error"] = exc

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"the import did not return within {seconds} s"
    if "error" in out:
        raise out["error"]
    return out["package"]


@pytest.mark.parametrize("make", ["writer", "spinner"])
def test_torchscript_needs_trust_and_is_imported_without_loading_or_running(make, victim, tmp_path, capsys):
    module = _Writer(str(victim)) if make == "writer" else _Spinner()
    ts = _scripted(module, tmp_path / "evil.ts")
    card = tmp_path / "evil.json"
    card.write_text(json.dumps(minimal_card(id="evil")))
    with pytest.raises(PackageError, match="contains code that runs with your rights.*--trust-code"):
        _import_within(20, ts)
    package = _import_within(20, ts, trust_code=True)
    installed = Registry().install(package, trust_code=True)
    assert installed.card["contains_code"] is True and installed.contains_code
    assert victim.read_bytes() == b"original"  # never loaded, never run
    # a package folder or a zip of it with model.ts inside needs the same trust
    with pytest.raises(PackageError, match="--trust-code"):
        _import_within(20, installed.folder)
    with pytest.raises(PackageError, match="--trust-code"):
        _import_within(20, zip_folder(installed.folder, tmp_path / "evil-package.zip"))
    from medvision.cli import main

    assert main(["models", "import", str(ts), "--card", str(card), "--replace"]) == 2
    assert "--trust-code" in capsys.readouterr().err
    assert victim.read_bytes() == b"original"


def test_a_bundle_with_a_torchscript_network_needs_trust_and_is_not_run(victim, tmp_path):
    inference_bundle = make_bundle(tmp_path / "src")
    (inference_bundle / "models" / "model.pt").unlink()
    _scripted(_Writer(str(victim)), inference_bundle / "models" / "model.ts")
    config = json.loads((inference_bundle / "configs" / "inference.json").read_text())
    config["network_def"]["_target_"] = "scripts.net.MyNet"  # the bundle's own network: only the TorchScript
    (inference_bundle / "configs" / "inference.json").write_text(json.dumps(config))
    with pytest.raises(PackageError, match="model.ts.*contains code.*--trust-code"):
        _import_within(20, inference_bundle)
    package = _import_within(20, inference_bundle, trust_code=True)
    assert package.contains_code and "contains code" in package.card["description"]
    assert victim.read_bytes() == b"original"


def test_the_models_dock_says_a_model_contains_code(window, tmp_path, victim):
    ts = _scripted(_Writer(str(victim)), tmp_path / "evil.ts")
    Registry().install(import_any(ts, card=minimal_card(id="evil-dock"), trust_code=True), trust_code=True)
    panel = window.annotating.models
    panel.refresh()
    assert panel.select("evil-dock")
    item = panel.list.currentItem()
    assert "[contains code]" in item.text() and "CONTAINS CODE" in item.toolTip()
    assert "contains code: runs with your rights" in panel.card_view.toPlainText()
    assert victim.read_bytes() == b"original"


# ---- ids and versions are folder names: nothing written or removed outside the models folder ---------
@pytest.mark.parametrize("field,value", [("id", "/some/where"), ("id", "../../../x"), ("id", ".."),
                                         ("id", "a/b"), ("version", "0/../../../../x"), ("version", "../x"),
                                         ("id", ""), ("version", "1.0\n")])
def test_a_package_whose_id_or_version_names_a_path_is_refused(field, value, tmp_path):
    installed = Registry().install(import_any(make_bundle(tmp_path / "src")))
    own = Path(shutil.copytree(installed.folder, tmp_path / "own"))
    card = json.loads((own / "model.json").read_text())
    card[field] = value
    (own / "model.json").write_text(json.dumps(card))
    with pytest.raises(PackageError, match=f"{field} must be letters, digits"):
        import_any(own)


def test_a_bundle_version_that_climbs_out_is_refused_and_replace_deletes_nothing(tmp_path):
    outside = user_dir().parent / "x"  # where "spleen_ct_segmentation-0/../../x" would land
    outside.mkdir(parents=True, exist_ok=True)
    (outside / "keep.txt").write_text("mine")
    bundle = make_bundle(tmp_path / "src")
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    meta["version"] = "0/../../x"
    (bundle / "configs" / "metadata.json").write_text(json.dumps(meta))
    from medvision.cli import main

    assert main(["models", "import", str(bundle), "--replace"]) == 2
    assert (outside / "keep.txt").read_text() == "mine"
    assert list((cache_dir() / "imports").iterdir()) == []


def test_install_checks_the_target_even_for_a_card_changed_after_opening(tmp_path):
    package = import_any(make_bundle(tmp_path / "src"))
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    package.card["id"] = f"../../../../../../..{outside}"
    with pytest.raises(PackageError, match="not a plain name"):
        Registry().install(package, replace=True)
    assert (outside / "keep.txt").read_text() == "mine"
    package.card["id"], package.card["version"] = "spleen", "1"
    not_ours = user_dir() / "spleen-1"
    not_ours.mkdir()
    (not_ours / "notes.txt").write_text("the user's")
    with pytest.raises(PackageError, match="not a model package: medvision leaves it alone"):
        Registry().install(package, replace=True)
    assert (not_ours / "notes.txt").read_text() == "the user's"


def test_replace_keeps_the_old_version_when_the_copy_fails(tmp_path, monkeypatch):
    installed = Registry().install(import_any(make_bundle(tmp_path / "src")))
    before = sha256_of(installed.folder / "weights.safetensors")

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shutil, "copytree", fail)
    with pytest.raises(PackageError, match="could not be copied.*No space left"):
        Registry().install(import_any(make_bundle(tmp_path / "again")), replace=True)
    assert sha256_of(installed.folder / "weights.safetensors") == before
    assert [p.name for p in user_dir().iterdir()] == [installed.folder.name]


# ---- links ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["docs/README.md", "LICENSE", "models/model.pt", "configs/extra"])
def test_a_link_inside_an_imported_bundle_is_refused(where, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("system file")
    bundle = make_bundle(tmp_path / "src")
    target = bundle / where
    if target.exists():
        target.unlink()
    target.symlink_to(secret if where != "models/model.pt" else tmp_path)
    with pytest.raises(PackageError, match=f"{where} is a symbolic link"):
        import_any(bundle)
    assert not (cache_dir() / "imports").exists() or list((cache_dir() / "imports").iterdir()) == []


def test_a_link_inside_a_package_folder_is_refused_and_never_copied(tmp_path):
    installed = Registry().install(import_any(make_bundle(tmp_path / "src")))
    own = Path(shutil.copytree(installed.folder, tmp_path / "own"))
    (own / "notes").symlink_to("/etc/passwd")
    with pytest.raises(PackageError, match="notes is a symbolic link"):
        import_any(own)
    with pytest.raises(PackageError, match="notes is a symbolic link"):
        Registry().install(ModelPackage.open(own), replace=True)
    assert not (installed.folder / "notes").exists()
    # the folder the user names may itself be their link
    (tmp_path / "link-to-own").symlink_to(installed.folder)
    assert import_any(tmp_path / "link-to-own").id == installed.id


# ---- bundle expressions are bounded ---------------------------------------------------------------
@pytest.mark.parametrize("expression", ["$9**9**9", "$'A'*10**10", "$[0]*10**9", "$10**10**10 + 1",
                                        "$2**64*2**64*2**64", "$" + "(" * 300 + "1" + ")" * 300,
                                        "$" + "+".join(["1"] * 2000), "$'a' * 4", "$True + 1"])
def test_a_bundle_expression_that_would_hang_or_fill_memory_is_refused_in_a_sentence(expression, tmp_path):
    inference = spleen_inference()
    inference["network_def"]["out_channels"] = expression
    bundle = make_bundle(tmp_path / "src", inference=inference)
    start = time.perf_counter()
    with pytest.raises(PackageError, match="network_def"):
        _import_within(10, bundle)
    assert time.perf_counter() - start < 10


def test_plain_bundle_arithmetic_still_works(tmp_path):
    inference = spleen_inference()
    inference["c"] = 2
    inference["network_def"]["out_channels"] = "$@c ** 3 // 4"
    inference["network_def"]["channels"] = "$[2 ** 2, 4 * 2]"
    package = import_any(make_bundle(tmp_path / "src", inference=inference))
    assert package.card["architecture"]["args"]["out_channels"] == 2
    assert package.card["architecture"]["args"]["channels"] == [4, 8]


# ---- weights and cards are checked at import ---------------------------------------------------------
def _own_package(tmp_path) -> Path:
    installed = Registry().install(import_any(make_bundle(tmp_path / "src")))
    return Path(shutil.copytree(installed.folder, tmp_path / "own"))


def _reseal(folder: Path, **card_changes) -> None:
    """The card's sha256 made to match whatever weights the folder now holds (what an attacker does)."""
    card = json.loads((folder / "model.json").read_text())
    card.update(card_changes)
    card["weights"]["sha256"] = sha256_of(folder / card["weights"]["file"])
    (folder / "model.json").write_text(json.dumps(card))


def test_truncated_or_foreign_weights_are_refused_at_import_not_at_infer(tmp_path):
    own = _own_package(tmp_path)
    weights = own / "weights.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])
    _reseal(own)
    with pytest.raises(PackageError, match="is not readable safetensors"):
        import_any(own)
    weights.write_bytes(b"PK\x03\x04 this is a zip, not safetensors")
    _reseal(own)
    with pytest.raises(PackageError, match="is not readable safetensors"):
        import_any(own)
    # right format, wrong shapes for the architecture the card names
    save_file({k: v.contiguous() for k, v in tiny_unet(channels=(4, 16)).state_dict().items()}, str(weights))
    _reseal(own)
    with pytest.raises(PackageError, match="do not fit its architecture monai.UNet"):
        import_any(own)
    # an architecture medvision does not know
    weights.write_bytes(good)
    _reseal(own, architecture={"name": "evil.Net", "args": {}})
    with pytest.raises(PackageError, match="unknown architecture 'evil.Net'"):
        import_any(own)


@pytest.mark.parametrize("change,field", [
    ({"weights": {"file": 5}}, "weights.file must be a string, not 5"),
    ({"weights": {"file": "../../etc/passwd", "sha256": "0" * 64}}, "weights.file must be a file name inside"),
    ({"weights": "weights.safetensors"}, "weights must be an object"),
    ({"labels": [{"value": "1", "name": "spleen"}]}, r"labels\[0\].value must be an integer"),
    ({"labels": []}, "labels"),
    ({"dims": "3"}, "dims must be 2 or 3"),
    ({"input": {"channels": -1}}, "input.channels"),
    ({"inference": {"mode": "sliding_window", "sliding_window": {"roi_size": "96"}}},
     "inference.sliding_window.roi_size must be an array"),
    ({"localizer": {"architecture": {"name": "x"}, "weights": {"file": "/etc/passwd", "sha256": "0" * 64}}},
     "localizer.weights.file must be a file name inside"),
    ({"helper": {"architecture": {"name": "x"}, "weights": {"file": "a/b.safetensors", "sha256": "0" * 64}}},
     "helper.weights.file must be a file name inside"),
    ({"license_file": "../../LICENSE"}, "license_file must be a file name"),
])
def test_a_malformed_card_is_refused_in_one_sentence_naming_the_field(change, field, tmp_path, capsys):
    own = _own_package(tmp_path)
    card = json.loads((own / "model.json").read_text())
    card.update(change)
    (own / "model.json").write_text(json.dumps(card))
    with pytest.raises(PackageError, match=field):
        import_any(own)
    from medvision.cli import main

    assert main(["models", "import", str(own), "--replace"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1 and "model.json" in err


def test_a_malformed_card_among_the_users_models_is_listed_as_a_problem_not_a_crash(tmp_path):
    own = _own_package(tmp_path)
    broken = user_dir() / "broken-1"
    shutil.copytree(own, broken)
    card = json.loads((broken / "model.json").read_text())
    card["weights"] = {"file": 5}
    (broken / "model.json").write_text(json.dumps(card))
    registry = Registry()
    ids = [p.id for p in registry.packages()]
    assert "spleen_ct_segmentation" in ids
    assert any("weights.file must be a string" in p for p in registry.problems)


# ---- ONNX: inspected, never run at import --------------------------------------------------------------
def _onnx_model(tmp_path: Path, *, domain: str = "", op: str = "Relu", external: bool = False) -> Path:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 1, "d", "h", "w"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 2, "d", "h", "w"])
    w = helper.make_tensor("w", TensorProto.FLOAT, [2, 1, 1, 1, 1], [1.0, -1.0])
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node(op, ["c"], ["y"], domain=domain)]
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], [w]), opset_imports=opsets)
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "m.onnx"
    if external:  # the weights "stored" in a file two folders up, as a crafted graph would have it
        tensor = model.graph.initializer[0]
        tensor.ClearField("float_data")
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (("location", "../../outside.bin"), ("offset", "0"), ("length", "8")):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
    onnx.save_model(model, str(path))
    return path


def test_onnx_is_inspected_not_run(tmp_path, monkeypatch):
    ort = pytest.importorskip("onnxruntime")
    path = _onnx_model(tmp_path)

    def never(*args, **kwargs):
        raise AssertionError("the ONNX graph was run at import")

    monkeypatch.setattr(ort.InferenceSession, "run", never)
    package = import_any(path, card=minimal_card(id="onnx-relu"))
    assert package.runtime_kind() == "onnx" and not package.contains_code
    assert "runs in onnxruntime" in package.card["description"]
    # three labels on a two-channel graph: told at import, without running it
    three = minimal_card(id="onnx-three", labels=[{"value": v, "name": f"l{v}"} for v in (1, 2)])
    with pytest.raises(PackageError, match="do not fit the network's 2 output channels"):
        import_any(path, card=three)


def test_onnx_with_foreign_operators_or_external_tensors_is_refused(tmp_path):
    pytest.importorskip("onnxruntime")
    with pytest.raises(PackageError, match="operators of evil.custom.*outside onnxruntime"):
        import_any(_onnx_model(tmp_path / "a", domain="evil.custom", op="Steal"), card=minimal_card())
    with pytest.raises(PackageError, match="not a valid ONNX model|ONNX does not define"):
        import_any(_onnx_model(tmp_path / "b", op="NoSuchOp"), card=minimal_card())
    with pytest.raises(PackageError, match="keeps tensors in other files|not a valid ONNX model"):
        import_any(_onnx_model(tmp_path / "c", external=True), card=minimal_card())


@pytest.mark.parametrize("new_id", ["../x", "/tmp/x", "a/b", "..", ""])
def test_a_training_run_whose_new_id_names_a_path_is_refused_before_reading_a_case(new_id, tmp_path, capsys):
    from medvision.cli import main

    missing = tmp_path / "no-such-datalist.json"  # never opened: the id is checked first
    assert main(["train", "--base", "deepbet-t1-brain", "--datalist", str(missing), "-o", new_id]) == 2
    err = capsys.readouterr().err
    assert "a model id takes letters, digits" in err and "no-such-datalist" not in err
    from medvision.ai.training.config import TrainConfig

    with pytest.raises(ValueError, match="takes letters, digits"):
        TrainConfig(base="deepbet-t1-brain", new_id=new_id)
