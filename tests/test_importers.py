"""Importers: MONAI bundles (folder, zip), TorchScript, ONNX and state_dicts become checked packages;
pickled code, tampered weights, weights that do not fit and path-traversing zips are refused."""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.networks.nets import UNet

from medvision.ai import importers
from medvision.ai.architectures import build
from medvision.ai.engine import InferenceOptions, infer_job
from medvision.ai.importers import import_any
from medvision.ai.package import ModelPackage, PackageError, Registry, user_dir
from medvision.core.jobs import run_job
from medvision.core.volume import Volume, affine_from_geometry
from medvision.paths import cache_dir

ROI = [32, 32, 32]


def tiny_unet(channels=(4, 8)) -> torch.nn.Module:
    torch.manual_seed(0)
    return UNet(spatial_dims=3, in_channels=1, out_channels=2, channels=channels, strides=(2,),
                num_res_units=2, norm="batch").eval()


def spleen_inference(channels=(4, 8)) -> dict:
    """configs/inference.json as the model zoo's spleen_ct_segmentation bundle writes it (a tiny UNet)."""
    return {
        "imports": ["$import glob", "$import os"],
        "bundle_root": ".",
        "output_dir": "$@bundle_root + '/eval'",
        "dataset_dir": "/workspace/data/Task09_Spleen",
        "datalist": "$list(sorted(glob.glob(@dataset_dir + '/imagesTs/*.nii.gz')))",
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "network_def": {"_target_": "UNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 2,
                        "channels": list(channels), "strides": [2], "num_res_units": 2, "norm": "batch"},
        "network": "$@network_def.to(@device)",
        "preprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "LoadImaged", "keys": "image"},
            {"_target_": "EnsureChannelFirstd", "keys": "image"},
            {"_target_": "Orientationd", "keys": "image", "axcodes": "RAS"},
            {"_target_": "Spacingd", "keys": "image", "pixdim": [1.5, 1.5, 2.0], "mode": "bilinear"},
            {"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": -57, "a_max": 164, "b_min": 0,
             "b_max": 1, "clip": True},
            {"_target_": "EnsureTyped", "keys": "image"}]},
        "dataset": {"_target_": "Dataset", "data": "$[{'image': i} for i in @datalist]",
                    "transform": "@preprocessing"},
        "inferer": {"_target_": "SlidingWindowInferer", "roi_size": ROI, "sw_batch_size": 4, "overlap": 0.5},
        "postprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "Activationsd", "keys": "pred", "softmax": True},
            {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": "image",
             "nearest_interp": False, "to_tensor": True},
            {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
            {"_target_": "SaveImaged", "keys": "pred", "output_dir": "@output_dir", "output_ext": ".nii.gz"}]},
        "checkpointloader": {"_target_": "CheckpointLoader", "load_path": "$@bundle_root + '/models/model.pt'",
                             "load_dict": {"model": "@network"}},
        "initialize": ["$monai.utils.set_determinism(seed=123)", "$@checkpointloader(@evaluator)"],
        "run": ["$@evaluator.run()"],
    }


SPLEEN_METADATA = {
    "schema": "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/"
              "meta_schema_20220324.json",
    "version": "0.2.0",
    "changelog": {"0.2.0": "unify naming"},
    "monai_version": "0.9.0", "pytorch_version": "1.10.0",
    "task": "Decathlon spleen segmentation",
    "description": "A pre-trained model for volumetric (3D) segmentation of the spleen from CT image",
    "authors": "MONAI team", "copyright": "Copyright (c) MONAI Consortium",
    "data_source": "Task09_Spleen.tar from http://medicaldecathlon.com/",
    "eval_metrics": {"mean_dice": 0.96},
    "intended_use": "This is an example, not to be used for diagnostic purposes",
    "network_data_format": {
        "inputs": {"image": {"type": "image", "format": "hounsfield", "modality": "CT", "num_channels": 1,
                             "spatial_shape": [96, 96, 96], "dtype": "float32", "value_range": [0, 1],
                             "is_patch_data": True, "channel_def": {"0": "image"}}},
        "outputs": {"pred": {"type": "image", "format": "segmentation", "num_channels": 2,
                             "spatial_shape": [96, 96, 96], "dtype": "float32", "value_range": [0, 1],
                             "is_patch_data": True, "channel_def": {"0": "background", "1": "spleen"}}},
    },
}


