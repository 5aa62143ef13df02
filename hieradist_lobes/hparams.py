"""Loading recipe YAML: one base file per dataset and system, small overlays.

Two mechanisms keep each fact in one file:

* **Overlays**: a YAML whose first key is ``extends: <base.yaml>`` holds only
  what differs from the file it extends (e.g. ``tea1.yaml`` the teacher's
  sizes, ``train_kd.yaml`` the distillation settings of ``student.yaml``).
  HyperPyYAML has no inheritance; ten TIMIT teachers written out in full were
  why the upstream recipe was deleted.
* **Command-line overrides**, as in every SpeechBrain recipe (``--key=value``).

Precedence: base < overlays (outwards) < command line.  The base file
declares every key: an overlay or override of a key it does not declare is an
error (HyperPyYAML's ``overrides_must_match``), so a typo is never ignored.
The values users set are then checked against :func:`hparam_rules` (type and
range, e.g. ``kd_alpha`` in [0, 1], ``lr`` > 0), before any object is built,
so that a bad value is named with its key rather than failing deep inside torch.

Example
-------
>>> import os, tempfile
>>> folder = tempfile.mkdtemp()
>>> _ = open(os.path.join(folder, "base.yaml"), "w").write("layers: 2\\nlr: 0.1\\n")
>>> _ = open(os.path.join(folder, "big.yaml"), "w").write("extends: base.yaml\\nlayers: 4\\n")
>>> loaded = load_hparams(os.path.join(folder, "big.yaml"), "lr: 0.01")
>>> loaded.hparams["layers"], loaded.hparams["lr"]
(4, 0.01)
"""

from __future__ import annotations

import dataclasses
import functools
import io
import logging
import math
import numbers
import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import ruamel.yaml
from hyperpyyaml import load_hyperpyyaml, resolve_references

from hieradist_lobes.errors import ReportedError
from hieradist_lobes.files import write_text


def _not_the_torchvision_notice(record: logging.LogRecord) -> bool:
    return "torchvision is not available" not in record.getMessage()


# SpeechBrain's train_logger, imported when a YAML builds its FileTrainLogger, says on every run that
# torchvision is missing, for saving figures that no recipe here does: a line that means nothing.
logging.getLogger("speechbrain.utils.train_logger").addFilter(_not_the_torchvision_notice)


class HparamsError(ReportedError, ValueError):
    """A YAML file or overlay is missing or inconsistent, or a value is out of range."""


@dataclasses.dataclass
class LoadedHparams:
    """The loaded hyperparameters and where they came from."""

    hparams: Dict[str, Any]
    base_file: str
    overrides: str  # all overrides applied to the base file, as YAML text
    files: List[str]  # the overlay chain, top file first


class Rule:
    """The type and range a hyperparameter must have.

    Arguments
    ---------
    kind : str
        ``int``, ``number`` (int or float), ``bool`` or ``choice``.
    low, high : float, optional
        Bounds (``None``: unbounded).
    low_open, high_open : bool
        Exclude the bound itself.
    choices : tuple of str
        Allowed values of a ``choice``.
    optional : bool
        ``null`` is allowed too.
    many : bool
        A non-empty list of such values (e.g. a grid of weights).

    Example
    -------
    >>> Rule("number", 0, 1).problem(1.5)
    'must be a number in [0, 1]'
    >>> Rule("number", 0, 1).problem(0.5) is None
    True
    >>> Rule("number", 0, 1, many=True).problem([0.0, 2.0])
    'must be a list of numbers in [0, 1]'
    """

    def __init__(self, kind: str, low: Optional[float] = None, high: Optional[float] = None,
                 low_open: bool = False, high_open: bool = False, choices: Sequence[str] = (),
                 optional: bool = False, many: bool = False) -> None:
        self.kind, self.low, self.high = kind, low, high
        self.low_open, self.high_open, self.choices, self.optional = low_open, high_open, tuple(choices), optional
        self.many = many

    def describe(self) -> str:
        if self.kind == "choice":
            text = f"one of {', '.join(self.choices)}"
        elif self.kind == "bool":
            text = "True or False"
        else:
            noun = "an integer" if self.kind == "int" else "a number"
            if self.low is None and self.high is None:
                text = noun
            elif self.high is None:
                text = f"{noun} {'>' if self.low_open else '>='} {self.low:g}"
            elif self.low is None:
                text = f"{noun} {'<' if self.high_open else '<='} {self.high:g}"
            else:
                text = (f"{noun} in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}"
                        f"{')' if self.high_open else ']'}")
        if self.many:
            text = "a list of " + text.replace("an integer", "integers").replace("a number", "numbers", 1)
        return text + (" (or null)" if self.optional else "")

    def problem(self, value: Any) -> Optional[str]:
        """``None`` if ``value`` is allowed, else what it must be."""
        return None if self.allows(value) else f"must be {self.describe()}"

    def allows(self, value: Any) -> bool:
        if value is None:
            return self.optional
        if self.many:
            return (isinstance(value, (list, tuple)) and len(value) > 0
                    and all(value_item is not None and self._allows_one(value_item) for value_item in value))
        return self._allows_one(value)

    def _allows_one(self, value: Any) -> bool:
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind == "choice":
            return isinstance(value, str) and value in self.choices
        # bool is an int in Python; True is no batch size.
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
            return False
        if self.kind == "int" and not float(value).is_integer():
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or not (value > self.high or (self.high_open and value == self.high))


