#!/usr/bin/env python3
"""Train a CIF model distilled from a pre-trained LM's token features
(stored by save_plm_features.py): acoustic contrastive (ACD), linguistic
regression (LRD) or both (HieraDist).

    python recipes/cif_hieradist/train_kd.py hparams/synth/cif_kd.yaml --distillation=hieradist   (or acd, lrd)
    torchrun --nproc_per_node=2 recipes/cif_hieradist/train_kd.py hparams/synth/cif_kd.yaml --distillation=acd

Weights, negatives and temperature are the paper's, in hparams/cif.yaml.

Flow: as train.py, with the PLM feature store opened (its vocabulary must be
the model's, its feature size ``plm_size``), the features of each token added
to the training set, and :class:`~hieradist_lobes.brains.HieraDistBrain`.
"""

import sys
from pathlib import Path

import speechbrain as sb

from hieradist_lobes.brains import HieraDistBrain
from hieradist_lobes.cli import hold_output_folder, run_command
from hieradist_lobes.data import prepare_manifests
from hieradist_lobes.data.manifest import SPLITS
from hieradist_lobes.data.pipelines import PLM_KEYS, PLMFeatureItems, asr_datasets, train_loader_options
from hieradist_lobes.data.validation import checked_manifests
from hieradist_lobes.export import export_best_checkpoint
from hieradist_lobes.hparams import (
    HparamsError,
    check_distillation_yaml,
    load_hparams,
    parse_arguments,
    with_values,
    write_experiment_hparams,
)
from hieradist_lobes.plm import PLMSplitter, PLMTokenizer, cif_vocabulary_size, plm_tokenizer
from hieradist_lobes.teacher_store import TeacherStore, check_store_vocabulary
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
    check_distillation_yaml(hparams, loaded.files[0], distillation=True)
    hold_output_folder(hparams["output_folder"])  # a second run into it stops, naming this one
    sb.create_experiment_directory(experiment_directory=hparams["output_folder"])
    write_experiment_hparams(loaded, hparams["output_folder"])

    # 2. Data, with each token's PLM feature read from the store by utterance ID
    manifests = prepare_manifests(hparams)
    split_labels = PLMSplitter(PLMTokenizer(hparams["plm_path"]), hparams["unit"])
    tokenizer = plm_tokenizer(manifests["train"], split_labels)
    check_vocabulary(tokenizer, hparams["output_neurons"], loaded.files[0])
    hparams["tokenizer"] = tokenizer
    manifests = checked_manifests(hparams, manifests, SPLITS, tokenizer, split_labels)
    store = TeacherStore(hparams["teacher_store"], splits=["train"])
    check_store_vocabulary(store, tokenizer.labels())
    if int(hparams["plm_size"]) != store.metadata.feature_dim:
        raise HparamsError(f"{loaded.files[0]}: plm_size is {hparams['plm_size']} but the features in {store.path} "
                           f"have {store.metadata.feature_dim} dimensions; set plm_size: {store.metadata.feature_dim}")
    datasets = asr_datasets(hparams, manifests, tokenizer, split_labels, teacher_store=store,
                            teacher_items=PLMFeatureItems(store), teacher_keys=PLM_KEYS)

    # 3. Brain: the CIF losses plus ACD and/or LRD (`distillation`); only the projections in use are trained
    brain = HieraDistBrain(modules=hparams["modules"], opt_class=hparams["opt_class"], hparams=hparams,
                           run_opts=run_opts, checkpointer=hparams["checkpointer"])

    # 4. Fit, then score the best checkpoint on valid and test (no PLM needed there)
    brain.fit(hparams["epoch_counter"], datasets["train"], datasets["valid"],
              train_loader_kwargs=train_loader_options(hparams, datasets["train"]),
              valid_loader_kwargs=hparams["valid_dataloader_opts"])
    result = brain.score_best_checkpoint(datasets["valid"], datasets["test"])

    # 5. Export: the distilled model's folder loads like the baseline's (the projections are training-only)
    # (with the CTC decoding weight chosen on valid, when the YAML gives a grid)
    export_best_checkpoint(with_values(loaded, {"ctc_weight_decode": result["ctc_weight_decode"]}), tokenizer, result,
                           manifests["train"], INFERENCE_HPARAMS, manifests["test"], distillation=hparams["distillation"])
    return result


if __name__ == "__main__":
    run_command(main, sys.argv[1:])  # a user's mistake ends with its message, not a traceback
