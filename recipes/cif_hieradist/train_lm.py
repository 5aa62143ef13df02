#!/usr/bin/env python3
"""Train the token LM for shallow fusion with CIF decoding.

    python recipes/cif_hieradist/train_lm.py hparams/synth/cif.yaml

It reads the dataset's CIF YAML itself (settings ``lm_*``), so that the LM's
vocabulary is the ASR model's, index by index; it trains on ``lm_train_text``
(a text file, one transcript per line) or, when that is null, on the training
transcripts, and writes the folder
``lm_dir``, which ``CIFASR.from_hparams(..., overrides={"lm_folder": ...,
"lm_weight": 0.2})`` loads.
"""

import os
import sys

import speechbrain as sb
from speechbrain.utils.distributed import if_main_process

from hieradist_lobes.brains import LMBrain
from hieradist_lobes.cli import hold_output_folder, run_command
from hieradist_lobes.data import prepare_manifests
from hieradist_lobes.data.manifest import SPLITS
from hieradist_lobes.data.validation import checked_manifests
from hieradist_lobes.hparams import load_hparams, parse_arguments, resolved_subtree, write_experiment_hparams
from hieradist_lobes.lm import export_lm_folder, text_dataset, text_file_dataset
from hieradist_lobes.plm import PLMSplitter, PLMTokenizer, cif_vocabulary_size, plm_tokenizer
from hieradist_lobes.threads import set_threads
from hieradist_lobes.tokens import check_vocabulary


def main(argv):
    # 1. Command line and YAML (the CIF model's; logs go to lm_output_folder, not the model's folder)
    hparams_file, run_opts, overrides = parse_arguments(argv)  # SpeechBrain's, run options typed
    set_threads()  # this process's share of the cores (torchrun: one share per process)
    sb.utils.distributed.ddp_init_group(run_opts)
    loaded = load_hparams(hparams_file, overrides, vocabulary_size=cif_vocabulary_size)  # output_neurons: auto
    hparams = loaded.hparams
    hold_output_folder(hparams["lm_output_folder"])  # a second run into it stops, naming this one
    sb.create_experiment_directory(experiment_directory=hparams["lm_output_folder"])
    write_experiment_hparams(loaded, hparams["lm_output_folder"])

    # 2. Data: text only (lm_train_text, or the training transcripts; valid and test transcripts to score),
    #    in the ASR model's PLM-token vocabulary
    manifests = prepare_manifests(hparams)
    split_labels = PLMSplitter(PLMTokenizer(hparams["plm_path"]), hparams["unit"])
    tokenizer = plm_tokenizer(manifests["train"], split_labels)
    check_vocabulary(tokenizer, hparams["output_neurons"], loaded.files[0])
    manifests = checked_manifests(hparams, manifests, SPLITS, tokenizer, split_labels)
    datasets = {split: text_dataset(manifests[split], tokenizer, hparams["unit"], split_labels) for split in SPLITS}
    if hparams["lm_train_text"]:  # more text than the transcribed audio, as real LMs are trained on
        datasets["train"] = text_file_dataset(hparams["lm_train_text"], tokenizer, hparams["unit"], split_labels)

    # 3. Brain: next-token NLL; validation reports the perplexity
    # (optimizer_step_limit of the YAML is the ASR model's: the LM trains for lm_epochs)
    brain_hparams = dict(hparams, epoch_counter=hparams["lm_epoch_counter"], train_logger=hparams["lm_logger"],
                         output_folder=hparams["lm_output_folder"], optimizer_step_limit=None,
                         tensorboard_folder=os.path.join(hparams["lm_output_folder"], "tensorboard"))
    brain = LMBrain(modules={"lm": hparams["lm_model"]}, opt_class=hparams["lm_opt_class"], hparams=brain_hparams,
                    run_opts=run_opts, checkpointer=hparams["lm_checkpointer"])

    # 4. Fit, then the best checkpoint's perplexity on valid and test
    loader = hparams["lm_dataloader_opts"]
    evaluation = {key: value for key, value in loader.items() if key != "shuffle"}
    brain.fit(hparams["lm_epoch_counter"], datasets["train"], datasets["valid"], train_loader_kwargs=loader,
              valid_loader_kwargs=evaluation)
    brain.evaluate(datasets["valid"], min_key="loss", test_loader_kwargs=evaluation)
    valid_perplexity = brain.test_stats["perplexity"]
    brain.evaluate(datasets["test"], min_key="loss", test_loader_kwargs=evaluation)
    result = {"lm_dir": os.path.abspath(hparams["lm_dir"]), "valid_perplexity": valid_perplexity,
              "test_perplexity": brain.test_stats["perplexity"]}

    # 5. Export the LM folder
    if if_main_process():
        best = hparams["lm_checkpointer"].find_checkpoint(min_key="loss")
        export_lm_folder(resolved_subtree(loaded, "lm_model"), os.path.join(best.path, "lm.ckpt"), tokenizer,
                         hparams["lm_dir"], {"name": "lm", **{k: v for k, v in result.items() if k != "lm_dir"}})
    return result


if __name__ == "__main__":
    run_command(main, sys.argv[1:])  # a user's mistake ends with its message, not a traceback
