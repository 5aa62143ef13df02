#!/usr/bin/env python3
"""Distil a student from the teacher outputs stored by save_teachers.py.

    python recipes/train_kd.py hparams/synth/train_kd.yaml --strategy=weighted
    torchrun --nproc_per_node=2 recipes/train_kd.py hparams/synth/train_kd.yaml --strategy=best
    python recipes/train_kd.py hparams/synth/cif_kd.yaml --variant=hieradist     (or acd, lrd)

CIF models (cif_kd.yaml) are distilled from the stored token features of a
pre-trained LM: acoustic contrastive (ACD), linguistic regression (LRD) or
both (HieraDist); weights in the dataset's cif.yaml.

The YAML (an overlay of the dataset's asr.yaml) names the teacher store, the
strategy (average, best, weighted), the CTC distillation (pseudo_label or kl),
kd_alpha, kd_temperature and weighted_temperature.  Teacher outputs are read
by utterance ID in the DataLoader workers, so shuffling, dynamic batching and
several processes are safe.
"""

from hieradist_lobes.experiment import main_train

if __name__ == "__main__":
    main_train(distillation=True)