_UNIT = Rule("number", 0, 1)               # mixing weights, probabilities
_NONNEGATIVE = Rule("number", 0)           # loss weights
_POSITIVE = Rule("number", 0, low_open=True)
_COUNT = Rule("int", 1)                    # epochs, sizes, batch sizes
_NONNEGATIVE_INT = Rule("int", 0)
_BOOL = Rule("bool")

@functools.lru_cache(maxsize=None)
def hparam_rules() -> Dict[str, Rule]:
    """The numbers and switches users set, by key; a YAML that does not use a
    key is not affected.  Checked by :func:`load_hparams` before any object is
    built.  The choices are the code's own lists (imported here, when first
    needed, so that this low-level module imports none of them at start-up).
    """
    from hieradist_lobes.brains import CTC_KD_METHODS, DISTILLATIONS, LRD_STATES
    from hieradist_lobes.data import DATASETS
    from hieradist_lobes.data.pipelines import SORTINGS
    from hieradist_lobes.data.validation import BAD_ROWS
    from hieradist_lobes.losses import BEST_TIES, KD_NORMALISATIONS, STRATEGIES
    from hieradist_lobes.plm import MISMATCH_ACTIONS
    from hieradist_lobes.subwords import MODEL_TYPES as SENTENCEPIECE_MODEL_TYPES
    from hieradist_lobes.teacher_store import COMPRESSIONS, DTYPES

    return {
        **{key: _UNIT for key in ("ctc_weight", "kd_alpha", "ctc_weight_decode", "dropout", "dec_dropout",
                                  "cif_dropout", "decoder_dropout", "lm_dropout")},
        "label_smoothing": Rule("number", 0, 1, high_open=True),
        **{key: _NONNEGATIVE for key in ("quantity_weight", "acd_weight", "lrd_weight", "lm_weight", "weight_decay",
                                         "duration_tolerance")},
        **{key: _POSITIVE for key in ("lr", "lm_lr", "kd_temperature", "weighted_temperature", "acd_temperature",
                                      "max_grad_norm", "cif_threshold", "tail_threshold")},
        "max_duration": Rule("number", 0, low_open=True, optional=True),
        **{key: _COUNT for key in ("number_of_epochs", "batch_size", "beam_size", "store_batch_size",
                                   "store_part_size", "lm_epochs", "lm_batch_size", "acd_negatives",
                                   "output_neurons", "sample_rate", "n_mels", "n_fft", "d_model", "encoder_layers",
                                   "encoder_heads", "decoder_layers", "decoder_heads", "plm_size", "rnn_layers",
                                   "rnn_neurons", "dnn_neurons", "dec_neurons", "emb_size",
                                   "decoder_output_dim", "average_checkpoints")},
        **{key: _NONNEGATIVE_INT for key in ("num_workers", "store_top_k", "warmup_steps", "hold_steps",
                                             "decay_steps", "dnn_blocks", "grad_norm_every", "kd_ramp_updates",
                                             "feature_augmentation_start")},
        "optimizer_step_limit": Rule("int", 1, optional=True),
        "streaming_chunk_size": Rule("int", 1, optional=True),
        "streaming_left_chunks": Rule("int", 0, optional=True),
        "fbank_top_db": Rule("number", 0, low_open=True, optional=True),
        "feature_normalization": Rule("choice", choices=("sentence", "global")),
        "sentencepiece_vocab_size": Rule("int", 5),  # the four special labels and at least one piece
        "sentencepiece_character_coverage": Rule("number", 0, 1, low_open=True),
        "ctc_weight_decode_grid": Rule("number", 0, 1, optional=True, many=True),
        **{key: Rule("number", 0, 1, low_open=True) for key in ("init_lr_scale", "final_lr_scale")},
        **{key: _BOOL for key in ("skip_missing_teacher_outputs", "resample", "mix_down", "tensorboard")},
        "strategy": Rule("choice", choices=STRATEGIES),
        "best_ties": Rule("choice", choices=BEST_TIES),
        "kd_normalisation": Rule("choice", choices=KD_NORMALISATIONS),
        "lrd_state": Rule("choice", choices=LRD_STATES),
        "ctc_kd": Rule("choice", choices=CTC_KD_METHODS),
        "distillation": Rule("choice", choices=DISTILLATIONS),
        "store_dtype": Rule("choice", choices=DTYPES),
        "store_compression": Rule("choice", choices=COMPRESSIONS, optional=True),
        "train_sorting": Rule("choice", choices=SORTINGS),
        "plm_on_mismatch": Rule("choice", choices=MISMATCH_ACTIONS),
        "bad_rows": Rule("choice", choices=BAD_ROWS),
        # The CTC/attention recipes' vocabularies (hieradist_lobes.tokens.build_label_encoder);
        # the CIF recipes' labels are always the PLM's tokens.
        "label_set": Rule("choice", choices=("phones39", "from_data", "plm_tokens", "sentencepiece")),
        "sentencepiece_model_type": Rule("choice", choices=SENTENCEPIECE_MODEL_TYPES),
        # csv is no preparation: the recipes take the user's manifests as they are.
        "dataset": Rule("choice", choices=tuple(DATASETS) + ("csv",)),
    }


