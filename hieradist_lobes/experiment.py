"""What the recipes share: parse, load YAML, prepare data, train, export.

``recipes/train_teacher.py`` and ``recipes/train_kd.py`` are thin wrappers
around :func:`train_asr_model` (the YAML chooses the Brain class: joint
CTC/attention or CIF, with or without distillation), ``recipes/save_teachers.py``
around :func:`save_teachers` (CTC/attention teachers' outputs, or a PLM's token
features) and ``recipes/train_lm.py`` around :func:`train_lm`.

Example
-------
>>> from hieradist_lobes.tokens import build_label_encoder
>>> check_vocabulary(build_label_encoder("phn", "phones39"), 42, "asr.yaml")
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import speechbrain as sb
from speechbrain.utils.distributed import ddp_barrier, get_rank, if_main_process, run_on_main

from hieradist_lobes.data import prepare_dataset
from hieradist_lobes.data.manifest import CORE_FIELDS, SPLITS, read_manifest
from hieradist_lobes.data.pipelines import PLM_KEYS, PLMFeatureItems, asr_dataset
from hieradist_lobes.data.validation import label_check, validated_manifest
from hieradist_lobes.export import export_model_folder, load_encoder_weights
from hieradist_lobes.hparams import HparamsError, LoadedHparams, load_hparams, resolved_subtree
from hieradist_lobes.teacher_store import TeacherStore, TeacherStoreError
from hieradist_lobes.tokens import LabelTokenizer, build_label_encoder, first_difference

logger = logging.getLogger(__name__)


def setup(argv: Sequence[str]) -> Tuple[LoadedHparams, Dict[str, object]]:
    """SpeechBrain's command line (``hparams.yaml --key=value --device=...``),
    then the YAML with its overlays and variant, and the experiment folder."""
    hparams_file, run_opts, overrides = sb.parse_arguments(list(argv))
    # Under torchrun: join the process group (SpeechBrain leaves it to the script).
    sb.utils.distributed.ddp_init_group(run_opts)
    loaded = load_hparams(hparams_file, overrides)
    sb.create_experiment_directory(
        experiment_directory=loaded.hparams["output_folder"],
        hyperparams_to_save=loaded.base_file,
        overrides=loaded.overrides or {},
    )
    return loaded, run_opts


def prepare_manifests(hparams: Dict[str, object]) -> Dict[str, str]:
    """The manifests of the YAML's dataset: a user's own CSVs (``dataset:
    csv`` with ``train_csv``, ``valid_csv``, ``test_csv``), or a corpus
    prepared once, on the main process (``synth``, ``timit``, ``aishell1``,
    ``librispeech``)."""
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
    save_folder = hparams.get("manifest_folder", hparams["data_folder"])
    run_on_main(prepare_dataset, args=[hparams["dataset"], hparams["data_folder"], save_folder], kwargs=options)
    return prepare_dataset(hparams["dataset"], hparams["data_folder"], save_folder, **options)


def checked_manifests(hparams: Dict[str, object], manifests: Dict[str, str], splits: Sequence[str],
                      tokenizer: LabelTokenizer, split_labels: Optional[Callable[[str], List[str]]] = None
                      ) -> Dict[str, str]:
    """Validate the manifests of ``splits`` before anything runs
    (:mod:`hieradist_lobes.data.validation`): every problem of a split is
    reported at once, or with ``bad_rows: drop`` the bad rows are left out
    and counted.  Returns split -> the manifest to use."""
    checked = dict(manifests)
    vocabulary_key = "|".join(tokenizer.labels()) + f"|{getattr(split_labels, 'unknown_piece', '')}"
    for split in splits:
        if split not in manifests:
            raise HparamsError(f"no {split!r} manifest; the manifests are {', '.join(manifests)}")
        checked[split] = validated_manifest(
            manifests[split], hparams["unit"], hparams["manifest_check_folder"],
            labels_ok=label_check(tokenizer, split_labels), vocabulary_key=vocabulary_key,
            bad_rows=hparams["bad_rows"], sample_rate=int(hparams["sample_rate"]),
            duration_tolerance=float(hparams["duration_tolerance"]), resample=bool(hparams["resample"]),
            mix_down=bool(hparams["mix_down"]), progress=if_main_process(), data_root=data_root(hparams),
        )
    return checked


def audio_options(hparams: Dict[str, object]) -> Dict[str, object]:
    """How the data pipeline reads audio: the model's rate, and whether to
    resample or mix down (explicit YAML choices, never silent)."""
    return {"sample_rate": int(hparams["sample_rate"]), "resample": bool(hparams["resample"]),
            "mix_down": bool(hparams["mix_down"]), "data_root": data_root(hparams)}


def data_root(hparams: Dict[str, object]) -> Optional[str]:
    """What ``$data_root`` in a user's manifest stands for: ``data_folder``."""
    folder = hparams.get("data_folder")
    return os.path.abspath(str(folder)) if folder else None


