import pytest

from hieradist_lobes.data import prepare_dataset
from hieradist_lobes.data.manifest import read_manifest


def test_dispatches_by_name(tmp_path):
    manifests = prepare_dataset("synth", str(tmp_path / "synth"), str(tmp_path / "unused"), size="tiny",
                                num_workers=1, progress=False)
    assert len(read_manifest(manifests["test"])) == 12


def test_unknown_dataset(tmp_path):
    with pytest.raises(ValueError, match="'wsj'.*aishell1, librispeech, synth, timit"):
        prepare_dataset("wsj", str(tmp_path), str(tmp_path))
