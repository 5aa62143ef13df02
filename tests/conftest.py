"""Shared fixtures: the tiny synthetic corpus (made once per test session),
the recipe scripts run in-process, torchrun."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECIPES = {"train_teacher": "multi_teacher_kd/train_teacher.py", "save_teachers": "multi_teacher_kd/save_teachers.py",
           "train_kd": "multi_teacher_kd/train_kd.py", "train_cif": "cif_hieradist/train.py",
           "save_plm_features": "cif_hieradist/save_plm_features.py", "train_cif_kd": "cif_hieradist/train_kd.py",
           "train_lm": "cif_hieradist/train_lm.py"}


def load_script(path):
    """A script of the repository (e.g. ``recipes/cif_hieradist/train.py``) as a module."""
    spec = importlib.util.spec_from_file_location("script_" + path.replace("/", "_")[:-3], ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def release_output_folders():
    """A recipe run in-process holds its output folder until the process ends; a later test may run
    a recipe into the same folder in another process (torchrun)."""
    yield
    from hieradist_lobes.cli import release_output_folders

    release_output_folders()


@pytest.fixture(scope="session")
def recipes():
    """Each recipe's ``main(argv)``, by a short name (``recipes.train_kd([...])``)."""
    return SimpleNamespace(**{name: load_script(f"recipes/{path}").main for name, path in RECIPES.items()})


@pytest.fixture(scope="session")
def device(request):
    """The ``--device`` of the tests marked ``device`` (a ``torch.device``)."""
    import torch

    name = request.config.getoption("--device")
    if name.startswith("cuda") and not torch.cuda.is_available():
        pytest.fail(f"--device={name} but torch sees no CUDA device")
    return torch.device(name)


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


@pytest.fixture(scope="session")
def bert(tmp_path_factory):
    """A tiny random BERT that spells :data:`tests.plm_fixtures.VOCABULARY`."""
    from tests.plm_fixtures import HIDDEN, VOCABULARY, tiny_plm_folder

    return tiny_plm_folder(str(tmp_path_factory.mktemp("bert")), VOCABULARY, hidden_size=HIDDEN,
                           max_position_embeddings=512)


@pytest.fixture(scope="session")
def extractor(bert):
    from hieradist_lobes.plm_features import PLMFeatureExtractor

    return PLMFeatureExtractor(bert)
