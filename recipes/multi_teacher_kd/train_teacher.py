#!/usr/bin/env python3
"""Train a joint CTC/attention ASR model: a teacher, or the student without
distillation (the baseline).

    python recipes/multi_teacher_kd/train_teacher.py hparams/synth/asr.yaml          (tea0)
    python recipes/multi_teacher_kd/train_teacher.py hparams/synth/tea1.yaml
    python recipes/multi_teacher_kd/train_teacher.py hparams/synth/asr_wordpiece.yaml   (the CIF models' units)
    python recipes/multi_teacher_kd/train_teacher.py hparams/timit/tea3.yaml --data_folder=/corpora/TIMIT
    torchrun --nproc_per_node=2 recipes/multi_teacher_kd/train_teacher.py hparams/synth/student.yaml

Flow: YAML → manifests (prepared once, then checked) → label vocabulary →
datasets → :class:`~hieradist_lobes.brains.CTCAttentionBrain` → fit →
valid and test error rates of the best checkpoint → a self-contained model
folder (``model_dir``) that ``EncoderDecoderASR.from_hparams`` loads, and
that ``save_teachers.py`` reads as a teacher.
"""

import sys
from pathlib import Path

import speechbrain as sb

from hieradist_lobes.brains import CTCAttentionBrain
from hieradist_lobes.cli import hold_output_folder, run_command
from hieradist_lobes.data import prepare_manifests
from hieradist_lobes.data.manifest import SPLITS
from hieradist_lobes.data.pipelines import asr_datasets, train_loader_options
from hieradist_lobes.data.validation import checked_manifests
from hieradist_lobes.export import export_best_checkpoint
from hieradist_lobes.hparams import check_distillation_yaml, load_hparams, parse_arguments, write_experiment_hparams
from hieradist_lobes.threads import set_threads
from hieradist_lobes.tokens import check_vocabulary, label_units, vocabulary_size

INFERENCE_HPARAMS = Path(__file__).resolve().parents[2] / "hparams" / "models" / "crdnn_ctc_attention_inference.yaml"


def main(argv):
    # 1. Command line and YAML (overlays via `extends:`; every value range-checked before anything is built)
    hparams_file, run_opts, overrides = parse_arguments(argv)  # SpeechBrain's, run options typed
    set_threads()  # this process's share of the cores (torchrun: one share per process)
    sb.utils.distributed.ddp_init_group(run_opts)
    loaded = load_hparams(hparams_file, overrides, vocabulary_size=vocabulary_size)  # output_neurons: auto
    hparams = loaded.hparams
    check_distillation_yaml(hparams, loaded.files[0], distillation=False)
    hold_output_folder(hparams["output_folder"])  # a second run into it stops, naming this one
    sb.create_experiment_directory(experiment_directory=hparams["output_folder"])
    write_experiment_hparams(loaded, hparams["output_folder"])

    # 2. Data: manifests, label vocabulary (phones39, from the training labels, SentencePiece units trained once
    #    on the training transcripts, or the PLM's tokens), checks, datasets
    manifests = prepare_manifests(hparams)
    tokenizer, split_labels = label_units(hparams, manifests)  # split_labels None: the column split at spaces
    check_vocabulary(tokenizer, hparams["output_neurons"], loaded.files[0])
    hparams["tokenizer"] = tokenizer
    manifests = checked_manifests(hparams, manifests, SPLITS, tokenizer, split_labels)
    datasets = asr_datasets(hparams, manifests, tokenizer, split_labels)

    # 3. Brain: CTC + attention losses; greedy decoding on valid, beam search (with CTC) on test
    brain = CTCAttentionBrain(modules=hparams["modules"], opt_class=hparams["opt_class"], hparams=hparams,
                              run_opts=run_opts, checkpointer=hparams["checkpointer"])

    # 4. Fit, then score the best checkpoint on valid and test (test last: error_rate_file holds its details)
    brain.fit(hparams["epoch_counter"], datasets["train"], datasets["valid"],
              train_loader_kwargs=train_loader_options(hparams, datasets["train"]),
              valid_loader_kwargs=hparams["valid_dataloader_opts"])
    result = brain.score_best_checkpoint(datasets["valid"], datasets["test"])

    # 5. Export the best checkpoint as a model folder
    export_best_checkpoint(loaded, tokenizer, result, manifests["train"], INFERENCE_HPARAMS, manifests["test"])
    return result


if __name__ == "__main__":
    run_command(main, sys.argv[1:])  # a user's mistake ends with its message, not a traceback
