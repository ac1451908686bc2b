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


def write_info(folder: Path, info: dict) -> None:
    """Write ``info`` as the folder's model.json with its checksum recomputed, the way an
    editor who knows the format would: what is then refused is refused by the field checks
    behind the checksum. The canonical form is written out here, not taken from autorec."""
    content = {key: value for key, value in info.items() if key != "checksum"}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
    if info.get("format_version") != 1:
        content["checksum"] = {"sha256": hashlib.sha256(canonical).hexdigest()}
    (folder / JSON_FILE).write_text(json.dumps(content, indent=2))


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
    assert info["format"] == "autorec-model" and info["format_version"] == 3
    # model.json's own content is covered too: the canonical form documented in info_digest
    content = {key: value for key, value in info.items() if key != "checksum"}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
    assert info["checksum"] == {"sha256": hashlib.sha256(canonical).hexdigest()}
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
    # a loaded model saved again keeps it (recommend's titles, serve's /model); a name given
    # to save replaces it
    again = AutoRec.load(path).save(tmp_path / "again")
    assert read_model_info(again)["dataset"] == "ml-100k"
    assert AutoRec.load(again).fitted_.dataset == "ml-100k"
    other = AutoRec.load(again).save(tmp_path / "other", dataset="ml-1m")
    assert read_model_info(other)["dataset"] == "ml-1m"
    assert read_model_info(models["item"].save(tmp_path / "plain"))["dataset"] is None


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
    if checksum == "forged":  # an attacker who also rewrites the recorded checksums
        info = json.loads((saved / JSON_FILE).read_text())
        data = weights.read_bytes()
        info["weights"].update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
        write_info(saved, info)
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


@pytest.mark.parametrize("version, needle", [(4, "upgrade autorec"), (0, "not supported"),
                                             ("1", "not supported"), (True, "not supported"),
                                             (3.0, "not supported")])
def test_other_format_versions_refused(saved: Path, version: object, needle: str) -> None:
    info = json.loads((saved / JSON_FILE).read_text())
    info["format_version"] = version
    write_info(saved, info)
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


@pytest.mark.parametrize("items", [[0, 1, 1000], [-1, 0, 1], [0, 0, 1], [2, 1, 0]])
def test_ranking_item_indices_that_do_not_fit_refused(saved: Path, items: list[int]) -> None:
    """EASE's item indices were not checked: out of range they loaded and then every list was
    a traceback; negative, repeated or unsorted ones ranked other items without a word."""
    from safetensors.numpy import load, save

    tensors = load((saved / WEIGHTS_FILE).read_bytes())
    tensors["ranking.ease.items"] = tensors["ranking.ease.items"].copy()
    tensors["ranking.ease.items"][:3] = items
    data = save(tensors)
    (saved / WEIGHTS_FILE).write_bytes(data)
    info = json.loads((saved / JSON_FILE).read_text())
    info["weights"].update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    write_info(saved, info)
    with pytest.raises(ModelFileError,
                       match=r"ranking\.ease\.items must be increasing item indices from 0 to 29"):
        load_model(saved)


def test_arrays_that_do_not_fit_refused(saved: Path) -> None:
    from safetensors.numpy import load, save

    tensors = load((saved / WEIGHTS_FILE).read_bytes())
    tensors["blend"] = np.zeros(7)
    data = save(tensors)
    (saved / WEIGHTS_FILE).write_bytes(data)
    info = json.loads((saved / JSON_FILE).read_text())
    info["weights"].update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    write_info(saved, info)
    with pytest.raises(ModelFileError, match=r"'blend' has shape \(7,\), expected \(2,\)"):
        load_model(saved)


# -- model.json: checksum and field checks (issue 12) ---------------------------------------
MODEL_V1 = Path(__file__).parent / "data" / "model-v1"


def _set(info: dict, dotted: str, value: object) -> None:
    """``info[a][b][0]... = value`` for ``dotted`` = ``"a.b.0"``."""
    *path, last = dotted.split(".")
    target: object = info
    for key in path:
        target = target[int(key)] if isinstance(target, list) else target[key]  # type: ignore
    if isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value  # type: ignore[index]


