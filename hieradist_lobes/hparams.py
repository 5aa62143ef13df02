"""Loading recipe YAML: one base file per dataset, overlays, and named variants.

Three mechanisms keep each fact in one file:

* **Overlays**: a YAML whose first key is ``extends: <base.yaml>`` holds only
  what differs from its base (e.g. ``train_kd.yaml`` adds the distillation
  settings to the dataset's ``asr.yaml``).
* **Named variants**: the base file names a variants file
  (``variants: variants.yaml``) mapping names to overrides; the key
  ``variant`` selects one, e.g. ``--variant=tea3``.  Ten teachers are ten
  short entries, not ten files.
* **Command-line overrides**, as in every SpeechBrain recipe (``--key=value``).

Precedence: base < overlays (outwards) < variant < command line.  A key set
on the command line or by a variant that no file declares is an error (a typo
would otherwise be ignored).

Example
-------
>>> import os, tempfile
>>> folder = tempfile.mkdtemp()
>>> _ = open(os.path.join(folder, "base.yaml"), "w").write(
...     "variant: null\\nvariants: variants.yaml\\nlayers: 2\\nlr: 0.1\\n")
>>> _ = open(os.path.join(folder, "variants.yaml"), "w").write("big: {layers: 4}\\n")
>>> _ = open(os.path.join(folder, "kd.yaml"), "w").write("extends: base.yaml\\nlr: 0.01\\n")
>>> loaded = load_hparams(os.path.join(folder, "kd.yaml"), "variant: big")
>>> loaded.hparams["layers"], loaded.hparams["lr"]
(4, 0.01)
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Tuple, Union

import ruamel.yaml
from hyperpyyaml import load_hyperpyyaml, resolve_references

VARIANT_KEY = "variant"
VARIANTS_FILE_KEY = "variants"


class HparamsError(ValueError):
    """A YAML file, overlay or variant is missing or inconsistent."""


@dataclass
class LoadedHparams:
    """The loaded hyperparameters and where they came from."""

    hparams: Dict[str, Any]
    base_file: str
    overrides: str  # all overrides applied to the base file, as YAML text
    files: List[str]  # the overlay chain, top file first


def _yaml() -> ruamel.yaml.YAML:
    return ruamel.yaml.YAML()  # round-trip: keeps !new:, !ref ... tags


def _load_tree(path: str):
    if not os.path.isfile(path):
        raise HparamsError(f"hyperparameter file {path} does not exist")
    with open(path, encoding="utf-8") as handle:
        tree = _yaml().load(handle)
    return tree if tree is not None else ruamel.yaml.comments.CommentedMap()


def _tagged(node) -> bool:
    tag = getattr(node, "tag", None)
    return getattr(tag, "value", None) is not None


def _update(target, source) -> None:
    """Recursive mapping update; a tagged node (``!new:``...) replaces as a whole."""
    for key, value in source.items():
        current = target.get(key)
        if isinstance(value, dict) and isinstance(current, dict) and not _tagged(value) and not _tagged(current):
            _update(current, value)
        else:
            target[key] = value


def _dump(tree) -> str:
    stream = io.StringIO()
    _yaml().dump(tree, stream)
    return stream.getvalue()


def _overrides_tree(overrides: Union[str, Dict[str, Any], None]):
    if not overrides:
        return ruamel.yaml.comments.CommentedMap()
    if isinstance(overrides, str):
        tree = _yaml().load(overrides)
        return tree if tree is not None else ruamel.yaml.comments.CommentedMap()
    tree = ruamel.yaml.comments.CommentedMap()
    tree.update(overrides)
    return tree


def resolve_chain(hparams_file: str, overrides: Union[str, Dict[str, Any], None] = None) -> Tuple[str, str, List[str]]:
    """Follow ``extends`` and the variant; return (base file, overrides text, chain)."""
    chain: List[Tuple[str, Any]] = []
    path = os.path.abspath(hparams_file)
    while True:
        if any(path == seen for seen, _ in chain):
            raise HparamsError(f"{hparams_file}: 'extends' loops back to {path}")
        tree = _load_tree(path)
        parent = tree.pop("extends", None)
        chain.append((path, tree))
        if not parent:
            break
        path = os.path.join(os.path.dirname(path), str(parent))
    base_file, base_tree = chain[-1]

    # Overlays apply from the base outwards: the file named on the command line last.
    merged = ruamel.yaml.comments.CommentedMap()
    for _, tree in reversed(chain[:-1]):
        _update(merged, tree)
    command_line = _overrides_tree(overrides)
    declared = set(base_tree) | set(merged)

    variant = next((layer[VARIANT_KEY] for layer in (command_line, merged, base_tree) if VARIANT_KEY in layer), None)
    if variant is not None:
        # The variants file is relative to the file that names it.
        declaring = next(((p, t) for p, t in chain if VARIANTS_FILE_KEY in t), None)
        if VARIANTS_FILE_KEY in command_line:
            variants_path = str(command_line[VARIANTS_FILE_KEY])
        elif declaring is not None:
            variants_path = os.path.join(os.path.dirname(declaring[0]), str(declaring[1][VARIANTS_FILE_KEY]))
        else:
            raise HparamsError(f"{hparams_file} selects {VARIANT_KEY} {variant!r} but names no {VARIANTS_FILE_KEY} file")
        variants = _load_tree(variants_path)
        if str(variant) not in variants:
            raise HparamsError(f"{VARIANT_KEY} {variant!r} is not in {variants_path}; "
                               f"known: {', '.join(map(str, variants))}")
        variant_tree = variants[str(variant)] or {}
        undeclared = [key for key in variant_tree if key not in declared]
        if undeclared:
            raise HparamsError(f"{VARIANT_KEY} {variant!r} of {variants_path} sets undeclared "
                               f"hyperparameter(s) {', '.join(map(str, undeclared))}")
        _update(merged, variant_tree)
    unknown = [key for key in command_line if key not in declared]
    if unknown:
        raise HparamsError(f"unknown hyperparameter(s) {', '.join(map(str, unknown))}: "
                           f"not declared in {hparams_file} or the files it extends")
    _update(merged, command_line)
    return base_file, _dump(merged) if merged else "", [p for p, _ in chain]


def load_hparams(hparams_file: str, overrides: Union[str, Dict[str, Any], None] = None) -> LoadedHparams:
    """Load a recipe YAML with its overlays, variant and overrides.

    Raises
    ------
    HparamsError
        Naming the file, variant or key that is wrong.
    """
    base_file, merged, files = resolve_chain(hparams_file, overrides)
    with open(base_file, encoding="utf-8") as handle:
        hparams = load_hyperpyyaml(handle, merged or None, overrides_must_match=False)
    return LoadedHparams(hparams=hparams, base_file=base_file, overrides=merged, files=files)


def resolved_subtree(loaded: LoadedHparams, key: str) -> str:
    """The YAML text of the top-level ``key`` with every reference resolved.

    Used to write a model folder's ``hyperparams.yaml`` from the same
    definition the training used (e.g. ``key="model"``).
    """
    with open(loaded.base_file, encoding="utf-8") as handle:
        resolved = resolve_references(handle, loaded.overrides or None)
    tree = _yaml().load(resolved)
    if key not in tree:
        raise HparamsError(f"{loaded.base_file} has no top-level key {key!r}")
    return _dump(tree[key])
