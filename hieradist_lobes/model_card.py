"""What a model on a hub carries, written into every exported model folder.

* ``README.md``: the model card — the system, its training data and size,
  that run's error rates, how to load it in three lines, the licence, the
  paper to cite;
* ``config.json``: the interface and the class that loads the folder, the
  units, the sample rate, the package version;
* ``example.wav``: a short test-set recording that the card's snippet
  transcribes (mono 16-bit WAV at the model's rate), with its reference
  transcript in the card.

Example
-------
>>> interface = INTERFACES["cif_conformer_inference.yaml"]
>>> interface.class_path, interface.system
('hieradist_lobes.inference.CIFASR', 'CIF')
>>> print(loading_snippet(interface, "MODEL_DIR"))
from hieradist_lobes.inference import CIFASR
asr = CIFASR.from_hparams(source="MODEL_DIR", savedir="MODEL_DIR")
print(asr.transcribe_file("MODEL_DIR/example.wav"))
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Dict, List, Mapping, Optional

LICENCE = "apache-2.0"
EXAMPLE_FILE = "example.wav"
EXAMPLE_MAX_SECONDS = 10.0  # the shortest test utterance is taken if none is shorter


@dataclasses.dataclass(frozen=True)
class Interface:
    """How a kind of model folder is loaded, and what it is."""

    class_path: str
    system: str
    citation: str

    @property
    def module(self) -> str:
        return self.class_path.rsplit(".", 1)[0]

    @property
    def class_name(self) -> str:
        return self.class_path.rsplit(".", 1)[1]


MULTI_TEACHER_CITATION = """@inproceedings{gao2021distilling,
  title     = {Distilling Knowledge from Ensembles of Acoustic Models for Joint CTC-Attention End-to-End Speech
               Recognition},
  author    = {Gao, Yan and Parcollet, Titouan and Lane, Nicholas D.},
  booktitle = {IEEE Automatic Speech Recognition and Understanding Workshop (ASRU)},
  year      = {2021},
  note      = {arXiv:2005.09310}
}"""
HIERADIST_CITATION = """@inproceedings{han2023knowledge,
  title     = {Knowledge Transfer from Pre-trained Language Models to Cif-based Speech Recognizers via
               Hierarchical Distillation},
  author    = {Han, Minglun and Chen, Feilong and Shi, Jing and Xu, Shuang and Xu, Bo},
  booktitle = {Proc. Interspeech},
  year      = {2023},
  note      = {arXiv:2301.13003}
}"""

# By the inference interface the folder's hyperparams.yaml ends with (hparams/models/*_inference.yaml).
INTERFACES: Dict[str, Interface] = {
    "crdnn_ctc_attention_inference.yaml": Interface(
        "speechbrain.inference.ASR.EncoderDecoderASR", "joint CTC/attention (CRDNN encoder, attentional RNN decoder)",
        MULTI_TEACHER_CITATION),
    "cif_conformer_inference.yaml": Interface("hieradist_lobes.inference.CIFASR", "CIF", HIERADIST_CITATION),
}

# What the error rate counts, by label unit.
ERROR_RATE_NAMES = {"phn": "phone error rate (PER)", "wrd": "word error rate (WER)",
                    "char": "character error rate (CER)", "wordpiece": "token error rate (TER, PLM wordpieces)",
                    "sentencepiece": "token error rate (SentencePiece units)"}


def loading_snippet(interface: Interface, source: str) -> str:
    """The three lines that load a folder and transcribe its example."""
    return (f"from {interface.module} import {interface.class_name}\n"
            f'asr = {interface.class_name}.from_hparams(source="{source}", savedir="{source}")\n'
            f'print(asr.transcribe_file("{source}/{EXAMPLE_FILE}"))')


def choose_example(rows: List[Mapping[str, str]]) -> Optional[Mapping[str, str]]:
    """The first test utterance of at most :data:`EXAMPLE_MAX_SECONDS`, else the shortest.

    Example
    -------
    >>> choose_example([{"ID": "a", "duration": "12.0"}, {"ID": "b", "duration": "3.5"}])["ID"]
    'b'
    """
    if not rows:
        return None
    short = [row for row in rows if float(row["duration"]) <= EXAMPLE_MAX_SECONDS]
    return short[0] if short else min(rows, key=lambda row: float(row["duration"]))


def write_example(row: Mapping[str, str], folder: str, sample_rate: int, column: str,
                  data_root: Optional[str] = None) -> str:
    """The recording of manifest ``row`` as ``example.wav`` in ``folder`` (mono 16-bit WAV at ``sample_rate``);
    returns its reference in the model's label ``column`` (phones for a phone model)."""
    import soundfile

    from hieradist_lobes.data.pipelines import read_signal

    signal = read_signal(row["ID"], row["wav"], sample_rate, resample=True, mix_down=True, data_root=data_root)
    soundfile.write(os.path.join(folder, EXAMPLE_FILE), signal.numpy(), sample_rate, subtype="PCM_16")
    return row.get(column) or ""