def check_hparams(values: Mapping[str, Any], where: str, rules: Optional[Mapping[str, Rule]] = None) -> None:
    """Check the types and ranges of the hyperparameters that have a rule.

    Every problem is reported at once, each naming the key, its value and
    what it must be.

    Raises
    ------
    HparamsError
        If any value is of the wrong type or out of range.

    Example
    -------
    >>> check_hparams({"kd_alpha": 0.5, "lr": 0.001}, "kd.yaml")
    >>> check_hparams({"kd_alpha": 1.5}, "kd.yaml")
    Traceback (most recent call last):
    ...
    hieradist_lobes.hparams.HparamsError: kd.yaml: kd_alpha = 1.5: must be a number in [0, 1]
    """
    rules = hparam_rules() if rules is None else rules
    problems = []
    for key, rule in rules.items():
        if key not in values or _tagged(values[key]):
            continue
        problem = rule.problem(values[key])
        if problem:
            problems.append(f"{key} = {values[key]!r}: {problem}")
    if problems:
        raise HparamsError(f"{where}: " + "; ".join(problems))


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
    """Follow ``extends``; return (base file, overlays and overrides as YAML text, chain).

    Raises
    ------
    HparamsError
        If a file is missing, ``extends`` loops, or an overlay or override
        sets a key the base file does not declare.
    """
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
        path = os.path.normpath(os.path.join(os.path.dirname(path), str(parent)))
    base_file, base_tree = chain[-1]

    # Overlays apply from the base outwards (the file named on the command line
    # last), then the command line; a tagged node (!new: ...) replaces as a whole.
    merged = ruamel.yaml.comments.CommentedMap()
    for overlay_path, tree in reversed(chain[:-1]):
        _check_declared(tree, base_tree, overlay_path, base_file)
        _update(merged, tree)
    command_line = _overrides_tree(overrides)
    _check_declared(command_line, base_tree, "the command line", base_file)
    _check_paths(command_line, merged, base_tree)
    _update(merged, command_line)
    return base_file, _dump(merged) if merged else "", [p for p, _ in chain]