@pytest.mark.parametrize("edit", [
    {"cold": "midpoint", "params.cold": "midpoint"},  # a valid policy, both places agreeing
    {"global_mean": 3.0},
    {"rating_scale": [0.0, 10.0]},
    {"members.0.scale": 2.0},
    {"dataset": "ml-100k"},
])
def test_edited_model_json_refused_by_its_checksum(saved: Path, edit: dict) -> None:
    info = json.loads((saved / JSON_FILE).read_text())
    for dotted, value in edit.items():
        _set(info, dotted, value)
    (saved / JSON_FILE).write_text(json.dumps(info, indent=2))  # still valid JSON
    for read in (load_model, read_model_info):
        with pytest.raises(ModelFileError) as caught:
            read(saved)
        message = str(caught.value)
        assert "checksum mismatch" in message and str(saved / JSON_FILE) in message
        assert "\n" not in message


def test_reformatted_model_json_still_loads(saved: Path) -> None:
    info = json.loads((saved / JSON_FILE).read_text())
    (saved / JSON_FILE).write_text(json.dumps(info, indent=None))  # same content, one line
    load_model(saved)


def test_model_json_without_its_checksum_refused(saved: Path) -> None:
    info = json.loads((saved / JSON_FILE).read_text())
    del info["checksum"]
    (saved / JSON_FILE).write_text(json.dumps(info))
    with pytest.raises(ModelFileError, match="field 'checksum' is missing"):
        load_model(saved)


@pytest.mark.parametrize("edit", [
    {"params.hidden": 8}, {"params.activation": "relu"},
    {"params.variant": "user", "params.ensemble": 3, "variant": "user"},
    {"params.baseline": "none", "baseline": "none"},
])
def test_version_1_params_set_after_the_fit_load_as_fitted(tmp_path: Path, edit: dict) -> None:
    """Version 1 saved get_params() at save time: set_params after the fit changed them
    (the folder was then refused as inconsistent). The networks' specs say how it was fitted,
    and the model loads with those settings and predicts as before."""
    import shutil

    folder = Path(shutil.copytree(MODEL_V1, tmp_path / "v1"))
    info = json.loads((folder / JSON_FILE).read_text())
    for dotted, value in edit.items():
        _set(info, dotted, value)
    (folder / JSON_FILE).write_text(json.dumps(info, indent=2))
    expected = json.loads((MODEL_V1.parent / "model-v1-predictions.json").read_text())
    model = AutoRec.load(folder)
    np.testing.assert_allclose(model.predict(expected["users"], expected["items"]),
                               expected["predictions"], rtol=0, atol=1e-6)
    params = model.get_params()
    assert (params["variant"], params["ensemble"], params["hidden"], params["activation"],
            params["baseline"]) == ("both", 1, 4, "sigmoid", "biases")
    assert params["ranking"] == "none"  # no ranking model before version 3 (not "auto")


