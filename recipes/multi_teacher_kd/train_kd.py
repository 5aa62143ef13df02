#!/usr/bin/env python3
"""Distil a student from the teacher outputs stored by save_teachers.py.

    python recipes/multi_teacher_kd/train_kd.py hparams/synth/train_kd.yaml --strategy=weighted
    torchrun --nproc_per_node=2 recipes/multi_teacher_kd/train_kd.py hparams/synth/train_kd.yaml --strategy=best

The YAML (an overlay of the dataset's student.yaml) names the teacher store,
the strategy (average, best, weighted), the CTC distillation (pseudo_label or
kl), kd_alpha, kd_temperature and weighted_temperature.  Teacher outputs are
read by utterance ID in the DataLoader workers, so shuffling, dynamic batching
and several processes are safe.

Flow: as train_teacher.py, with the teacher store opened (its vocabulary must
be the student's), its outputs added to the training set, optionally the
student's encoder initialised from a teacher's, and
:class:`~hieradist_lobes.brains.DistillationBrain` as the Brain.
"""

import sys
from pathlib import Path

import speechbrain as sb

from hieradist_lobes.brains import DistillationBrain
from hieradist_lobes.cli import hold_output_folder, run_command
from hieradist_lobes.data import prepare_manifests
from hieradist_lobes.data.manifest import SPLITS
from hieradist_lobes.data.pipelines import asr_datasets, train_loader_options
from hieradist_lobes.data.validation import checked_manifests
from hieradist_lobes.export import export_best_checkpoint
from hieradist_lobes.hparams import check_distillation_yaml, load_hparams, parse_arguments, write_experiment_hparams
from hieradist_lobes.models import load_encoder_weights
from hieradist_lobes.teacher_store import TeacherStore, check_store_vocabulary
from hieradist_lobes.threads import set_threads
from hieradist_lobes.tokens import check_vocabulary, label_units, vocabulary_size

INFERENCE_HPARAMS = Path(__file__).resolve().parents[2] / "hparams" / "models" / "crdnn_ctc_attention_inference.yaml"


def main(argv):
    # 1. Command line and YAML
    hparams_file, run_opts, overrides = parse_arguments(argv)  # SpeechBrain's, run options typed
    set_threads()  # this process's share of the cores (torchrun: one share per process)
    sb.utils.distributed.ddp_init_group(run_opts)
    loaded = load_hparams(hparams_file, overrides, vocabulary_size=vocabulary_size)  # output_neurons: auto
    hparams = loaded.hparams
    check_distillation_yaml(hparams, loaded.files[0], distillation=True)
    hold_output_folder(hparams["output_folder"])  # a second run into it stops, naming this one
    sb.create_experiment_directory(experiment_directory=hparams["output_folder"])
    write_experiment_hparams(loaded, hparams["output_folder"])

    # 2. Data, with the teachers' outputs read from the store by utterance ID
    manifests = prepare_manifests(hparams)
    tokenizer, split_labels = label_units(hparams, manifests)  # the teachers' units (the store checks it)
    check_vocabulary(tokenizer, hparams["output_neurons"], loaded.files[0])
    hparams["tokenizer"] = tokenizer
    manifests = checked_manifests(hparams, manifests, SPLITS, tokenizer, split_labels)
    store = TeacherStore(hparams["teacher_store"], splits=["train"])
    check_store_vocabulary(store, tokenizer.labels())
    datasets = asr_datasets(hparams, manifests, tokenizer, split_labels, teacher_store=store)

    # 3. Brain: hard losses mixed with the teachers' (strategy-weighted) distillation losses
    if hparams["init_encoder_from"]:
        load_encoder_weights(hparams["init_encoder_from"], hparams["model"]["enc"])
    brain = DistillationBrain(modules=hparams["modules"], opt_class=hparams["opt_class"], hparams=hparams,
                              run_opts=run_opts, checkpointer=hparams["checkpointer"])

    # 4. Fit, then score the best checkpoint on valid and test (no teacher outputs needed there)
    brain.fit(hparams["epoch_counter"], datasets["train"], datasets["valid"],
              train_loader_kwargs=train_loader_options(hparams, datasets["train"]),
              valid_loader_kwargs=hparams["valid_dataloader_opts"])
    result = brain.score_best_checkpoint(datasets["valid"], datasets["test"])

    # 5. Export: the student's folder loads like any CTC/attention model
    export_best_checkpoint(loaded, tokenizer, result, manifests["train"], INFERENCE_HPARAMS, manifests["test"],
                           strategy=hparams["strategy"])
    return result


if __name__ == "__main__":
    run_command(main, sys.argv[1:])  # a user's mistake ends with its message, not a traceback