def training_data(train_manifest: str) -> Dict[str, float]:
    """Utterances and hours of a training manifest."""
    from hieradist_lobes.data.manifest import read_manifest

    rows = read_manifest(train_manifest)
    return {"utterances": len(rows), "hours": round(sum(float(row["duration"]) for row in rows) / 3600, 2)}


def model_card(info: Mapping[str, object], interface: Interface, example_text: Optional[str]) -> str:
    """The folder's ``README.md`` from its ``info.json`` facts."""
    from hieradist_lobes import __version__

    name = str(info.get("name", "model"))
    unit = str(info.get("unit", ""))
    error = ERROR_RATE_NAMES.get(unit, "error rate")
    data = info.get("training_data") or {}
    what = interface.system
    if info.get("strategy"):
        what += f", a student distilled from a teacher store with the {info['strategy']} strategy"
    if info.get("distillation") and info["distillation"] != "none":
        what += f", distilled from a pre-trained LM ({info['distillation']})"
    rows = [("system", what), ("training data", f"{info.get('dataset', '?')}: {data.get('utterances', '?')} "
                                                f"utterances, {data.get('hours', '?')} h"),
            ("parameters", f"{int(info.get('params', 0)):,}"), ("output units", f"{info.get('labels')} ({unit})"),
            (f"validation {error}", f"{float(info.get('valid_error_rate', float('nan'))):.2f} %"),
            (f"test {error}", f"{float(info.get('test_error_rate', float('nan'))):.2f} %")]
    if info.get("averaged_checkpoints", 1) and int(info.get("averaged_checkpoints", 1)) > 1:
        rows.append(("weights", f"the mean of the last {info['averaged_checkpoints']} checkpoints"))
    table = "\n".join(f"| {key} | {value} |" for key, value in rows)
    example = (f"\n`{EXAMPLE_FILE}` is a test-set recording; its reference transcript is "
               f"\"{example_text}\".\n") if example_text is not None else ""
    return f"""---
license: {LICENCE}
library_name: speechbrain
tags:
- automatic-speech-recognition
- knowledge-distillation
- hieradist-lobes
---

# {name}

A speech recogniser trained with hieradist-lobes {__version__} (SpeechBrain recipes for knowledge
distillation into speech recognisers). Error rates are those of this run, on its own test set.

| | |
|---|---|
{table}

## Use

```python
{loading_snippet(interface, "MODEL_DIR")}
```

`MODEL_DIR` is this folder (it loads from wherever it is copied), with `pip install hieradist-lobes`
for its classes. Load it with `{interface.class_name}`; another class stops at once, naming this one.
{example}
## Licence

The code that trained it: Apache-2.0. The training data's own licence applies to the weights.

## Citation

```bibtex
{interface.citation}
```
"""


def write_hub_files(folder: str, info: Mapping[str, object], interface_file: str, example_text: Optional[str]) -> None:
    """``README.md`` and ``config.json`` of an exported folder (``example.wav`` is written before)."""
    from hieradist_lobes import __version__

    interface = INTERFACES[interface_file]
    config = {"interface": interface.class_name, "class": interface.class_path, "system": interface.system,
              "hyperparams": "hyperparams.yaml", "example": EXAMPLE_FILE if example_text is not None else None,
              "unit": info.get("unit"), "labels": info.get("labels"), "sample_rate": info.get("sample_rate"),
              "package": "hieradist-lobes", "version": __version__}
    with open(os.path.join(folder, "config.json"), "w", encoding="utf-8") as handle:
        json.dump(config, handle, indent=2)
    with open(os.path.join(folder, "README.md"), "w", encoding="utf-8") as handle:
        handle.write(model_card(info, interface, example_text))