@pytest.mark.parametrize(("edit", "needle"), [
    ({"global_mean": float("nan")}, "'global_mean' holds nan"),
    ({"global_mean": float("inf")}, "'global_mean' holds inf"),
    ({"members.0.scale": float("-inf")}, "'members[0].scale' holds -inf"),
    ({"history.0.train_loss": float("nan")}, "'history[0].train_loss' holds nan"),
    ({"global_mean": 9.0}, "'global_mean' is 9, outside the rating scale"),
    ({"global_mean": "3.5"}, "'global_mean' must be a number, got '3.5'"),
    ({"rating_scale": [5.0, 1.0]}, "'rating_scale' is reversed: low 5 > high 1"),
    ({"rating_scale": [1.0]}, "'rating_scale' must hold 2 values"),
    ({"rating_scale": [1.0, None]}, "'rating_scale[1]' must be a number, got null"),
    ({"members.0.scale": 0}, "'members[0].scale' must be a number > 0, got 0"),
    ({"members.0.scale": -1.5}, "'members[0].scale' must be a number > 0"),
    ({"cold": "warm"}, "'cold' must be one of baseline, mean, midpoint, got 'warm'"),
    ({"cold": "warm", "params.cold": "warm"}, "'params' is invalid: cold"),
    ({"cold": "midpoint"}, "'cold' is 'midpoint' but params.cold is 'baseline'"),
    ({"baseline": "median", "params.baseline": "median"}, "'params' is invalid: baseline"),
    ({"baseline": "none", "params.baseline": "none"}, "'members[0].spec.residual'"),
    ({"variant": "user", "params.variant": "user"}, "'members[0].spec.variant' is 'item'"),
    ({"params.hidden": -3}, "'params' is invalid: hidden"),
    # loaded, and GET /model reported the 51
    ({"params.hidden": 51}, "'members[0].spec.hidden' is 8 but params.hidden is 51"),
    ({"params.activation": "elu"}, "'members[0].spec.activation' is 'sigmoid' but params."),
    ({"params.device": 3}, "'params.device' must be a string, got 3"),
    ({"params.ensemble": 2}, "'members' holds 1 networks; params"),
    ({"members": []}, "'members' holds 0 networks"),
    ({"n_users": "40"}, "'n_users' must be an integer, got '40'"),
    ({"n_users": True}, "'n_users' must be an integer, got true"),
    ({"n_users": 0}, "'n_users' must be an integer >= 1"),
    ({"n_users": 41}, "'members[0].n_inputs' is 40, the id maps give 41"),
    ({"members.0.inputs_shape": [30, 41]}, "'members[0].inputs_shape' is [30, 41]"),
    ({"members.0.decoder_bias": True}, "'members[0].decoder_bias' disagrees"),
    ({"members.0.best_epoch": 1.5}, "'members[0].best_epoch' must be an integer, got 1.5"),
    ({"members.0.best_epoch": -1}, "'members[0].best_epoch' must be an integer >= 0"),
    ({"members.0.spec.hidden": 0}, "'members[0].spec.hidden' must be an integer >= 1"),
    ({"members.0.spec.activation": "gelu2"}, "'members[0].spec.activation' must be one of"),
    ({"members.0.spec.dropout": 1.0}, "'members[0].spec.dropout' must be in [0, 1)"),
    ({"bias.reg_user": -1.0}, "'bias.reg_user' must be a number >= 0"),
    ({"bias": {"mean": 3.0}}, "'bias.reg_user' is missing"),
    ({"l2": -1.0}, "'l2' must be a number >= 0"),
    ({"validation_rmse": "low"}, "'validation_rmse' must be a number, got 'low'"),
    ({"users.storage": "pickle"}, "'users.storage' must be one of int64, text"),
    ({"users.tensor": "items.ids"}, "'users.tensor' must be one of users.ids"),
    ({"weights.sha256": "abc"}, "'weights.sha256' must be 64 hexadecimal digits"),
    ({"weights.bytes": -1}, "'weights.bytes' must be an integer >= 0"),
    ({"weights.file": "../other"}, "'weights.file' must be one of model.safetensors"),
    ({"dataset": 5}, "'dataset' must be a string, got 5"),
    ({"history": "none"}, "'history' must be a list, got 'none'"),
    ({"versions": ["1"]}, "'versions' must be an object, got a list"),
    ({"created": None}, "'created' must be a string, got null"),
    ({"evil": 1}, "'evil' is not a field of a version-3 model.json"),
    # loaded, then every list ended in an IndexError traceback (nothing left to blend)
    ({"ranking.model.weights": [0.0, 0.0]}, "'ranking.model.weights' needs a weight above 0"),
    ({"ranking.model.weights": [1e308, 0.1]}, "'ranking.model.weights' sum to 1e+308, not 1"),
    ({"members.0.spec.evil": 1}, "'members[0].spec.evil' is not a field"),
    # loaded without a word: only the top level, members and specs refused other keys
    ({"bias.evil": 1}, "'bias.evil' is not a field of 'bias'"),
    ({"ranking.family": "autorec"}, "'ranking.family' must be"),
    ({"params.ranking": "none"}, "'ranking' holds a ranking model, but params.ranking"),
    ({"params.device": "bogus"}, "'params.device' must be 'cpu', 'cuda' or 'cuda:N'"),
    ({"users.evil": 1}, "'users.evil' is not a field of 'users'"),
    ({"weights.evil": 1}, "'weights.evil' is not a field of 'weights'"),
    # an integer past float64's range: math.isfinite's OverflowError traceback (exit 1)
    ({"global_mean": 10**400}, "'global_mean' must be a finite number, got an integer of 401"),
    ({"members.0.scale": -10**400}, "'members[0].scale' must be a finite number"),
    ({"params.lr": 10**400}, "'params' is invalid: lr must be a positive number"),
    # loaded without a word (EASE did not check its settings), or named model.safetensors
    ({"ranking.model.components.0.params.lam": "x"},
     "'ranking.model.components[0].params' is invalid: lam must be a number > 0, got 'x'"),
    ({"ranking.model.components.0.params.max_items": -3},
     "'ranking.model.components[0].params' is invalid: max_items must be an integer >= 1"),
    ({"ranking.model.components.0.params.evil": 1},
     "'ranking.model.components[0].params' is invalid: EASE.__init__() got an unexpected keyword"),
])
def test_bad_model_json_fields_refused(saved: Path, edit: dict, needle: str) -> None:
    info = json.loads((saved / JSON_FILE).read_text())
    for dotted, value in edit.items():
        _set(info, dotted, value)
    write_info(saved, info)
    for read in (load_model, read_model_info):
        with pytest.raises(ModelFileError) as caught:
            read(saved)
        message = str(caught.value)
        assert message.startswith(f"{saved / JSON_FILE}: field '"), message
        assert needle in message and "\n" not in message


