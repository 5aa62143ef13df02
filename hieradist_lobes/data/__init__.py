"""Corpora and their preparation.

Every preparation writes ``train.csv``, ``valid.csv`` and ``test.csv`` with the
columns of :data:`hieradist_lobes.data.manifest.MANIFEST_FIELDS`;
:func:`prepare_dataset` picks one by name, which is how recipes call them.

Example
-------
>>> sorted(DATASETS)
['aishell1', 'librispeech', 'synth', 'timit']
"""

from __future__ import annotations

import os
from typing import Callable, Dict, Mapping

from hieradist_lobes.data.manifest import MANIFEST_FIELDS, SPLITS  # noqa: F401


def _synth(data_folder: str, save_folder: str, **options) -> Dict[str, str]:
    from hieradist_lobes.data.synth import prepare_synth

    # The synthetic corpus is made where its manifests live.
    return prepare_synth(data_folder, **options)


def _timit(data_folder: str, save_folder: str, **options) -> Dict[str, str]:
    from hieradist_lobes.data.timit import prepare_timit

    return prepare_timit(data_folder, save_folder, **options)


def _aishell1(data_folder: str, save_folder: str, **options) -> Dict[str, str]:
    from hieradist_lobes.data.aishell import prepare_aishell1

    return prepare_aishell1(data_folder, save_folder, **options)


def _librispeech(data_folder: str, save_folder: str, **options) -> Dict[str, str]:
    from hieradist_lobes.data.librispeech import prepare_librispeech

    return prepare_librispeech(data_folder, save_folder, **options)


DATASETS: Dict[str, Callable[..., Dict[str, str]]] = {"synth": _synth, "timit": _timit, "aishell1": _aishell1,
                                                      "librispeech": _librispeech}


def prepare_dataset(dataset: str, data_folder: str, save_folder: str, **options) -> Dict[str, str]:
    """Prepare ``dataset`` and return split name -> manifest path.

    Arguments
    ---------
    dataset : str
        ``synth`` (the built-in corpus, made in ``data_folder``; options
        ``size``, ``seed``, ``num_workers``), ``timit``, ``aishell1`` or
        ``librispeech``.  (A user's own CSVs need no preparation: recipes
        take them with ``dataset: csv``.)
    data_folder : str
        Where the corpus is (or, for ``synth``, where it is made).
    save_folder : str
        Where the manifests of ``timit`` and ``aishell1`` go.
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(sorted(DATASETS))}")
    return DATASETS[dataset](data_folder, save_folder, **options)


def prepare_manifests(hparams: Mapping[str, object]) -> Dict[str, str]:
    """The manifests of a recipe YAML's dataset: a user's own CSVs
    (``dataset: csv`` with ``train_csv``, ``valid_csv``, ``test_csv``), or a
    corpus prepared once, on the main process (``synth``, ``timit``,
    ``aishell1``, ``librispeech``).  Returns split -> manifest path."""
    from speechbrain.utils.distributed import run_on_main

    from hieradist_lobes.hparams import HparamsError

    if hparams["dataset"] == "csv":
        manifests = {split: hparams.get(f"{split}_csv") for split in SPLITS}
        unset = [f"{split}_csv" for split, path in manifests.items() if not path]
        if unset:
            raise HparamsError(f"dataset: csv needs {', '.join(unset)} (paths of CSV manifests with at least "
                               f"the columns ID, duration, wav and the label column {hparams['unit']!r})")
        missing = [f"{split}_csv = {path}" for split, path in manifests.items() if not os.path.isfile(str(path))]
        if missing:
            raise HparamsError(f"manifest file(s) not found: {'; '.join(missing)}")
        return {split: os.path.abspath(str(path)) for split, path in manifests.items()}
    options = {}
    if hparams["dataset"] == "synth":
        options = {"size": hparams.get("corpus_size", "small"), "seed": hparams.get("corpus_seed", 1234)}
    if hparams["dataset"] == "librispeech" and hparams.get("librispeech_parts"):
        options = {"parts": {split: list(names) for split, names in dict(hparams["librispeech_parts"]).items()}}
    save_folder = hparams.get("manifest_folder", hparams["data_folder"])
    run_on_main(prepare_dataset, args=[hparams["dataset"], hparams["data_folder"], save_folder], kwargs=options)
    return prepare_dataset(hparams["dataset"], hparams["data_folder"], save_folder, **options)
