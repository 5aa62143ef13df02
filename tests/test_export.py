"""Model folders: non-finite weights are never exported; damaged folders are named at load."""

import json
import os

import pytest
import torch

from hieradist_lobes.export import ModelFolderError, check_finite_checkpoint, nonfinite_tensors, verify_model_folder


def test_non_finite_checkpoints_are_refused(tmp_path):
    path = str(tmp_path / "model.ckpt")
    torch.save({"enc.weight": torch.ones(2, 2), "dec.bias": torch.tensor([0.0, float("nan")]),
                "steps": torch.tensor(3)}, path)
    assert nonfinite_tensors(torch.load(path)) == ["dec.bias"]
    with pytest.raises(ModelFolderError, match=f"{path} holds non-finite weights .*dec.bias.*diverged"):
        check_finite_checkpoint(path)
    open(path, "wb").write(b"garbage")
    with pytest.raises(ModelFolderError, match=f"cannot read the checkpoint {path}"):
        check_finite_checkpoint(path)


def test_verify_model_folder_checks_presence_and_recorded_hashes(tmp_path):
    from hieradist_lobes.files import file_sha256

    for name in ("model.ckpt", "normalize.ckpt", "tokenizer.ckpt"):
        (tmp_path / name).write_bytes(name.encode())
    verify_model_folder(str(tmp_path))  # no info.json: presence only
    (tmp_path / "info.json").write_text(json.dumps({"files": {"model.ckpt": file_sha256(str(tmp_path / "model.ckpt"))}}))
    verify_model_folder(str(tmp_path))
    (tmp_path / "model.ckpt").write_bytes(b"other")
    with pytest.raises(ModelFolderError, match=f"model folder {tmp_path}: model.ckpt is corrupt or was replaced"):
        verify_model_folder(str(tmp_path))
    os.remove(tmp_path / "tokenizer.ckpt")
    with pytest.raises(ModelFolderError, match=f"model folder {tmp_path} has no tokenizer.ckpt"):
        verify_model_folder(str(tmp_path), ["tokenizer.ckpt"])
    with pytest.raises(ModelFolderError, match="does not exist"):
        verify_model_folder(str(tmp_path / "absent"))

