"""Shared fixtures: the tiny synthetic corpus (made once per test session), torchrun."""

import os
import subprocess
import sys

import pytest


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """Folder of a ``--size tiny`` synthetic corpus, made with two workers."""
    from hieradist_lobes.data.synth import prepare_synth

    folder = tmp_path_factory.mktemp("synth_tiny")
    prepare_synth(str(folder), size="tiny", seed=1234, num_workers=2, progress=False)
    return folder


@pytest.fixture(scope="session")
def torchrun():
    """Run a recipe under ``torchrun`` with 2 CPU processes (gloo); fail with its output."""

    def run(script, arguments):
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", script,
                   *arguments, "--distributed_backend=gloo"]
        completed = subprocess.run(command, capture_output=True, text=True, timeout=600,
                                   env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
        return completed

    return run