def check_vocabulary(tokenizer: LabelTokenizer, output_neurons: int, where: str) -> None:
    """The model's output size must equal the vocabulary size."""
    if len(tokenizer) != output_neurons:
        raise HparamsError(
            f"{where}: output_neurons is {output_neurons} but the label vocabulary has {len(tokenizer)} labels "
            f"({', '.join(tokenizer.labels()[:8])}, ...); set output_neurons: {len(tokenizer)}"
        )


def label_splitter(hparams: Dict[str, object]) -> Optional[Callable[[str], List[str]]]:
    """How manifest text becomes labels: split on spaces, or (``label_set:
    plm``) the pre-trained LM's tokenizer, so that ASR tokens are PLM tokens."""
    if hparams["label_set"] != "plm":
        return None
    from hieradist_lobes.plm import PLMTokenizer

    return PLMSplitter(PLMTokenizer(hparams["plm_path"]), hparams["unit"])


class PLMSplitter:
    """Manifest cell → the PLM's tokens (picklable, for DataLoader workers).

    ``unknown_piece`` is the PLM's unknown token: a transcript that has it
    is a bad row (:func:`~hieradist_lobes.data.validation.label_check`), and
    it never becomes an ASR label.
    """

    def __init__(self, tokenizer, unit: str) -> None:
        self.tokenizer, self.unit = tokenizer, unit
        self.unknown_piece = tokenizer.unk_token

    def __call__(self, value: str) -> List[str]:
        from hieradist_lobes.plm import transcript_text

        return self.tokenizer.pieces(transcript_text(value, self.unit))


def make_tokenizer(hparams: Dict[str, object], manifests: Dict[str, str],
                   split_labels: Optional[Callable[[str], List[str]]] = None) -> LabelTokenizer:
    """The label vocabulary of the YAML's ``unit`` and ``label_set``.

    ``phones39``: the fixed phone set; ``from_data``: the labels of the
    training manifest; ``plm``: the PLM tokens of the training transcripts,
    plus ``<unk>`` for pieces that only other splits have.  ``split_labels``:
    the caller's :func:`label_splitter` (made here if not given).
    """
    unit = hparams["unit"]
    label_set = hparams["label_set"]
    # Tolerant reading: the rows' problems are reported together by checked_manifests.
    rows = read_manifest(manifests["train"], CORE_FIELDS + [unit], unique_ids=False) if label_set != "phones39" else []
    if label_set == "plm":
        split = split_labels or label_splitter(hparams)
        unknown = getattr(split, "unknown_piece", None)
        sequences = [[piece for piece in split(row[unit] or "") if piece != unknown] for row in rows]
        return build_label_encoder("wordpiece", "from_data", sequences, unknown=True)
    sequences = None
    if label_set == "from_data":
        sequences = [(row[unit] or "").split() for row in rows]
    return build_label_encoder(unit, label_set, sequences)


def check_store_vocabulary(store: TeacherStore, tokenizer: LabelTokenizer) -> None:
    """Teachers and student must share the label vocabulary, index by index."""
    theirs, mine = store.metadata.labels, tokenizer.labels()
    if theirs != mine:
        first = first_difference(theirs, mine)
        raise TeacherStoreError(
            f"the teacher store {store.path} has a different label vocabulary from the student: "
            f"{len(theirs)} vs {len(mine)} labels, first difference at index {first} "
            f"({theirs[first] if first < len(theirs) else None!r} vs {mine[first] if first < len(mine) else None!r})"
        )