def make_bundle(root: Path, *, weights=None, inference=None, name="spleen_ct_segmentation") -> Path:
    bundle = root / name
    (bundle / "configs").mkdir(parents=True)
    (bundle / "models").mkdir()
    (bundle / "docs").mkdir()
    (bundle / "configs" / "inference.json").write_text(json.dumps(inference or spleen_inference(), indent=4))
    (bundle / "configs" / "metadata.json").write_text(json.dumps(SPLEEN_METADATA, indent=4))
    (bundle / "LICENSE").write_text("Apache License\nVersion 2.0, January 2004\nhttp://www.apache.org/licenses/\n")
    (bundle / "docs" / "README.md").write_text("# Spleen CT segmentation\n")
    torch.save(tiny_unet().state_dict() if weights is None else weights, bundle / "models" / "model.pt")
    return bundle


def zip_folder(folder: Path, out: Path, extra: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(out, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, f"{folder.name}/{p.relative_to(folder).as_posix()}")
        for name, text in (extra or {}).items():
            zf.writestr(name, text)
    return out


def synthetic_ct() -> Volume:
    """A small CT: (z, y, x) int16, LPS affine, a bright 'organ' in soft tissue."""
    arr = np.full((20, 40, 36), -1000, np.int16)
    arr[2:18, 5:35, 4:32] = 40
    arr[6:14, 12:24, 10:20] = 120
    affine = affine_from_geometry((0.9, 0.9, 2.5), (-20.0, -30.0, 100.0))
    return Volume(arr, affine, "1.2.3", {"modality": "CT"})


def minimal_card(**extra) -> dict:
    card = {"id": "tiny-spleen", "version": "1.0", "name": "Tiny spleen", "modality": "CT",
            "labels": [{"value": 1, "name": "spleen"}],
            "input": {"orientation": "RAS", "spacing_mm": [1.5, 1.5, 2.0],
                      "normalization": {"kind": "ct", "low": -57, "high": 164}},
            "inference": {"mode": "sliding_window", "sliding_window": {"roi_size": ROI, "overlap": 0.25}},
            "output": {"activation": "softmax"}}
    card.update(extra)
    return card


def run_on_ct(package: ModelPackage):
    volume = synthetic_ct()
    result = run_job(infer_job(package, volume, InferenceOptions(device="cpu", threads=1)))
    assert result.labels.array.shape == volume.shape
    assert np.allclose(result.labels.affine, volume.affine)
    assert set(np.unique(result.labels.array)) <= {0, 1}
    assert [la.name for la in result.labels.table] == ["spleen"]
    return result


# ---- MONAI bundles ------------------------------------------------------------------------------
def test_bundle_folder_becomes_a_package_with_the_bundles_card(tmp_path):
    bundle = make_bundle(tmp_path)
    package = import_any(bundle)
    card = package.card
    assert package.folder.is_relative_to(cache_dir())
    assert card["id"] == "spleen_ct_segmentation" and card["version"] == "0.2.0"
    assert card["modality"] == "CT" and card["dims"] == 3 and card["task"] == "segmentation"
    assert card["architecture"] == {"name": "monai.UNet", "args": {
        "spatial_dims": 3, "in_channels": 1, "out_channels": 2, "channels": [4, 8], "strides": [2],
        "num_res_units": 2, "norm": "batch"}}
    assert card["weights"]["file"] == "weights.safetensors"
    assert card["input"] == {"orientation": "RAS", "spacing_mm": [1.5, 1.5, 2.0],
                             "normalization": {"kind": "ct", "low": -57.0, "high": 164.0, "clip": True}}
    assert card["inference"] == {"mode": "sliding_window", "sliding_window": {
        "roi_size": ROI, "overlap": 0.5, "blend": "constant", "batch_size": 4}}
    assert card["output"] == {"activation": "softmax", "in_network": False}
    assert [(la["value"], la["name"]) for la in card["labels"]] == [(1, "spleen")]
    assert card["license"] == "Apache-2.0" and card["license_file"] == "LICENSE"
    assert (package.folder / "LICENSE").is_file() and (package.folder / "README.md").is_file()
    assert "MONAI team" in card["attribution"]
    prov = card["provenance"]
    assert prov["format"] == "monai-bundle" and prov["bundle"] == "spleen_ct_segmentation"
    assert prov["bundle_version"] == "0.2.0" and prov["source"] == str(bundle.resolve())
    assert prov["source_weights"] == "models/model.pt" and len(prov["source_weights_sha256"]) == 64
    assert card["trainable"] is True and package.trainable
    # the safetensors hold exactly the bundle's weights
    net = package.network()
    reference = tiny_unet().state_dict()
    assert all(torch.equal(net.state_dict()[k], v) for k, v in reference.items())


@pytest.mark.parametrize("clip", [True, False])
def test_bundle_intensity_window_clips_as_the_bundle_says(tmp_path, clip):
    """``ScaleIntensityRanged(clip=...)`` is carried to the card and the engine's window gives monai's own
    values, outside the window too (HU below -57 and above 164)."""
    from monai.transforms import ScaleIntensityRange

    from medvision.ai.preprocess import normalize

    config = spleen_inference()
    config["preprocessing"]["transforms"][4]["clip"] = clip
    card = import_any(make_bundle(tmp_path, inference=config)).card
    spec = card["input"]["normalization"]
    assert spec == {"kind": "ct", "low": -57.0, "high": 164.0, "clip": clip}
    hu = torch.linspace(-1000, 1500, 101)
    ours = normalize(hu.clone(), spec)
    theirs = torch.as_tensor(ScaleIntensityRange(a_min=-57, a_max=164, b_min=0, b_max=1, clip=clip)(hu.clone()))
    torch.testing.assert_close(ours, theirs.float())
    assert (ours.max() > 1) is not clip


def test_bundle_installs_and_runs_on_a_ct_onto_its_exact_grid(tmp_path):
    package = import_any(make_bundle(tmp_path))
    installed = Registry().install(package)
    assert installed.folder.parent == user_dir()
    assert Registry().get("spleen_ct_segmentation").version == "0.2.0"
    assert (installed.folder / "LICENSE").is_file()
    run_on_ct(installed)
    # importing an installed package folder gives it back as it is
    assert import_any(installed.folder).folder == installed.folder


def test_bundle_zip_with_checkpoint_dict_and_module_prefix(tmp_path):
    state = {f"module.{k}": v for k, v in tiny_unet().state_dict().items()}
    bundle = make_bundle(tmp_path / "src", weights={"model": state, "epoch": 3})
    archive = zip_folder(bundle, tmp_path / "spleen_ct_segmentation_v0.2.0.zip")
    package = import_any(archive)
    assert package.id == "spleen_ct_segmentation"
    assert package.card["provenance"]["source"] == str(archive.resolve())
    assert (package.folder / "LICENSE").is_file()
    assert set(package.network().state_dict()) == set(tiny_unet().state_dict())
    assert not any((p / "unpacked").exists() for p in (cache_dir() / "imports").iterdir())  # cleaned up


def test_tampered_weights_are_refused(tmp_path):
    installed = Registry().install(import_any(make_bundle(tmp_path)))
    weights = installed.folder / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(PackageError, match="does not match its card"):
        ModelPackage.open(installed.folder).network()


def test_bundle_whose_weights_do_not_fit_is_refused_and_leaves_nothing(tmp_path):
    bundle = make_bundle(tmp_path, weights=tiny_unet(channels=(4, 16)).state_dict())
    with pytest.raises(PackageError, match="do not fit its network monai.UNet"):
        import_any(bundle)
    assert list((cache_dir() / "imports").iterdir()) == []


def test_bundle_config_code_and_custom_networks_are_refused_clearly(tmp_path):
    inference = spleen_inference()
    inference["network_def"]["channels"] = "$[int(os.environ['C']), 8]"
    with pytest.raises(PackageError, match=r"network_def: the expression .* is not understood.*never code"):
        import_any(make_bundle(tmp_path / "a", inference=inference))
    # plain arithmetic and references are fine
    inference = spleen_inference()
    inference["base"] = 4
    inference["network_def"]["channels"] = "$[@base, @base * 2]"
    inference["network_def"]["out_channels"] = "@num_classes"
    inference["num_classes"] = 2
    assert import_any(make_bundle(tmp_path / "b", inference=inference)).card["architecture"]["args"]["channels"] \
        == [4, 8]
    inference = spleen_inference()
    inference["network_def"]["_target_"] = "scripts.net.MyNet"
    with pytest.raises(PackageError, match="bundle's own code.*TorchScript"):
        import_any(make_bundle(tmp_path / "c", inference=inference))
    inference = spleen_inference()
    inference["preprocessing"]["transforms"].insert(3, {"_target_": "RandGaussianNoised", "keys": "image"})
    with pytest.raises(PackageError, match="preprocessing RandGaussianNoised is not understood"):
        import_any(make_bundle(tmp_path / "d", inference=inference))


def test_yaml_bundle_without_pyyaml_says_what_it_needs(tmp_path, monkeypatch):
    bundle = make_bundle(tmp_path)
    (bundle / "configs" / "inference.json").rename(bundle / "configs" / "inference.yaml")
    monkeypatch.setitem(sys.modules, "yaml", None)
    with pytest.raises(PackageError, match="PyYAML"):
        import_any(bundle)


def test_zip_with_path_traversal_is_refused(tmp_path):
    bundle = make_bundle(tmp_path / "src")
    archive = zip_folder(bundle, tmp_path / "evil.zip", extra={"../x": "boom", "../../escaped.txt": "boom"})
    with pytest.raises(PackageError, match="path traversal"):
        import_any(archive)
    assert not (cache_dir() / "imports" / "x").exists() and not (cache_dir() / "x").exists()
    assert list((cache_dir() / "imports").iterdir()) == []


# ---- pickles -------------------------------------------------------------------------------------
class _Trap:
    """Unpickling this runs code: it would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "unpickled!"))


def test_pickled_modules_and_code_are_refused_never_unpickled(tmp_path, monkeypatch):
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    whole = tmp_path / "whole_model.pt"
    torch.save(tiny_unet(), whole)
    with pytest.raises(PackageError, match="pickled Python objects.*never unpickles"):
        import_any(whole, card=minimal_card(architecture={"name": "monai.UNet", "args": {}}))
    marker = tmp_path / "marker.txt"
    trap = tmp_path / "trap.pth"
    torch.save({"weight": torch.zeros(2), "payload": _Trap(marker)}, trap)
    with pytest.raises(PackageError, match="pickled Python objects"):
        import_any(trap)
    with open(tmp_path / "legacy.pkl.pt", "wb") as fh:
        pickle.dump(_Trap(marker), fh)
    with pytest.raises(PackageError, match="pickled Python objects|not a readable torch weights file"):
        import_any(tmp_path / "legacy.pkl.pt")
    assert not marker.exists()
    # a bundle whose model.pt is a whole pickled module is refused the same way
    with pytest.raises(PackageError, match="pickled Python objects"):
        import_any(make_bundle(tmp_path / "b", weights=tiny_unet()))
    assert calls and all(c is True for c in calls)


def test_state_dict_with_a_card_is_converted_to_safetensors(tmp_path):
    path = tmp_path / "unet.pth"
    torch.save(tiny_unet().state_dict(), path)
    with pytest.raises(PackageError, match="no description of its input"):
        import_any(path)
    with pytest.raises(PackageError, match="lacks architecture"):
        import_any(path, card=minimal_card())
    arch = {"name": "monai.UNet", "args": {"spatial_dims": 3, "in_channels": 1, "out_channels": 2,
                                           "channels": [4, 8], "strides": [2], "num_res_units": 2,
                                           "norm": "batch"}}
    package = import_any(path, card=minimal_card(architecture=arch))
    assert package.card["weights"]["file"] == "weights.safetensors" and package.trainable
    assert package.card["provenance"]["format"] == "state_dict"


# ---- TorchScript ---------------------------------------------------------------------------------
def test_torchscript_needs_a_card_then_runs_but_is_not_trainable(tmp_path):
    ts = tmp_path / "spleen.ts"
    torch.jit.save(torch.jit.trace(tiny_unet(), torch.zeros(1, 1, *ROI)), str(ts))
    with pytest.raises(PackageError, match="orientation.*spacing.*normalisation.*labels"):
        import_any(ts, trust_code=True)
    with pytest.raises(PackageError, match="lacks input.orientation, input.spacing_mm"):
        import_any(ts, trust_code=True, card={"id": "x", "labels": [{"value": 1, "name": "spleen"}],
                                              "output": {"activation": None},
                                              "input": {"normalization": {"kind": "ct", "low": 0, "high": 1}}})
    card_file = tmp_path / "card.json"
    card_file.write_text(json.dumps(minimal_card()))
    with pytest.raises(PackageError, match="contains code that runs with your rights.*--trust-code"):
        import_any(ts, card=card_file)
    package = import_any(ts, card=card_file, trust_code=True)
    assert package.card["architecture"] == {"name": "torchscript"} and package.card["contains_code"] is True
    assert package.contains_code and "CONTAINS CODE" in package.summary()
    assert package.card["weights"]["file"] == "model.ts" and package.card["trainable"] is False
    assert "cannot be fine-tuned" in package.card["description"]
    assert not package.trainable
    assert isinstance(package.network().script, torch.jit.ScriptModule)
    with pytest.raises(PackageError, match="cannot be fine-tuned"):
        package.state_dict()
    with pytest.raises(PackageError, match="cannot be fine-tuned"):
        build(package.card["architecture"])
    with pytest.raises(PackageError, match="--trust-code"):
        Registry().install(package)
    installed = Registry().install(package, trust_code=True)
    run_on_ct(installed)
    # tampering is refused for TorchScript too
    weights = installed.folder / "model.ts"
    weights.write_bytes(weights.read_bytes() + b"\0")
    with pytest.raises(PackageError, match="does not match its card"):
        installed.network()


def test_torchscript_pt_with_model_json_beside_it(tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    torch.jit.save(torch.jit.trace(tiny_unet(), torch.zeros(1, 1, *ROI)), str(folder / "net.pt"))
    (folder / "model.json").write_text(json.dumps(minimal_card(id="beside")))
    package = import_any(folder / "net.pt", trust_code=True)
    assert package.id == "beside" and package.runtime_kind() == "torchscript"


# ---- ONNX ----------------------------------------------------------------------------------------
def test_onnx_without_onnxruntime_asks_for_the_extra(tmp_path, monkeypatch):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"not really onnx")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(PackageError, match="install the onnx extra"):
        import_any(path, card=minimal_card())


def test_onnx_imports_and_runs_like_the_torch_network(tmp_path):
    pytest.importorskip("onnxruntime", reason="onnxruntime (the onnx extra) is not installed")
    pytest.importorskip("onnx", reason="torch.onnx.export needs the onnx package")
    net = tiny_unet()
    path = tmp_path / "spleen.onnx"
    axes = {0: "b", 2: "x", 3: "y", 4: "z"}
    try:
        torch.onnx.export(net, (torch.zeros(1, 1, *ROI),), str(path), input_names=["image"], output_names=["pred"],
                          dynamic_axes={"image": axes, "pred": axes}, dynamo=False)
    except Exception as exc:  # noqa: BLE001 - the exporter's own dependencies
        pytest.skip(f"torch.onnx.export is unavailable here: {exc}")
    with pytest.raises(PackageError, match="no description of its input"):
        import_any(path)
    package = Registry().install(import_any(path, card=minimal_card(id="tiny-onnx")))
    assert package.card["architecture"] == {"name": "onnx"} and not package.trainable
    onnx_net = package.network()
    x = torch.rand(2, 1, 24, 32, 16)
    with torch.no_grad():
        assert torch.allclose(onnx_net(x), net(x), atol=1e-4)
    run_on_ct(package)


# ---- CLI -----------------------------------------------------------------------------------------
def test_cli_models_import_list_show(tmp_path, capsys):
    from medvision.cli import main

    bundle = make_bundle(tmp_path)
    assert main(["models", "import", str(bundle)]) == 0
    assert "spleen_ct_segmentation 0.2.0" in capsys.readouterr().out
    assert main(["models", "list"]) == 0
    assert "spleen_ct_segmentation 0.2.0" in capsys.readouterr().out
    assert main(["models", "show", "spleen_ct_segmentation", "--json"]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["id"] == "spleen_ct_segmentation" and card["architecture"]["name"] == "monai.UNet"
    assert main(["models", "import", str(bundle)]) == 2  # already installed
    assert "already installed" in capsys.readouterr().err
    evil = zip_folder(bundle, tmp_path / "evil.zip", extra={"../x": "boom"})
    assert main(["models", "import", str(evil)]) == 2
    assert "path traversal" in capsys.readouterr().err
    # the real command line, as a user types it
    done = subprocess.run([sys.executable, "-m", "medvision.cli", "models", "show", "spleen_ct_segmentation"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "monai.UNet" in done.stdout and "Apache-2.0" in done.stdout


def test_cli_import_with_a_card_removes_its_staging_but_never_the_users_folder(tmp_path, capsys):
    from medvision.cli import main

    ts = tmp_path / "spleen.ts"
    torch.jit.save(torch.jit.trace(tiny_unet(), torch.zeros(1, 1, *ROI)), str(ts))
    assert main(["models", "import", str(ts), "--trust-code"]) == 2  # no card beside it
    assert "no description of its input" in capsys.readouterr().err
    card = tmp_path / "cards" / "tiny.json"
    card.parent.mkdir()
    card.write_text(json.dumps(minimal_card(id="cli-ts")))
    assert main(["models", "import", str(ts), "--card", str(card)]) == 2  # code, not trusted
    assert "--trust-code" in capsys.readouterr().err
    assert main(["models", "import", str(ts), "--card", str(card), "--trust-code"]) == 0
    assert "cli-ts 1.0" in capsys.readouterr().out
    installed = Registry().get("cli-ts")
    assert installed.folder.parent == user_dir() and installed.runtime_kind() == "torchscript"
    staged = cache_dir() / "imports"
    assert list(staged.iterdir()) == []  # copied into the user's models, then removed
    # refused: removed all the same
    assert main(["models", "import", str(ts), "--card", str(card), "--trust-code"]) == 2
    assert "already installed" in capsys.readouterr().err
    assert list(staged.iterdir()) == []
    # a zipped package is unpacked under the cache (removed); the user's own package folder is left alone
    assert main(["models", "import", str(zip_folder(installed.folder, tmp_path / "pkg.zip")), "--replace",
                 "--trust-code"]) == 0
    assert list(staged.iterdir()) == []
    own = Path(shutil.copytree(installed.folder, tmp_path / "own"))
    assert main(["models", "import", str(own), "--replace", "--trust-code"]) == 0
    assert (own / "model.json").is_file() and (own / "model.ts").is_file()
    assert Registry().get("cli-ts").network() is not None


def test_zipped_medvision_package_is_imported_as_it_is(tmp_path):
    installed = Registry().install(import_any(make_bundle(tmp_path)))
    archive = zip_folder(installed.folder, tmp_path / "package.zip")
    package = import_any(archive)
    assert package.card == installed.card and package.folder != installed.folder
    assert Registry().install(package, replace=True).network() is not None


def test_staging_folders_live_in_the_user_cache():
    assert importers.staging_folder("x").parent == cache_dir() / "imports"


def test_models_list_keeps_a_parcellation_to_one_short_line_and_show_lists_every_label(capsys):
    from medvision.cli import main

    assert main(["models", "list"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("brainchop-dkt-104 "))
    assert len(line) < 400 and "(103 labels: medvision models show brainchop-dkt-104)" in line
    assert main(["models", "show", "brainchop-dkt-104"]) == 0
    out = capsys.readouterr().out
    assert "labels (103):" in out and "  103  CC_Anterior" in out and "    1  ctx-lh-bankssts" in out
