"""Model folders: exact round trips, refusal of damaged or foreign files, atomic saves."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from autorec import AutoRec, ModelFileError, NotFittedError, Ratings
from autorec.persist import (
    JSON_FILE,
    WEIGHTS_FILE,
    check_save_path,
    load_model,
    read_model_info,
    save_model,
)

FAST = {"hidden": 8, "epochs": 3, "batch_size": 16, "random_state": 0, "device": "cpu"}


def all_pairs(model: AutoRec) -> tuple[np.ndarray, np.ndarray]:
    """Every known (user, item) pair plus a few cold ones."""
    users, items = np.meshgrid(model.users_.raw_ids.astype(object),
                               model.items_.raw_ids.astype(object), indexing="ij")
    users = np.concatenate([users.ravel(), ["nobody", model.users_.raw_ids[0]]])
    items = np.concatenate([items.ravel(), [model.items_.raw_ids[0], "nothing"]])
    return users, items


@pytest.fixture(scope="module")
def models() -> dict[str, AutoRec]:
    from conftest import make_low_rank

    ratings = make_low_rank()
    frame = ratings.to_dataframe()
    frame["user_id"] = "u" + frame["user_id"].astype(str)  # text ids
    return {
        "item": AutoRec(variant="item", validation=0.1, **FAST).fit(ratings),
        "user-text-ids": AutoRec(variant="user", validation=0.0, **FAST).fit(frame),
        "both-none-ensemble": AutoRec(variant="both", ensemble=2, baseline="none",
                                      validation=0.1, cold="midpoint", **FAST).fit(ratings),
        "lazy-adam-l2-list": AutoRec(optimizer="lazy_adam", l2=[1.0, 10.0], validation=0.1,
                                     **FAST).fit(ratings),
    }


@pytest.fixture
def saved(models: dict[str, AutoRec], tmp_path: Path) -> Path:
    return save_model(models["item"], tmp_path / "model")


@pytest.mark.parametrize("name", ["item", "user-text-ids", "both-none-ensemble",
                                  "lazy-adam-l2-list"])
def test_round_trip_predicts_bitwise_the_same(models: dict[str, AutoRec], tmp_path: Path,
                                              name: str) -> None:
    model = models[name]
    path = model.save(tmp_path / "m")
    loaded = AutoRec.load(path)
    users, items = all_pairs(model)
    before, cold_before = model.predict(users, items, return_cold=True)
    after, cold_after = loaded.predict(users, items, return_cold=True)
    assert np.array_equal(before, after)  # bitwise
    assert np.array_equal(cold_before, cold_after) and cold_after[-2:].all()
    assert loaded.get_params() == model.get_params()
    assert loaded.users_ == model.users_ and loaded.items_ == model.items_
    assert loaded.rating_scale_ == model.rating_scale_
    assert loaded.global_mean_ == model.global_mean_
    assert np.array_equal(loaded.blend_, model.blend_)
    assert loaded.history_ == json.loads(json.dumps(model.history_))
    assert loaded.best_epoch_ == model.best_epoch_
    assert loaded.l2_ == model.l2_
    assert (np.isnan(loaded.validation_rmse_) and np.isnan(model.validation_rmse_)) or \
        loaded.validation_rmse_ == model.validation_rmse_
    for a, b in zip(model.members_, loaded.members_, strict=True):
        assert a.spec == b.spec and a.scale == b.scale and a.best_epoch == b.best_epoch
        assert (a.matrix != b.matrix).nnz == 0
    pd.testing.assert_frame_equal(model.recommend(model.users_.raw_ids[:5], n=4),
                                  loaded.recommend(model.users_.raw_ids[:5], n=4))


def test_loaded_model_can_be_saved_again_identically(saved: Path, tmp_path: Path) -> None:
    again = save_model(load_model(saved), tmp_path / "again")
    assert (again / WEIGHTS_FILE).read_bytes() == (saved / WEIGHTS_FILE).read_bytes()


def test_folder_layout_and_json(saved: Path, models: dict[str, AutoRec]) -> None:
    assert sorted(p.name for p in saved.iterdir()) == [JSON_FILE, WEIGHTS_FILE]
    info = json.loads((saved / JSON_FILE).read_text())
    weights = (saved / WEIGHTS_FILE).read_bytes()
    assert info["format"] == "autorec-model" and info["format_version"] == 1
    assert info["weights"]["sha256"] == hashlib.sha256(weights).hexdigest()
    assert info["weights"]["bytes"] == len(weights)
    assert set(info["versions"]) >= {"autorec", "torch", "python"}
    assert info["variant"] == "item" and info["rating_scale"] == [1.0, 5.0]
    assert info["users"] == {"storage": "int64", "tensor": "users.ids"}
    assert info["members"][0]["spec"]["hidden"] == 8
    # the weights file is plain safetensors: a JSON header, then raw buffers
    header_size = int.from_bytes(weights[:8], "little")
    header = json.loads(weights[8:8 + header_size])
    assert "member.0.encoder_weight" in header and "member.0.inputs.indptr" in header
    assert header["member.0.encoder_weight"]["dtype"] == "F32"
    for path in saved.iterdir():  # the permissions a plain open() would give
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~_umask()


def test_text_ids_are_json_strings(models: dict[str, AutoRec], tmp_path: Path) -> None:
    path = save_model(models["user-text-ids"], tmp_path / "m")
    info = json.loads((path / JSON_FILE).read_text())
    assert info["users"]["storage"] == "text" and info["users"]["ids"][0].startswith("u")
    assert info["items"]["storage"] == "int64"


def test_dataset_name_is_recorded(models: dict[str, AutoRec], tmp_path: Path) -> None:
    path = models["item"].save(tmp_path / "m", dataset="ml-100k")
    assert read_model_info(path)["dataset"] == "ml-100k"


def test_unfitted_model_is_not_saved(tmp_path: Path) -> None:
    with pytest.raises(NotFittedError):
        AutoRec().save(tmp_path / "m")
    assert not (tmp_path / "m").exists()


# -- refusing what is not a sound model ---------------------------------------------------------
class _Payload:
    """Unpickling this creates ``marker``: what a crafted model file would do to its loader."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (Path(self.marker),))


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
@pytest.mark.parametrize("checksum", ["kept", "forged"])
def test_malicious_pickle_where_the_weights_should_be(saved: Path, tmp_path: Path, writer: str,
                                                      checksum: str) -> None:
    # first show that the payload is real: unpickling a twin of it runs code
    control = tmp_path / "control-marker"
    pickle.loads(pickle.dumps(_Payload(control)))
    assert control.exists()

    marker = tmp_path / "pwned-marker"
    weights = saved / WEIGHTS_FILE
    if writer == "pickle":
        weights.write_bytes(pickle.dumps(_Payload(marker)))
    else:
        torch.save({"encoder_weight": _Payload(marker)}, weights)
    if checksum == "forged":  # an attacker who also rewrites the recorded checksum
        info = json.loads((saved / JSON_FILE).read_text())
        data = weights.read_bytes()
        info["weights"].update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
        (saved / JSON_FILE).write_text(json.dumps(info))
    with pytest.raises(ModelFileError) as caught:
        load_model(saved)
    message = str(caught.value)
    assert "\n" not in message and WEIGHTS_FILE in message
    assert ("checksum" in message or "truncated" in message or "longer" in message
            if checksum == "kept" else "not a readable safetensors file" in message)
    assert not marker.exists()


