#!/usr/bin/env python3
"""Store a pre-trained LM's token features of the training transcripts, the
teacher of CIF-HieraDist's distillation (train_kd.py).

    python recipes/cif_hieradist/save_plm_features.py hparams/synth/cif_plm_features.yaml
    python recipes/cif_hieradist/save_plm_features.py hparams/aishell1/cif_plm_features.yaml \
        --data_folder=/corpora/aishell --plm_path=/models/bert-base-chinese --device=cuda

Per utterance: the PLM's hidden states (layer ``plm_layer``) of each token of
the transcript ([CLS] dropped, [SEP] for eos) and the tokens' ASR label
indices, in the same HDF5 store format as the multi-teacher store
(:mod:`hieradist_lobes.teacher_store`), resumable and split across
processes under ``torchrun``.
"""

import sys

import speechbrain as sb
from speechbrain.utils.distributed import ddp_barrier

from hieradist_lobes.cli import hold_output_folder, run_command
from hieradist_lobes.data import prepare_manifests
from hieradist_lobes.data.validation import checked_manifests
from hieradist_lobes.hparams import load_hparams, parse_arguments, write_experiment_hparams
from hieradist_lobes.plm import PLMSplitter, cif_vocabulary_size, plm_tokenizer
from hieradist_lobes.plm_features import PLMFeatureExtractor, save_plm_features
from hieradist_lobes.teacher_store import TeacherStore, format_summary, writer_process
from hieradist_lobes.threads import set_threads
from hieradist_lobes.tokens import check_vocabulary


def main(argv):
    # 1. Command line and YAML
    hparams_file, run_opts, overrides = parse_arguments(argv)  # SpeechBrain's, run options typed
    set_threads()  # this process's share of the cores (torchrun: one share per process)
    sb.utils.distributed.ddp_init_group(run_opts)
    loaded = load_hparams(hparams_file, overrides, vocabulary_size=cif_vocabulary_size)  # output_neurons: auto
    hparams = loaded.hparams
    hold_output_folder(hparams["output_folder"])  # a second run into it stops, naming this one
    sb.create_experiment_directory(experiment_directory=hparams["output_folder"])
    write_experiment_hparams(loaded, hparams["output_folder"])

    # 2. The PLM, and the ASR vocabulary made by its own tokenizer (as train.py makes it)
    rank, world_size, device = writer_process(run_opts)
    manifests = prepare_manifests(hparams)
    extractor = PLMFeatureExtractor(hparams["plm_path"], layer=int(hparams["plm_layer"]), device=device)
    split_labels = PLMSplitter(extractor.tokenizer, hparams["unit"])
    tokenizer = plm_tokenizer(manifests["train"], split_labels)
    check_vocabulary(tokenizer, hparams["output_neurons"], loaded.files[0])  # the models this store will teach
    manifests = checked_manifests(hparams, manifests, hparams["store_splits"], tokenizer, split_labels)

    # 3. Fill the store, split by split (resumable; this rank's share of the batches)
    for split in hparams["store_splits"]:
        save_plm_features(
            extractor, tokenizer, manifests[split], split, hparams["store_path"], hparams["unit"],
            batch_size=hparams["store_batch_size"], dtype=hparams["store_dtype"], rank=rank,
            world_size=world_size, part_size=hparams["store_part_size"], on_mismatch=hparams["plm_on_mismatch"],
            progress=rank == 0, compression=hparams["store_compression"],
        )
    ddp_barrier()  # every rank's parts are complete before the summary (a no-op without DDP)
    if rank == 0:
        print(format_summary(TeacherStore(hparams["store_path"]).summary()))
    return hparams["store_path"]


if __name__ == "__main__":
    run_command(main, sys.argv[1:])  # a user's mistake ends with its message, not a traceback