def _check_declared(layer, base_tree, where: str, base_file: str, prefix: str = "") -> None:
    # HyperPyYAML's overrides_must_match would refuse these too (load_hparams
    # keeps it on); checked here first to name the overlay and every key at once.
    # It checks top-level keys only: a nested one (dynamic_batching.max_batch_lenght) is checked here.
    unknown = [str(key) for key in layer if key not in base_tree]
    if unknown:
        if prefix:
            raise HparamsError(f"{where} sets {', '.join(prefix + key for key in unknown)}, which "
                               f"{prefix[:-1]} does not take; it takes {', '.join(map(str, base_tree))}")
        raise HparamsError(f"{where} sets {', '.join(unknown)}, not declared in {base_file} (a typo? every key "
                           "has a declaration, with its default, in the base file)")
    for key, value in layer.items():
        declared = base_tree[key]
        name = f"{prefix}{key}"
        if _is_plain_mapping(value) and not _tagged(declared):
            allowed = nested_keys(name, declared)
            if allowed is None:
                raise HparamsError(f"{where} sets {name} to a mapping ({dict(value)}), but {name} takes "
                                   f"{_kind_of(declared)} (declared in {base_file}: {declared!r})")
            if not _is_plain_mapping(declared):
                # HyperPyYAML (here and when SpeechBrain saves hyperparams.yaml) merges a mapping into the
                # declared value, and cannot merge one into null.
                raise HparamsError(f"{where} sets {name} to a mapping, but {base_file} declares it as "
                                   f"{declared!r}: declare it as {{}} there (a mapping can only be merged into one)")
            _check_declared(value, {allowed_key: None for allowed_key in allowed}, where, base_file, name + ".")


def _check_paths(command_line, overlays, base_tree) -> None:
    # An empty path on the command line (an unset shell variable) where the YAML chain gives one: refused,
    # not read as null (a folder called "None", a raw TypeError, or an LM silently trained on other text).
    # Where the chain itself gives null, empty means unset, and the code that needs the path names it.
    for key, value in command_line.items():
        if key in PATH_KEYS and (value is None or value == "") and overlays.get(key, base_tree.get(key)) is not None:
            raise HparamsError(f"the command line sets {key} to nothing (an unset shell variable?): {key} is a "
                               "path; give one, or leave the option out for the YAML's own")


def _is_plain_mapping(node) -> bool:
    return isinstance(node, dict) and not _tagged(node)


def _kind_of(value) -> str:
    if isinstance(value, bool):
        return "True or False"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, (list, tuple)):
        return "a list"
    return "a single value"


# Keys that name a file or folder. An empty value for one (``--output_root=``, as an unset shell
# variable gives) is refused where the base declares a value; where it declares null, empty means unset.
PATH_KEYS = frozenset({
    "data_folder", "output_root", "output_folder", "save_folder", "model_dir", "train_csv", "valid_csv",
    "test_csv", "teacher_store", "store_path", "plm_path", "lm_folder", "lm_train_text", "lm_output_folder",
    "lm_dir", "manifest_folder", "manifest_check_folder", "error_rate_file", "teacher_list_file",
})


def nested_keys(key: str, declared: Any) -> Optional[Tuple[str, ...]]:
    """The keys that the mapping-valued hyperparameter ``key`` takes, or
    ``None`` where it takes no mapping: SpeechBrain's ``DynamicBatchSampler``
    arguments for ``dynamic_batching``, ``DataLoader`` arguments for
    ``*_dataloader_opts``, else the keys its declaration (``declared``) has.

    Example
    -------
    >>> "max_batch_length" in nested_keys("dynamic_batching", {})
    True
    >>> nested_keys("modules", {"model": 1}), nested_keys("lr", 0.1)
    (('model',), None)
    """
    if key == "dynamic_batching":
        from speechbrain.dataio.sampler import DynamicBatchSampler

        return _arguments(DynamicBatchSampler.__init__, ("dataset", "length_func"))  # the recipes pass these
    if key.endswith("_dataloader_opts"):
        from torch.utils.data import DataLoader

        return _arguments(DataLoader.__init__, ("dataset",)) + ("looped_nominal_epoch",)  # + SpeechBrain's own
    if _is_plain_mapping(declared):
        return tuple(str(declared_key) for declared_key in declared)
    return None