def train_asr_model(argv: Sequence[str], distillation: bool = False) -> Dict[str, object]:
    """Train (and distil, if the YAML names a teacher store), test, export.

    Arguments
    ---------
    argv : sequence of str
        ``hparams.yaml --key=value ...``.
    distillation : bool
        Require a ``teacher_store`` in the YAML (``train_kd.py``).

    Returns
    -------
    dict
        ``model_dir``, ``valid_error_rate``, ``test_error_rate``, ``params``.
    """
    loaded, run_opts = setup(argv)
    hparams = loaded.hparams
    manifests = prepare_manifests(hparams)
    split_labels = label_splitter(hparams)
    tokenizer = make_tokenizer(hparams, manifests, split_labels)
    check_vocabulary(tokenizer, hparams["output_neurons"], loaded.files[0])
    hparams["tokenizer"] = tokenizer
    manifests = checked_manifests(hparams, manifests, SPLITS, tokenizer, split_labels)

    store: Optional[TeacherStore] = None
    if distillation and not hparams.get("teacher_store"):
        raise HparamsError(f"{loaded.files[0]} names no teacher_store: is it a distillation YAML?")
    store_reader = {}
    if hparams.get("teacher_store"):
        store = TeacherStore(hparams["teacher_store"], splits=["train"])
        check_store_vocabulary(store, tokenizer)
        if store.metadata.kind == "plm":
            if int(hparams.get("plm_size", store.metadata.feature_dim)) != store.metadata.feature_dim:
                raise HparamsError(
                    f"{loaded.files[0]}: plm_size is {hparams['plm_size']} but the features in {store.path} have "
                    f"{store.metadata.feature_dim} dimensions; set plm_size: {store.metadata.feature_dim}")
            store_reader = {"teacher_items": PLMFeatureItems(store), "teacher_keys": PLM_KEYS}
    unit = hparams["unit"]
    common = {"max_duration": hparams.get("max_duration"), "split_labels": split_labels,
              "audio": audio_options(hparams)}
    train = asr_dataset(manifests["train"], tokenizer, unit, hparams.get("train_sorting", "random"),
                        teacher_store=store,
                        skip_missing_teacher_outputs=bool(hparams.get("skip_missing_teacher_outputs", False)),
                        **store_reader, **common)
    valid = asr_dataset(manifests["valid"], tokenizer, unit, "ascending", **common)
    test = asr_dataset(manifests["test"], tokenizer, unit, "ascending", split_labels=split_labels,
                       audio=common["audio"])

    if hparams.get("init_encoder_from"):
        load_encoder_weights(hparams["init_encoder_from"], hparams["modules"]["enc"])

    brain = hparams["brain_class"](
        modules=hparams["modules"], opt_class=hparams["opt_class"], hparams=hparams, run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    train_loader_options = dict(hparams["train_dataloader_opts"])
    if hparams.get("train_sorting", "random") != "random":
        # A sorted order is the point of sorting: do not shuffle it away.
        train_loader_options["shuffle"] = False
    brain.fit(hparams["epoch_counter"], train, valid, train_loader_kwargs=train_loader_options,
              valid_loader_kwargs=hparams["valid_dataloader_opts"])
    # The selected checkpoint is scored on valid and test with the same
    # (beam search) decoding, so that the two numbers compare; test last, so
    # that error_rate_file holds the test details.
    brain.evaluate(valid, min_key="error_rate", test_loader_kwargs=hparams["test_dataloader_opts"])
    valid_error_rate = float(brain.test_stats["error_rate"])
    brain.evaluate(test, min_key="error_rate", test_loader_kwargs=hparams["test_dataloader_opts"])

    best = hparams["checkpointer"].find_checkpoint(min_key="error_rate")
    result = {
        "model_dir": os.path.abspath(hparams["model_dir"]),
        "valid_error_rate": valid_error_rate,
        "test_error_rate": float(brain.test_stats["error_rate"]),
    }
    result["params"] = sum(p.numel() for p in hparams["model"]["asr_model"].parameters())
    if if_main_process():
        info = {"name": str(hparams.get("experiment_name") or hparams.get("variant") or "model"),
                "dataset": hparams["dataset"], **{k: v for k, v in result.items() if k != "model_dir"},
                # How long the training utterances were: inference cuts long files to a similar length.
                "train_median_seconds": median_duration(manifests["train"])}
        if hparams.get("distillation") and hparams.get("teacher_store"):
            info["distillation"] = hparams["distillation"]
        export_model_folder(loaded, best.path, tokenizer, hparams["model_dir"], info,
                            interface=hparams.get("model_interface", "encoder_decoder"))
        logger.info("model folder: %s", hparams["model_dir"])
    return result


def median_duration(manifest: str) -> float:
    """Median utterance duration (seconds) of a manifest."""
    durations = sorted(float(row["duration"]) for row in read_manifest(manifest))
    return round(durations[len(durations) // 2], 3) if durations else 0.0


def main_train(argv: Optional[List[str]] = None, distillation: bool = False) -> None:
    """Entry point of ``recipes/train_teacher.py`` and ``recipes/train_kd.py``."""
    result = train_asr_model(sys.argv[1:] if argv is None else argv, distillation)
    print(f"valid error rate {result['valid_error_rate']:.2f}, test error rate {result['test_error_rate']:.2f}, "
          f"model folder {result['model_dir']}")


def teacher_folders(hparams: Dict[str, object]) -> List[str]:
    """Teacher model folders: ``teacher_list_file`` (one per line) or ``teacher_dirs``."""
    list_file = hparams.get("teacher_list_file")
    if list_file:
        if not os.path.isfile(list_file):
            raise HparamsError(f"teacher_list_file {list_file} does not exist")
        with open(list_file, encoding="utf-8") as handle:
            folders = [line.strip() for line in handle if line.strip() and not line.startswith("#")]
    else:
        folders = list(hparams.get("teacher_dirs") or [])
    if not folders:
        raise HparamsError("no teachers: set teacher_dirs or teacher_list_file")
    missing = [folder for folder in folders if not os.path.isfile(os.path.join(folder, "hyperparams.yaml"))]
    if missing:
        raise HparamsError(f"not a trained model folder (no hyperparams.yaml): {', '.join(missing)}")
    return folders


def save_teachers(argv: Sequence[str]) -> str:
    """Run the teachers over the YAML's splits into the teacher store: the
    CTC/attention teachers' outputs, or (``store_kind: plm``) the token
    features of a pre-trained language model.

    Under ``torchrun`` each process takes its share of the utterances and
    writes its own parts; the store reads them as one.

    Returns
    -------
    str
        The store path.
    """
    from hieradist_lobes.teacher_store import format_summary

    loaded, run_opts = setup(argv)
    hparams = loaded.hparams
    manifests = prepare_manifests(hparams)
    rank = get_rank() or 0
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    device = str(run_opts.get("device") or "cpu")
    if device.startswith("cuda") and world_size > 1 and ":" not in device:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    if hparams.get("store_kind", "asr") == "plm":
        save_plm_store(hparams, manifests, rank, world_size, device)
    else:
        save_asr_teacher_store(hparams, manifests, rank, world_size, device)
    ddp_barrier()  # every rank's parts are complete before the summary (a no-op without DDP)
    if rank == 0:
        print(format_summary(TeacherStore(hparams["store_path"]).summary()))
    return hparams["store_path"]


def save_plm_store(hparams: Dict[str, object], manifests: Dict[str, str], rank: int, world_size: int,
                   device: str) -> None:
    """PLM token features of the YAML's splits (``store_kind: plm``)."""
    from hieradist_lobes.plm import PLMFeatureExtractor, save_plm_features

    extractor = PLMFeatureExtractor(hparams["plm_path"], layer=int(hparams["plm_layer"]), device=device)
    # The ASR's tokenizer is the PLM's own (label_splitter): share the extractor's.
    splitter = PLMSplitter(extractor.tokenizer, hparams["unit"])
    tokenizer = make_tokenizer(hparams, manifests, splitter)
    manifests = checked_manifests(hparams, manifests, hparams["store_splits"], tokenizer, splitter)
    for split in hparams["store_splits"]:
        save_plm_features(
            extractor, tokenizer, manifests[split], split, hparams["store_path"], hparams["unit"],
            batch_size=hparams["store_batch_size"],
            dtype=hparams["store_dtype"], rank=rank, world_size=world_size, part_size=hparams["store_part_size"],
            on_mismatch=hparams["plm_on_mismatch"], progress=rank == 0,
        )


def save_asr_teacher_store(hparams: Dict[str, object], manifests: Dict[str, str], rank: int, world_size: int,
                           device: str) -> None:
    """CTC/attention teachers' outputs of the YAML's splits (multi-teacher KD)."""
    from hieradist_lobes.teachers import Teacher, save_teacher_outputs

    teachers = [Teacher(folder, device=device) for folder in teacher_folders(hparams)]
    manifests = checked_manifests(hparams, manifests, hparams["store_splits"], teachers[0].tokenizer)
    options = {"splits": list(hparams["store_splits"]), "attention_error_rate": "greedy decoding",
               "ctc_error_rate": "greedy decoding"}
    for split in hparams["store_splits"]:
        save_teacher_outputs(
            teachers, manifests[split], split, hparams["store_path"], hparams["unit"],
            batch_size=hparams["store_batch_size"], dtype=hparams["store_dtype"], top_k=hparams["store_top_k"],
            rank=rank, world_size=world_size, part_size=hparams["store_part_size"], options=options,
            progress=rank == 0, audio=audio_options(hparams),
        )


def train_lm(argv: Sequence[str]) -> Dict[str, object]:
    """Train the token LM of a CIF YAML's vocabulary (``recipes/train_lm.py``).

    It reads the dataset's CIF YAML itself (e.g. ``hparams/synth/cif.yaml``;
    settings ``lm_*``), so that the LM's vocabulary is the ASR model's,
    index by index, and writes the folder ``lm_dir``.

    Returns
    -------
    dict
        ``lm_dir``, ``valid_perplexity``, ``test_perplexity``.
    """
    from hieradist_lobes.brains import LMBrain
    from hieradist_lobes.lm import export_lm_folder, text_dataset

    argv = list(argv)
    if not any(arg.startswith("--experiment_name") for arg in argv):
        argv.append("--experiment_name=lm")  # not the CIF model's own folder
    loaded, run_opts = setup(argv)
    hparams = loaded.hparams
    manifests = prepare_manifests(hparams)
    split = label_splitter(hparams)
    tokenizer = make_tokenizer(hparams, manifests, split)
    check_vocabulary(tokenizer, hparams["output_neurons"], loaded.files[0])
    manifests = checked_manifests(hparams, manifests, SPLITS, tokenizer, split)
    datasets = {name: text_dataset(manifests[name], tokenizer, hparams["unit"], split)
                for name in ("train", "valid", "test")}
    brain_hparams = dict(hparams, epoch_counter=hparams["lm_epoch_counter"], train_logger=hparams["lm_logger"],
                         output_folder=hparams["lm_output_folder"])
    brain = LMBrain(modules={"lm": hparams["lm_model"]}, opt_class=hparams["lm_opt_class"], hparams=brain_hparams,
                    run_opts=run_opts, checkpointer=hparams["lm_checkpointer"])
    loader = hparams["lm_dataloader_opts"]
    evaluation = {key: value for key, value in loader.items() if key != "shuffle"}
    brain.fit(hparams["lm_epoch_counter"], datasets["train"], datasets["valid"], train_loader_kwargs=loader,
              valid_loader_kwargs=evaluation)
    brain.evaluate(datasets["valid"], min_key="loss", test_loader_kwargs=evaluation)
    valid_perplexity = brain.test_stats["perplexity"]
    brain.evaluate(datasets["test"], min_key="loss", test_loader_kwargs=evaluation)
    result = {"lm_dir": os.path.abspath(hparams["lm_dir"]), "valid_perplexity": valid_perplexity,
              "test_perplexity": brain.test_stats["perplexity"]}
    if if_main_process():
        best = hparams["lm_checkpointer"].find_checkpoint(min_key="loss")
        export_lm_folder(resolved_subtree(loaded, "lm_model"), os.path.join(best.path, "lm.ckpt"), tokenizer,
                         hparams["lm_dir"], {"name": "lm", **{k: v for k, v in result.items() if k != "lm_dir"}})
    return result