def test_the_spec_table_checks_every_network_spec_field() -> None:
    """model.json's table of a network's ``spec`` (``dense_batches`` optional) and
    :class:`NetworkSpec` name the same fields."""
    from dataclasses import fields

    from autorec.member import NetworkSpec
    from autorec.persist.fields import _SPEC

    assert [*_SPEC, "dense_batches"] == [field.name for field in fields(NetworkSpec)]


@pytest.mark.parametrize("missing", ["global_mean", "cold", "members", "weights", "n_items"])
def test_missing_model_json_field_named(saved: Path, missing: str) -> None:
    info = json.loads((saved / JSON_FILE).read_text())
    del info[missing]
    write_info(saved, info)
    with pytest.raises(ModelFileError, match=f"field '{missing}' is missing"):
        load_model(saved)


def test_text_id_count_checked(models: dict[str, AutoRec], tmp_path: Path) -> None:
    path = save_model(models["user-text-ids"], tmp_path / "m")
    info = json.loads((path / JSON_FILE).read_text())
    info["users"]["ids"].append("extra")
    write_info(path, info)
    with pytest.raises(ModelFileError, match=r"field 'users.ids' must hold \d+ values"):
        load_model(path)


@pytest.mark.parametrize(("value", "needle"), [
    ("[" * 100_000 + "]" * 100_000, "values nested too deeply to read"),  # RecursionError
    ("4" * 5_000, "an integer of over 4,300 digits"),  # Python's ValueError, no file named
])
def test_json_python_cannot_read_is_named_as_such(saved: Path, value: str, needle: str) -> None:
    text = (saved / JSON_FILE).read_text()
    (saved / JSON_FILE).write_text(text.replace('"cold": ', f'"deep": {value}, "cold": ', 1))
    with pytest.raises(ModelFileError) as caught:
        load_model(saved)
    assert str(caught.value) == (f"{saved / JSON_FILE}: not valid JSON ({needle}); truncated "
                                 "or not an autorec model")


def test_duplicate_keys_in_model_json_refused(saved: Path) -> None:
    text = (saved / JSON_FILE).read_text()
    (saved / JSON_FILE).write_text(text.replace('"cold": ', '"cold": "midpoint", "cold": ', 1))
    with pytest.raises(ModelFileError, match="key 'cold' appears twice"):
        load_model(saved)