def _arguments(function, exclude: Sequence[str]) -> Tuple[str, ...]:
    import inspect

    return tuple(name for name in inspect.signature(function).parameters if name not in ("self", *exclude))


def parse_arguments(argv: Sequence[str]) -> Tuple[str, Any, str]:
    """SpeechBrain's ``parse_arguments``, with its run options typed.

    SpeechBrain's parser gives a run option whose default is ``None`` no
    type, so ``--optimizer_step_limit=100`` arrived as the string ``"100"``
    and the Brain failed comparing it with its step count; here it becomes an
    integer, or an :class:`HparamsError` naming it.  A key given twice with
    two values is an error naming both (the YAML parser stopped on it
    without naming the option); given twice alike, once.

    Example
    -------
    >>> _, run_opts, overrides = parse_arguments(["a.yaml", "--optimizer_step_limit=100", "--lr=0.1"])
    >>> run_opts["optimizer_step_limit"], overrides.strip()
    (100, 'lr: 0.1')
    """
    import speechbrain as sb

    given: Dict[str, str] = {}
    arguments = []
    for argument in argv:
        key, separator, value = argument.partition("=")
        if argument.startswith("--") and separator:
            if key in given:
                if given[key] != value:  # the YAML parser would stop on the duplicate key without naming it
                    raise HparamsError(f"the command line sets {key} twice ({given[key]!r} and {value!r}): "
                                       "give it once")
                continue
            given[key] = value
        arguments.append(argument)
    hparams_file, run_opts, overrides = sb.parse_arguments(arguments)
    limit = run_opts["optimizer_step_limit"]
    if isinstance(limit, str):
        try:
            value: Any = int(limit)
        except ValueError:
            value = limit
        problem = hparam_rules()["optimizer_step_limit"].problem(value)
        if problem:
            raise HparamsError(f"the command line sets optimizer_step_limit = {limit!r}: {problem}")
        run_opts = dataclasses.replace(run_opts, optimizer_step_limit=value)  # RunOptions is frozen
    return hparams_file, run_opts, overrides


AUTO = "auto"  # output_neurons: auto — the size of the vocabulary the recipe builds from the data


def _merged_yaml(base_file: str, merged: str) -> io.StringIO:
    """The base file with the overlays and overrides applied, as a stream named as the base file (its
    ``!include:`` paths stay relative to it).  Merged here rather than by HyperPyYAML's overrides, which
    would merge an overlay's ``opt_class: !name:torch.optim.Adadelta`` arguments into the base's Adam:
    a tagged node replaces the base's as a whole."""
    tree = _load_tree(base_file)
    _update(tree, _overrides_tree(merged))
    stream = io.StringIO(_dump(tree))
    stream.name = base_file
    return stream


def write_experiment_hparams(loaded: LoadedHparams, folder: str) -> None:
    """Write the run's ``hyperparams.yaml`` into ``folder``: the base file with the overlays and
    overrides merged as :func:`load_hparams` merged them, references resolved.

    In place of SpeechBrain's ``create_experiment_directory(hyperparams_to_save=...)``, whose
    HyperPyYAML overrides cannot replace a base's ``null`` with an overlay's object (as
    ``dynamic_chunk_training`` in a streaming overlay).
    """
    from speechbrain.utils.distributed import if_main_process

    if not if_main_process():  # as create_experiment_directory: one process writes the run's files
        return
    resolved = resolve_references(_merged_yaml(loaded.base_file, loaded.overrides or "")).getvalue()
    write_text(os.path.join(folder, "hyperparams.yaml"),
               f"# Generated from {os.path.abspath(loaded.files[0])} (base {loaded.base_file}).\n{resolved}")


def _resolved_values(base_file: str, merged: str):
    """The YAML chain's values with every reference resolved and no object built."""
    return _yaml().load(resolve_references(_merged_yaml(base_file, merged))) or {}


