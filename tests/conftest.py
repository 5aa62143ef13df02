"""Shared fixtures: the tiny synthetic corpus is made once per test session."""

import pytest


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """Folder of a ``--size tiny`` synthetic corpus, made with two workers."""
    from hieradist_lobes.data.synth import prepare_synth

    folder = tmp_path_factory.mktemp("synth_tiny")
    prepare_synth(str(folder), size="tiny", seed=1234, num_workers=2, progress=False)
    return folder