def test_tampered_weights_refused(saved: Path) -> None:
    weights = saved / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0x01  # one bit of one weight, same size
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="SHA-256 checksum mismatch"):
        load_model(saved)


def test_truncated_weights_refused(saved: Path) -> None:
    weights = saved / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ModelFileError, match=r"truncated \(100 bytes"):
        load_model(saved)


def test_missing_weights_refused(saved: Path) -> None:
    (saved / WEIGHTS_FILE).unlink()
    with pytest.raises(ModelFileError, match="missing"):
        load_model(saved)


def test_truncated_json_refused(saved: Path) -> None:
    text = (saved / JSON_FILE).read_text()
    (saved / JSON_FILE).write_text(text[:len(text) // 2])
    with pytest.raises(ModelFileError, match="not valid JSON"):
        load_model(saved)


@pytest.mark.parametrize("version, needle", [(2, "upgrade autorec"), (0, "not supported"),
                                             ("1", "not supported")])
def test_other_format_versions_refused(saved: Path, version: object, needle: str) -> None:
    info = json.loads((saved / JSON_FILE).read_text())
    info["format_version"] = version
    (saved / JSON_FILE).write_text(json.dumps(info))
    with pytest.raises(ModelFileError, match=needle):
        load_model(saved)


def test_not_a_model_refused(tmp_path: Path, saved: Path) -> None:
    with pytest.raises(ModelFileError, match="no such model folder"):
        load_model(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFileError, match="not an autorec model folder"):
        load_model(tmp_path / "empty")
    with pytest.raises(ModelFileError, match="is a file, not a model folder"):
        load_model(saved / JSON_FILE)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / JSON_FILE).write_text('{"name": "something else"}')
    with pytest.raises(ModelFileError, match="not an autorec model"):
        load_model(tmp_path / "other")


def test_arrays_that_do_not_fit_refused(saved: Path) -> None:
    from safetensors.numpy import load, save

    tensors = load((saved / WEIGHTS_FILE).read_bytes())
    tensors["blend"] = np.zeros(7)
    data = save(tensors)
    (saved / WEIGHTS_FILE).write_bytes(data)
    info = json.loads((saved / JSON_FILE).read_text())
    info["weights"].update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    (saved / JSON_FILE).write_text(json.dumps(info))
    with pytest.raises(ModelFileError, match=r"'blend' has shape \(7,\), expected \(2,\)"):
        load_model(saved)


# -- atomic saves -------------------------------------------------------------------------------
def test_save_replaces_an_existing_model(models: dict[str, AutoRec], saved: Path) -> None:
    save_model(models["both-none-ensemble"], saved)
    assert load_model(saved).variant == "both"
    assert [p.name for p in saved.parent.iterdir() if p.name.startswith(".")] == []


def test_save_refuses_to_replace_other_things(models: dict[str, AutoRec], tmp_path: Path
                                              ) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(ModelFileError, match="holds other files"):
        save_model(models["item"], folder)
    with pytest.raises(ModelFileError, match="holds other files"):
        check_save_path(folder)  # the same check, before any training
    assert check_save_path(tmp_path / "new" / "model") == tmp_path / "new" / "model"
    assert (folder / "holiday.jpg").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ModelFileError, match="not a folder"):
        save_model(models["item"], tmp_path / "file")
    (tmp_path / "empty").mkdir()
    save_model(models["item"], tmp_path / "empty")  # an empty folder is fine
    load_model(tmp_path / "empty")