def load_hparams(hparams_file: str, overrides: Union[str, Dict[str, Any], None] = None,
                 vocabulary_size: Optional[Callable[[Mapping[str, Any]], int]] = None) -> LoadedHparams:
    """Load a recipe YAML with its overlays and overrides.

    ``output_neurons: auto`` is the vocabulary's size: ``vocabulary_size``
    (given by the training recipes) counts it from the YAML's values (its data
    and label settings) before any model is built, and the value counted is
    what the run records and exports.

    Raises
    ------
    HparamsError
        Naming the file or key that is wrong, or a value of the wrong type or
        out of range (:func:`hparam_rules`).

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "model.yaml")
    >>> _ = open(path, "w").write("labels: [a, b, c]\\noutput_neurons: auto\\n")
    >>> load_hparams(path, vocabulary_size=lambda values: len(values["labels"]) + 3).hparams["output_neurons"]
    6
    """
    base_file, merged, files = resolve_chain(hparams_file, overrides)
    resolved = _resolved_values(base_file, merged)
    if resolved.get("output_neurons") == AUTO:
        # Every other value first: counting prepares the data, which a wrong value must not reach.
        check_hparams({key: value for key, value in resolved.items() if key != "output_neurons"}, files[0])
        if vocabulary_size is None:
            raise HparamsError(f"{files[0]}: output_neurons: auto is counted by the training recipes; this command "
                               "needs the number (the trained model folder's hyperparams.yaml has it)")
        tree = _overrides_tree(merged)
        tree["output_neurons"] = int(vocabulary_size(resolved))
        merged = _dump(tree)
        resolved = _resolved_values(base_file, merged)
    # Before any object is built, so that a bad value is named, not a torch traceback.
    check_hparams(resolved, files[0])
    hparams = load_hyperpyyaml(_merged_yaml(base_file, merged))
    return LoadedHparams(hparams=hparams, base_file=base_file, overrides=merged, files=files)


def check_distillation_yaml(hparams: Mapping[str, Any], where: str, distillation: bool) -> None:
    """A distillation recipe needs a YAML naming its ``teacher_store``; a
    plain training recipe refuses one (it would silently ignore the store).

    Example
    -------
    >>> check_distillation_yaml({"teacher_store": None}, "asr.yaml", distillation=False)
    """
    store = hparams.get("teacher_store")
    if distillation and not store:
        raise HparamsError(f"{where} names no teacher_store: is it a distillation YAML? (train_kd.yaml, cif_kd.yaml)")
    if not distillation and store:
        raise HparamsError(f"{where} names a teacher_store ({store}): it is a distillation YAML; run the "
                           "system's train_kd.py with it")


def plain_value(hparams_file: str, key: str) -> Any:
    """The value a YAML chain (``extends``) gives a plain top-level ``key``
    (a number, a string, a list), read without building any object.

    Raises
    ------
    HparamsError
        If no file of the chain sets ``key``.
    """
    base_file, merged, _ = resolve_chain(hparams_file)
    for tree in (_overrides_tree(merged), _load_tree(base_file)):
        if key in tree:
            return tree[key]
    raise HparamsError(f"{hparams_file}: no file of its chain sets {key!r}")


def with_values(loaded: LoadedHparams, values: Dict[str, Any]) -> LoadedHparams:
    """``loaded`` with ``values`` added to its overrides (e.g. a decoding
    weight chosen after training, so that the exported model definition
    carries it); the loaded objects are not rebuilt."""
    tree = _overrides_tree(loaded.overrides)
    tree.update(values)
    return LoadedHparams(hparams=loaded.hparams, base_file=loaded.base_file, overrides=_dump(tree),
                         files=loaded.files)


def resolved_subtree(loaded: LoadedHparams, key: str) -> str:
    """The YAML text of the top-level ``key`` with every reference resolved.

    Used to write a model folder's ``hyperparams.yaml`` from the same
    definition the training used (e.g. ``key="model"``).
    """
    tree = _yaml().load(resolve_references(_merged_yaml(loaded.base_file, loaded.overrides)))
    if key not in tree:
        raise HparamsError(f"{loaded.base_file} has no top-level key {key!r}")
    return _dump(tree[key])
