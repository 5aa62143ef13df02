#!/usr/bin/env python3
"""Run the trained teachers over the training set and store their outputs.

    python recipes/multi_teacher_kd/save_teachers.py hparams/synth/save_teachers.yaml
    torchrun --nproc_per_node=2 recipes/multi_teacher_kd/save_teachers.py hparams/synth/save_teachers.yaml

Each teacher is rebuilt from its own model folder (``teacher_dirs`` or
``teacher_list_file``); per utterance the store keeps every teacher's CTC and
teacher-forced attention log-posteriors and its greedy-decoding error rates
(:mod:`hieradist_lobes.teachers`), in the HDF5 teacher store
(:mod:`hieradist_lobes.teacher_store`).  Under ``torchrun`` each process
takes its share of the batches and writes its own parts; a killed run resumes
to the store an uninterrupted run makes.
"""

import sys

import speechbrain as sb
from speechbrain.utils.distributed import ddp_barrier

from hieradist_lobes.cli import hold_output_folder, run_command
from hieradist_lobes.data import prepare_manifests
from hieradist_lobes.data.pipelines import audio_options
from hieradist_lobes.data.validation import checked_manifests
from hieradist_lobes.hparams import load_hparams, parse_arguments, write_experiment_hparams
from hieradist_lobes.teacher_store import TeacherStore, format_summary, writer_process
from hieradist_lobes.teachers import Teacher, save_teacher_outputs, teacher_folders
from hieradist_lobes.threads import set_threads
from hieradist_lobes.tokens import vocabulary_size


def main(argv):
    # 1. Command line and YAML
    hparams_file, run_opts, overrides = parse_arguments(argv)  # SpeechBrain's, run options typed
    set_threads()  # this process's share of the cores (torchrun: one share per process)
    sb.utils.distributed.ddp_init_group(run_opts)
    loaded = load_hparams(hparams_file, overrides, vocabulary_size=vocabulary_size)  # output_neurons: auto
    hparams = loaded.hparams
    hold_output_folder(hparams["output_folder"])  # a second run into it stops, naming this one
    sb.create_experiment_directory(experiment_directory=hparams["output_folder"])
    write_experiment_hparams(loaded, hparams["output_folder"])

    # 2. The teachers, from their model folders (their vocabulary is the store's)
    rank, world_size, device = writer_process(run_opts)
    teachers = [Teacher(folder, device=device) for folder in teacher_folders(hparams)]

    # 3. The manifests of the splits to store, checked against the teachers' vocabulary
    manifests = checked_manifests(hparams, prepare_manifests(hparams), hparams["store_splits"],
                                  teachers[0].tokenizer, teachers[0].split_labels)

    # 4. Fill the store, split by split (resumable; this rank's share of the batches)
    options = {"splits": list(hparams["store_splits"]), "attention_error_rate": "greedy decoding",
               "ctc_error_rate": "greedy decoding"}
    for split in hparams["store_splits"]:
        save_teacher_outputs(
            teachers, manifests[split], split, hparams["store_path"], hparams["unit"],
            batch_size=hparams["store_batch_size"], dtype=hparams["store_dtype"], top_k=hparams["store_top_k"],
            rank=rank, world_size=world_size, part_size=hparams["store_part_size"], options=options,
            progress=rank == 0, audio=audio_options(hparams), compression=hparams["store_compression"],
        )
    ddp_barrier()  # every rank's parts are complete before the summary (a no-op without DDP)
    if rank == 0:
        print(format_summary(TeacherStore(hparams["store_path"]).summary()))
    return hparams["store_path"]


if __name__ == "__main__":
    run_command(main, sys.argv[1:])  # a user's mistake ends with its message, not a traceback
