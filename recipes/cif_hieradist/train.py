#!/usr/bin/env python3
"""Train the CIF ASR baseline (CIF-HieraDist's model, without distillation).

    python recipes/cif_hieradist/train.py hparams/synth/cif.yaml
    python recipes/cif_hieradist/train.py hparams/aishell1/cif.yaml \
        --data_folder=/corpora/aishell --plm_path=/models/bert-base-chinese

Output units are the pre-trained LM's own tokens (its tokenizer splits the
transcripts), so that token k of a transcript is CIF fire k and has the PLM
feature k when distilling (train_kd.py).

Flow: YAML → manifests → PLM-token vocabulary → checks → datasets →
:class:`~hieradist_lobes.brains.CIFBrain` → fit → valid and test token error
rates of the best checkpoint → a model folder that
:class:`~hieradist_lobes.inference.CIFASR` loads.
"""

import sys
from pathlib import Path

import speechbrain as sb

from hieradist_lobes.brains import CIFBrain
from hieradist_lobes.cli import hold_output_folder, run_command
from hieradist_lobes.data import prepare_manifests
from hieradist_lobes.data.manifest import SPLITS
from hieradist_lobes.data.pipelines import asr_datasets, train_loader_options
from hieradist_lobes.data.validation import checked_manifests
from hieradist_lobes.export import export_best_checkpoint
from hieradist_lobes.hparams import (
    check_distillation_yaml,
    load_hparams,
    parse_arguments,
    with_values,
    write_experiment_hparams,
)
from hieradist_lobes.plm import PLMSplitter, PLMTokenizer, cif_vocabulary_size, plm_tokenizer
from hieradist_lobes.threads import set_threads
from hieradist_lobes.tokens import check_vocabulary

INFERENCE_HPARAMS = Path(__file__).resolve().parents[2] / "hparams" / "models" / "cif_conformer_inference.yaml"


def main(argv):
    # 1. Command line and YAML
    hparams_file, run_opts, overrides = parse_arguments(argv)  # SpeechBrain's, run options typed
    set_threads()  # this process's share of the cores (torchrun: one share per process)
    sb.utils.distributed.ddp_init_group(run_opts)
    loaded = load_hparams(hparams_file, overrides, vocabulary_size=cif_vocabulary_size)  # output_neurons: auto
    hparams = loaded.hparams
    check_distillation_yaml(hparams, loaded.files[0], distillation=False)
    hold_output_folder(hparams["output_folder"])  # a second run into it stops, naming this one
    sb.create_experiment_directory(experiment_directory=hparams["output_folder"])
    write_experiment_hparams(loaded, hparams["output_folder"])

    # 2. Data: transcripts split by the PLM's tokenizer; the vocabulary is the training set's PLM tokens
    manifests = prepare_manifests(hparams)
    split_labels = PLMSplitter(PLMTokenizer(hparams["plm_path"]), hparams["unit"])
    tokenizer = plm_tokenizer(manifests["train"], split_labels)
    check_vocabulary(tokenizer, hparams["output_neurons"], loaded.files[0])
    hparams["tokenizer"] = tokenizer
    manifests = checked_manifests(hparams, manifests, SPLITS, tokenizer, split_labels)
    datasets = asr_datasets(hparams, manifests, tokenizer, split_labels)

    # 3. Brain: CE + quantity + CTC per output token; greedy decoding on valid, beam search on test
    brain = CIFBrain(modules=hparams["modules"], opt_class=hparams["opt_class"], hparams=hparams,
                     run_opts=run_opts, checkpointer=hparams["checkpointer"])

    # 4. Fit, then score the best checkpoint on valid and test
    brain.fit(hparams["epoch_counter"], datasets["train"], datasets["valid"],
              train_loader_kwargs=train_loader_options(hparams, datasets["train"]),
              valid_loader_kwargs=hparams["valid_dataloader_opts"])
    result = brain.score_best_checkpoint(datasets["valid"], datasets["test"])

    # 5. Export (the median training duration sets how CIFASR cuts long recordings)
    # (with the CTC decoding weight chosen on valid, when the YAML gives a grid)
    export_best_checkpoint(with_values(loaded, {"ctc_weight_decode": result["ctc_weight_decode"]}), tokenizer, result,
                           manifests["train"], INFERENCE_HPARAMS, manifests["test"])
    return result


if __name__ == "__main__":
    run_command(main, sys.argv[1:])  # a user's mistake ends with its message, not a traceback
