"""One checksum for model folders, teacher stores and preparation records; writes that fail."""

import errno
import os

import pytest

from hieradist_lobes.files import WriteError, staged_file, staged_folder, write_json


def test_file_sha256_of_known_content(tmp_path):
    from hieradist_lobes.files import file_sha256

    (tmp_path / "x").write_bytes(b"")
    assert file_sha256(str(tmp_path / "x")) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


FULL = OSError(errno.ENOSPC, "No space left on device")


def test_a_file_whose_write_fails_is_named_and_leaves_the_earlier_one(tmp_path):
    path = tmp_path / "summary.json"
    write_json(str(path), {"run": 1})
    with pytest.raises(WriteError, match=rf"writing {path} failed: the disk is full \(No space left on device\)\. "
                                         r"Nothing half-written was left \(an earlier file there is as it was\): "
                                         r"free some space"):
        with staged_file(str(path)) as temporary:
            open(temporary, "w").write('{"run": ')
            raise FULL
    assert path.read_text() == '{"run": 1}' and os.listdir(tmp_path) == ["summary.json"]


def test_a_manifest_whose_write_fails_leaves_no_temporary_file(tmp_path, monkeypatch):
    import csv

    from hieradist_lobes.data.manifest import write_manifest

    def failing_writerow(self, row):
        raise FULL

    monkeypatch.setattr(csv.DictWriter, "writerow", failing_writerow)
    with pytest.raises(WriteError, match="train.csv failed: the disk is full"):
        write_manifest(str(tmp_path / "train.csv"), [{"ID": "u1", "duration": 1.0, "wav": "a.wav"}],
                       ["ID", "duration", "wav"])
    assert os.listdir(tmp_path) == []


def test_a_folder_whose_write_fails_is_removed_and_the_earlier_one_kept(tmp_path):
    folder = tmp_path / "model"
    with staged_folder(str(folder)) as staging:
        open(os.path.join(staging, "model.ckpt"), "w").write("old")
    with pytest.raises(WriteError, match=r"model failed: the disk is full .*\(the folder there before is untouched\)"):
        with staged_folder(str(folder)) as staging:
            open(os.path.join(staging, "model.ckpt"), "w").write("new")
            raise RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing "
                               "file data/0: file write failed")
    assert (folder / "model.ckpt").read_text() == "old" and os.listdir(tmp_path) == ["model"]
    with pytest.raises(RuntimeError, match="size mismatch"):  # not a write: a bug keeps its traceback
        with staged_folder(str(folder)):
            raise RuntimeError("size mismatch")
    assert os.listdir(tmp_path) == ["model"]


def test_a_checkpoint_whose_write_fails_is_removed_so_that_a_resume_does_not_trust_it(tmp_path, monkeypatch):
    import torch
    from speechbrain.utils import checkpoints

    from hieradist_lobes.averaging import keep_checkpoints

    checkpointer = checkpoints.Checkpointer(str(tmp_path), {"model": torch.nn.Linear(2, 2),
                                                            "other": torch.nn.Linear(2, 2)})
    keep_checkpoints(checkpointer, {"error_rate": 5.0}, keep_last=2)
    first = checkpointer.find_checkpoint()
    real_save = torch.save
    calls = []

    def save_then_fail(obj, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_then_fail)
    with pytest.raises(WriteError, match=r"CKPT.* failed: the disk is full .*the earlier checkpoints are kept"):
        keep_checkpoints(checkpointer, {"error_rate": 4.0}, keep_last=2)
    assert len(calls) == 2
    assert [c.path for c in checkpointer.list_checkpoints()] == [first.path]
