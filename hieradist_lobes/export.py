"""Self-contained model folders that ``EncoderDecoderASR.from_hparams`` (joint
CTC/attention models) or ``hieradist_lobes.inference.CIFASR.from_hparams``
(CIF models) loads.

A folder holds:

``hyperparams.yaml``  the model definition the training used, with every
                      hyperparameter resolved, plus the inference interface
                      (``hparams/models/*_inference.yaml``: ``tokenizer``,
                      ``modules``, ``pretrainer``, ...)
``model.ckpt``        the trained parameters (best validation checkpoint)
``normalize.ckpt``    the feature normaliser's statistics
``tokenizer.ckpt``    the label vocabulary (:class:`~hieradist_lobes.tokens.LabelTokenizer`)
``info.json``         name, error rates, parameter count, the SHA-256 of every file above
``README.md``, ``config.json``, ``example.wav``
                      what a model on a hub carries (:mod:`hieradist_lobes.model_card`)

Loaded with another class than its own, a folder stops at once naming its class
(:func:`check_loading_class`, which its ``hyperparams.yaml`` calls).

Example
-------
>>> nonfinite_tensors({"w": torch.zeros(1)})
[]
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Dict, List, Mapping, Optional, Sequence

import torch
from speechbrain.utils.parameter_transfer import Pretrainer

from hieradist_lobes.errors import ReportedError
from hieradist_lobes.files import file_sha256, staged_folder
from hieradist_lobes.hparams import LoadedHparams, resolved_subtree
from hieradist_lobes.model_card import write_example, write_hub_files
from hieradist_lobes.tokens import LabelTokenizer

MODEL_FILES = ("model.ckpt", "normalize.ckpt")


class ModelFolderError(ReportedError, ValueError):
    """A model folder (or the checkpoint to export) is missing a file, has a
    corrupt one, or holds non-finite weights."""


def nonfinite_tensors(state: Dict[str, object]) -> List[str]:
    """Keys of a state dict whose floating-point tensors hold NaN or inf
    (a checkpoint's, or a live model's ``state_dict()``).

    Example
    -------
    >>> nonfinite_tensors({"w": torch.ones(2), "b": torch.tensor([1.0, float("inf")]), "n": torch.tensor(3)})
    ['b']
    """
    return [key for key, value in state.items()
            if torch.is_tensor(value) and value.is_floating_point() and not bool(torch.isfinite(value).all())]


def check_finite_checkpoint(path: str) -> Dict[str, object]:
    """Load a checkpoint file's state dict, refusing non-finite weights.

    Raises
    ------
    ModelFolderError
        If the file cannot be read or holds NaN or inf weights.
    """
    try:
        state = torch.load(path, map_location="cpu")
    except Exception as error:  # torch raises several types for a bad file
        raise ModelFolderError(f"cannot read the checkpoint {path}: {error}") from error
    bad = nonfinite_tensors(state) if isinstance(state, dict) else []
    if bad:
        raise ModelFolderError(f"{path} holds non-finite weights ({len(bad)} tensors, e.g. {', '.join(bad[:3])}): "
                               "the training diverged; retrain with a lower learning rate")
    return state


def export_model_folder(
    loaded: LoadedHparams,
    checkpoint_dir: str,
    tokenizer: LabelTokenizer,
    folder: str,
    info: Dict[str, object],
    inference_hparams: str,
    model_key: str = "model",
    example: Optional[Mapping[str, str]] = None,
    data_root: Optional[str] = None,
) -> str:
    """Write a self-contained model folder from a training checkpoint.

    Arguments
    ---------
    loaded : LoadedHparams
        The training hyperparameters (their ``model`` subtree is written out).
    checkpoint_dir : str
        The checkpoint to export (holding ``model.ckpt`` and ``normalize.ckpt``).
    tokenizer : LabelTokenizer
        The label vocabulary.
    folder : str
        Destination; replaced atomically if it exists.
    info : dict
        Extra facts for ``info.json`` (name, error rates, ...).
    inference_hparams : str
        The inference interface appended to the model definition:
        ``hparams/models/crdnn_ctc_attention_inference.yaml``
        (``EncoderDecoderASR``) or ``hparams/models/cif_conformer_inference.yaml``
        (:class:`hieradist_lobes.inference.CIFASR`).
    model_key : str
        The top-level key of the model definition.
    example : mapping, optional
        The manifest row of the test recording the folder carries as ``example.wav``
        (``$data_root`` in its path stands for ``data_root``).

    Returns
    -------
    str
        ``folder``.
    """
    for name in MODEL_FILES:
        if not os.path.isfile(os.path.join(checkpoint_dir, name)):
            raise FileNotFoundError(f"checkpoint {checkpoint_dir} has no {name}")
    with open(inference_hparams, encoding="utf-8") as handle:
        interface = handle.read()
    model_yaml = resolved_subtree(loaded, model_key)
    with staged_folder(folder) as staging:
        with open(os.path.join(staging, "hyperparams.yaml"), "w", encoding="utf-8") as handle:
            handle.write(f"# Model exported from {loaded.files[0]} (base {loaded.base_file}).\n")
            handle.write(model_yaml)
            handle.write(f"\nlabel_unit: {tokenizer.unit}\n")
            handle.write(interface)
        for name in MODEL_FILES:
            shutil.copyfile(os.path.join(checkpoint_dir, name), os.path.join(staging, name))
        tokenizer.save(os.path.join(staging, "tokenizer.ckpt"))
        labels_model = getattr(tokenizer, "sentencepiece_model", None)
        if labels_model:  # the folder's text becomes labels as in training (save_teachers, a user's own encoding)
            from hieradist_lobes.subwords import FOLDER_MODEL

            shutil.copyfile(labels_model, os.path.join(staging, FOLDER_MODEL))
        sample_rate = int(loaded.hparams["sample_rate"])
        example_text = None
        if example is not None:
            example_text = write_example(example, staging, sample_rate, str(loaded.hparams.get("unit", "wrd")),
                                         data_root)
        details = _write_info(staging, tokenizer, {**info, "sample_rate": sample_rate},
                              os.path.basename(inference_hparams))
        write_hub_files(staging, details, os.path.basename(inference_hparams), example_text)
    return folder


def export_best_checkpoint(loaded: LoadedHparams, tokenizer: LabelTokenizer, result: Dict[str, object],
                           train_manifest: str, inference_hparams: str, test_manifest: Optional[str] = None,
                           **facts: object) -> None:
    """A recipe's last step: on the main process, the best checkpoint
    (lowest validation ``error_rate``), or with ``average_checkpoints: N > 1``
    the mean weights of the last N (what was scored), into the YAML's
    ``model_dir``, with its scores (``result``), the median training duration
    (``CIFASR`` cuts long recordings to about twice it), the training data's
    size and ``facts`` in ``info.json``; a short recording of ``test_manifest``
    as its ``example.wav``."""
    from speechbrain.utils.distributed import if_main_process

    from hieradist_lobes.averaging import average_count, averaged_checkpoint, averaged_folder, averaged_sources
    from hieradist_lobes.data.manifest import data_root, median_duration, read_manifest
    from hieradist_lobes.model_card import choose_example, training_data

    hparams = loaded.hparams
    if if_main_process():
        count = average_count(hparams)
        checkpointer = hparams["checkpointer"]
        if count > 1:
            source = averaged_checkpoint(checkpointer, count, averaged_folder(hparams["output_folder"]))
            count = len(averaged_sources(source))  # what was averaged: fewer when fewer checkpoints exist
        else:
            source = checkpointer.find_checkpoint(min_key="error_rate").path
        info = {"name": hparams["experiment_name"], "dataset": hparams["dataset"],
                **{key: value for key, value in result.items() if key != "model_dir"},
                "averaged_checkpoints": count, "train_median_seconds": median_duration(train_manifest),
                "training_data": training_data(train_manifest), **facts}
        example = choose_example(read_manifest(test_manifest)) if test_manifest else None
        export_model_folder(loaded, source, tokenizer, hparams["model_dir"], info, str(inference_hparams),
                            example=example, data_root=data_root(hparams))
    print(f"valid error rate {result['valid_error_rate']:.2f}, test error rate {result['test_error_rate']:.2f}, "
          f"model folder {result['model_dir']}")


def _write_info(staging: str, tokenizer: LabelTokenizer, info: Dict[str, object], interface: str) -> Dict[str, object]:
    state = check_finite_checkpoint(os.path.join(staging, "model.ckpt"))
    details = {"params": int(sum(t.numel() for t in state.values() if torch.is_tensor(t)))}
    details.update(info)
    details.update({
        "checkpoint_sha256": file_sha256(os.path.join(staging, "model.ckpt")),
        "unit": tokenizer.unit,
        "labels": len(tokenizer),
        "interface": interface,
        # Checked at every load (verify_model_folder): a truncated copy fails at once, naming the file.
        "files": {name: file_sha256(os.path.join(staging, name))
                  for name in sorted(os.listdir(staging)) if name not in ("hyperparams.yaml", "info.json")},
    })
    with open(os.path.join(staging, "info.json"), "w", encoding="utf-8") as handle:
        json.dump(details, handle, indent=2)
    return details


def verify_model_folder(folder: str, files: Sequence[str] = ("model.ckpt", "normalize.ckpt", "tokenizer.ckpt")
                        ) -> None:
    """Check that a model folder has ``files`` and every file its ``info.json``
    records, each matching the SHA-256 recorded there (folders exported before
    hashes were recorded are checked for presence only).

    Raises
    ------
    ModelFolderError
        Naming the folder and the missing or corrupt file.
    """
    folder = os.path.abspath(folder)
    if not os.path.isdir(folder):
        raise ModelFolderError(f"model folder {folder} does not exist")
    recorded: Dict[str, str] = {}
    if os.path.isfile(os.path.join(folder, "info.json")):
        try:
            recorded = dict(read_info(folder).get("files", {}))
        except (ValueError, OSError) as error:
            raise ModelFolderError(f"model folder {folder}: info.json is corrupt ({error}); re-export the model") \
                from error
    for name in list(files) + sorted(set(recorded) - set(files)):  # and every other file the export recorded
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            raise ModelFolderError(f"model folder {folder} has no {name} (incomplete copy?); copy the whole "
                                   "folder again or re-export it")
        if name in recorded and file_sha256(path) != recorded[name]:
            raise ModelFolderError(f"model folder {folder}: {name} is corrupt or was replaced (its SHA-256 differs "
                                   "from the one in info.json); copy the folder again or re-export it")


def check_loading_class(expected: str) -> str:
    """Called by a model folder's ``hyperparams.yaml`` as it loads: if a SpeechBrain interface class other than
    ``expected`` (a dotted path) is loading it, stop now, naming the class to use (another class would
    load it and fail later, deep inside, e.g. ``'ModuleDict' object has no attribute 'encoder'``).

    Example
    -------
    >>> check_loading_class("hieradist_lobes.inference.CIFASR")  # not inside any from_hparams: nothing to check
    'hieradist_lobes.inference.CIFASR'
    """
    import importlib
    import inspect

    from speechbrain.inference.interfaces import Pretrained

    module, name = expected.rsplit(".", 1)
    wanted = getattr(importlib.import_module(module), name)
    frame = inspect.currentframe()
    while frame is not None:  # the nearest from_hparams(cls, ...) that is loading this YAML
        loading = frame.f_locals.get("cls")
        if inspect.isclass(loading) and issubclass(loading, Pretrained):
            if not issubclass(loading, wanted):
                raise ModelFolderError(f"this model folder is loaded with {loading.__module__}.{loading.__name__}, "
                                       f"but it is a model for {expected}: load it with "
                                       f"{name}.from_hparams(source=...) (from {module} import {name})")
            break
        frame = frame.f_back
    return expected


class CheckedPretrainer(Pretrainer):
    """SpeechBrain's Pretrainer, checking a local model folder before loading.

    SpeechBrain would link a missing file into its cache and fail later,
    naming the cache link; this checks the source folder first
    (:func:`verify_model_folder`) and names the source folder and file when
    a checkpoint cannot be loaded.
    """

    def collect_files(self, default_source=None, *args, **kwargs):
        self._source = str(default_source) if default_source is not None else None
        if self._source is not None and os.path.isdir(self._source):
            verify_model_folder(self._source, [name + ".ckpt" for name in self.loadables])
        return super().collect_files(default_source, *args, **kwargs)

    def load_collected(self):
        try:
            return super().load_collected()
        except Exception as error:  # whatever the loader raised, name the source
            source = getattr(self, "_source", None) or "the model folder"
            raise ModelFolderError(f"cannot load the model in {source}: {error}") from error


def read_info(folder: str) -> Dict[str, object]:
    """The ``info.json`` of a model folder."""
    with open(os.path.join(folder, "info.json"), encoding="utf-8") as handle:
        return json.load(handle)