def test_non_finite_arrays_refused(saved: Path) -> None:
    from safetensors.numpy import load, save

    tensors = load((saved / WEIGHTS_FILE).read_bytes())
    tensors["biases.user"][3] = np.nan
    data = save(tensors, metadata={"format": "autorec-model/2"})
    (saved / WEIGHTS_FILE).write_bytes(data)
    info = json.loads((saved / JSON_FILE).read_text())
    info["weights"].update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    write_info(saved, info)
    with pytest.raises(ModelFileError, match=r"'biases\.user' holds NaN or infinite values"):
        load_model(saved)


def test_model_saved_before_model_json_had_a_checksum_loads(tmp_path: Path) -> None:
    """tests/data/model-v1 was written by autorec before format version 2 (no checksum of
    model.json): it loads, predicts what it predicted then (no ranking model: its lists are by
    predicted rating), and saves again as version 3."""
    assert read_model_info(MODEL_V1)["format_version"] == 1
    expected = json.loads((MODEL_V1.parent / "model-v1-predictions.json").read_text())
    model = load_model(MODEL_V1)
    np.testing.assert_allclose(model.predict(expected["users"], expected["items"]),
                               expected["predictions"], rtol=0, atol=1e-6)
    again = save_model(model, tmp_path / "again")
    assert model.ranking is None and read_model_info(again)["ranking"] is None
    assert read_model_info(again)["format_version"] == 3
    assert (again / WEIGHTS_FILE).read_bytes() != b""


@pytest.mark.parametrize(("edit", "needle"), [
    ({"global_mean": float("nan")}, "'global_mean' holds nan"),
    ({"rating_scale": [5.0, 1.0]}, "'rating_scale' is reversed"),
    ({"cold": "warm", "params.cold": "warm"}, "'params' is invalid: cold"),
    ({"members.1.scale": 0.0}, "'members[1].scale' must be a number > 0"),
    ({"checksum": {"sha256": "0" * 64}}, "'checksum' is not a field of a version-1"),
])
def test_version_1_fields_checked_without_a_checksum(tmp_path: Path, edit: dict,
                                                     needle: str) -> None:
    import shutil

    folder = Path(shutil.copytree(MODEL_V1, tmp_path / "v1"))
    info = json.loads((folder / JSON_FILE).read_text())
    for dotted, value in edit.items():
        _set(info, dotted, value)
    (folder / JSON_FILE).write_text(json.dumps(info, indent=2))
    with pytest.raises(ModelFileError) as caught:
        load_model(folder)
    assert needle in str(caught.value) and str(folder / JSON_FILE) in str(caught.value)


def test_cli_names_the_bad_field(saved: Path, tmp_path: Path, capsys) -> None:
    from autorec.cli.main import main

    info = json.loads((saved / JSON_FILE).read_text())
    info["rating_scale"] = [5.0, 1.0]
    write_info(saved, info)
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("user_id,item_id\n1,2\n")
    code = main(["predict", "--model", str(saved), "--input", str(pairs), "--output",
                 str(tmp_path / "out.csv")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "'rating_scale' is reversed" in err and str(saved) in err
    assert not (tmp_path / "out.csv").exists()


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
    # inside a model folder: was written, and that folder could not be saved to again
    for inside in (tmp_path / "empty" / "sub", tmp_path / "empty" / "a" / "b"):
        with pytest.raises(ModelFileError, match="is inside the model folder"):
            check_save_path(inside)
    assert sorted(p.name for p in (tmp_path / "empty").iterdir()) == [JSON_FILE, WEIGHTS_FILE]


def test_interrupted_save_keeps_the_old_model(models: dict[str, AutoRec], saved: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import autorec.persist.folder as persist  # where the model files are written

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
    import autorec.persist.folder as persist  # where the model files are written

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
import os, autorec, autorec.persist as persist, autorec.persist.folder as folder
model = autorec.load_model({str(source)!r})
real = folder._write_file
def die(path, content):
    real(path, content[:len(content) // 2])
    os._exit(9)
folder._write_file = die
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
