"""Self-contained model folders that ``EncoderDecoderASR.from_hparams`` (joint
CTC/attention models) or ``hieradist_lobes.inference.CIFASR.from_hparams``
(CIF models) loads.

A folder holds:

``hyperparams.yaml``  the model definition the training used, with every
                      hyperparameter resolved, plus the inference interface
                      (``tokenizer``, ``encoder``, ``decoder``, ``modules``,
                      ``pretrainer``)
``model.ckpt``        the trained parameters (best validation checkpoint)
``normalize.ckpt``    the feature normaliser's statistics
``tokenizer.ckpt``    the label vocabulary (:class:`~hieradist_lobes.tokens.LabelTokenizer`)
``info.json``         name, error rates, parameter count, checkpoint hash

Example
-------
>>> "pretrainer:" in INFERENCE_INTERFACE
True
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from typing import Dict, Iterator

import torch

from hieradist_lobes.hparams import LoadedHparams, resolved_subtree
from hieradist_lobes.tokens import LabelTokenizer

MODEL_FILES = ("model.ckpt", "normalize.ckpt")

INFERENCE_INTERFACE = """
# ---- Inference interface (written by hieradist_lobes.export) ----
# speechbrain.inference.ASR.EncoderDecoderASR.from_hparams(source=<this folder>)
tokenizer: !new:hieradist_lobes.tokens.LabelTokenizer
    unit: {unit}

encoder: !new:speechbrain.nnet.containers.LengthsCapableSequential
    - !ref <compute_features>
    - !ref <normalize>
    - !ref <enc>

decoder: !ref <test_search>

modules:
    encoder: !ref <encoder>
    decoder: !ref <decoder>
    compute_features: !ref <compute_features>
    normalize: !ref <normalize>
    enc: !ref <enc>
    emb: !ref <emb>
    dec: !ref <dec>
    ctc_lin: !ref <ctc_lin>
    seq_lin: !ref <seq_lin>

pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        model: !ref <asr_model>
        normalize: !ref <normalize>
        tokenizer: !ref <tokenizer>
"""

CIF_INTERFACE = """
# ---- Inference interface (written by hieradist_lobes.export) ----
# hieradist_lobes.inference.CIFASR.from_hparams(source=<this folder>)
tokenizer: !new:hieradist_lobes.tokens.LabelTokenizer
    unit: {unit}

modules:
    compute_features: !ref <compute_features>
    normalize: !ref <normalize>
    enc: !ref <enc>
    cif: !ref <cif>
    dec: !ref <dec>
    ctc_lin: !ref <ctc_lin>

pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        model: !ref <asr_model>
        normalize: !ref <normalize>
        tokenizer: !ref <tokenizer>
"""

# The YAML's ``model_interface`` chooses how the folder is loaded.
INTERFACES = {"encoder_decoder": INFERENCE_INTERFACE, "cif": CIF_INTERFACE}


def file_sha256(path: str) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_model_folder(
    loaded: LoadedHparams,
    checkpoint_dir: str,
    tokenizer: LabelTokenizer,
    folder: str,
    info: Dict[str, object],
    model_key: str = "model",
    interface: str = "encoder_decoder",
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
    model_key : str
        The top-level key of the model definition.
    interface : str
        ``encoder_decoder`` (``EncoderDecoderASR``) or ``cif``
        (:class:`hieradist_lobes.inference.CIFASR`).

    Returns
    -------
    str
        ``folder``.
    """
    if interface not in INTERFACES:
        raise ValueError(f"model_interface must be one of {', '.join(INTERFACES)}, got {interface!r}")
    for name in MODEL_FILES:
        if not os.path.isfile(os.path.join(checkpoint_dir, name)):
            raise FileNotFoundError(f"checkpoint {checkpoint_dir} has no {name}")
    model_yaml = resolved_subtree(loaded, model_key)
    with staged_folder(folder) as staging:
        _write_model_files(staging, loaded, model_yaml, checkpoint_dir, tokenizer, info, interface)
    return folder


@contextlib.contextmanager
def staged_folder(folder: str) -> Iterator[str]:
    """Write a folder under a temporary name and put it in place (replacing
    ``folder``) only when complete, so that a crash never leaves half a model.

    Example
    -------
    >>> import tempfile
    >>> target = os.path.join(tempfile.mkdtemp(), "model")
    >>> with staged_folder(target) as staging:
    ...     _ = open(os.path.join(staging, "a.txt"), "w").write("x")
    >>> os.listdir(target)
    ['a.txt']
    """
    parent = os.path.dirname(os.path.abspath(folder))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".export-", dir=parent)
    os.chmod(staging, 0o755)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    os.replace(staging, folder)


def _write_model_files(staging: str, loaded: LoadedHparams, model_yaml: str, checkpoint_dir: str,
                       tokenizer: LabelTokenizer, info: Dict[str, object], interface: str) -> None:
    with open(os.path.join(staging, "hyperparams.yaml"), "w", encoding="utf-8") as handle:
        handle.write(f"# Model exported from {loaded.files[0]} (base {loaded.base_file}).\n")
        handle.write(model_yaml)
        handle.write(INTERFACES[interface].format(unit=tokenizer.unit))
    for name in MODEL_FILES:
        shutil.copyfile(os.path.join(checkpoint_dir, name), os.path.join(staging, name))
    tokenizer.save(os.path.join(staging, "tokenizer.ckpt"))
    state = torch.load(os.path.join(staging, "model.ckpt"), map_location="cpu")
    details = {"params": int(sum(t.numel() for t in state.values() if torch.is_tensor(t)))}
    details.update(info)
    details.update({
        "checkpoint_sha256": file_sha256(os.path.join(staging, "model.ckpt")),
        "unit": tokenizer.unit,
        "labels": len(tokenizer),
        "interface": interface,
    })
    with open(os.path.join(staging, "info.json"), "w", encoding="utf-8") as handle:
        json.dump(details, handle, indent=2)


def read_info(folder: str) -> Dict[str, object]:
    """The ``info.json`` of a model folder."""
    with open(os.path.join(folder, "info.json"), encoding="utf-8") as handle:
        return json.load(handle)


def load_encoder_weights(folder: str, encoder: torch.nn.Module, prefix: str = "enc.") -> None:
    """Initialise ``encoder`` from the encoder of a trained model folder.

    Raises
    ------
    ValueError
        If the folder's encoder does not have the same shapes.
    """
    path = os.path.join(folder, "model.ckpt")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{folder} is not a model folder: no model.ckpt")
    state = torch.load(path, map_location="cpu")
    encoder_state = {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}
    try:
        encoder.load_state_dict(encoder_state)
    except RuntimeError as error:
        raise ValueError(f"the encoder of {folder} does not fit the student's encoder: {error}") from error