def test_interrupted_save_keeps_the_old_model(models: dict[str, AutoRec], saved: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import autorec.persist as persist

    before = (saved / WEIGHTS_FILE).read_bytes()
    real = persist._write_file

    def write_then_interrupt(path: Path, content: bytes) -> None:
        real(path, content[:len(content) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(persist, "_write_file", write_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        save_model(models["both-none-ensemble"], saved)
    assert (saved / WEIGHTS_FILE).read_bytes() == before
    assert load_model(saved).variant == "item"
    assert sorted(p.name for p in saved.parent.iterdir()) == ["model"]  # no temporary left


def test_failure_while_swapping_puts_the_old_model_back(models: dict[str, AutoRec],
                                                        saved: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import autorec.persist as persist

    calls = []
    real = os.replace

    def replace(src: os.PathLike[str], dst: os.PathLike[str]) -> None:
        calls.append(dst)
        if len(calls) == 2:  # the old model is moved aside; the new one fails to move in
            raise OSError(28, "No space left on device")
        real(src, dst)

    monkeypatch.setattr(persist.os, "replace", replace)
    with pytest.raises(OSError, match="cannot write"):
        save_model(models["both-none-ensemble"], saved)
    monkeypatch.undo()
    assert load_model(saved).variant == "item"
    assert sorted(p.name for p in saved.parent.iterdir()) == ["model"]


def test_killed_save_leaves_no_loadable_half_model(models: dict[str, AutoRec],
                                                   tmp_path: Path) -> None:
    """A process killed halfway through a save (here: exiting at once while the weights are
    half written) leaves no model at the target, only a hidden temporary folder that does not
    load either."""
    source = save_model(models["item"], tmp_path / "source")
    script = f"""
import os, autorec.persist as persist
model = persist.load_model({str(source)!r})
real = persist._write_file
def die(path, content):
    real(path, content[:len(content) // 2])
    os._exit(9)
persist._write_file = die
persist.save_model(model, {str(tmp_path / "target")!r})
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert result.returncode == 9, result.stderr.decode()
    assert not (tmp_path / "target").exists()
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".target.")]
    assert len(leftovers) == 1
    with pytest.raises(ModelFileError):
        load_model(leftovers[0])


# -- devices ------------------------------------------------------------------------------------
def test_load_onto_unavailable_device_is_a_clear_error(saved: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="CUDA is not available"):
        load_model(saved, device="cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_round_trip_bitwise(tmp_path: Path, low_rank: Ratings) -> None:
    model = AutoRec(**{**FAST, "device": "cuda"}, validation=0.1).fit(low_rank)
    loaded = load_model(model.save(tmp_path / "m"), device="cuda")
    assert loaded.members_[0].net.encoder_weight.device.type == "cuda"
    users, items = all_pairs(model)
    assert np.array_equal(model.predict(users, items), loaded.predict(users, items))
    on_cpu = load_model(tmp_path / "m", device="cpu").predict(users, items)
    np.testing.assert_allclose(on_cpu, model.predict(users, items), atol=1e-5)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
