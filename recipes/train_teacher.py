#!/usr/bin/env python3
"""Train an ASR model without distillation: a teacher, a baseline student, or a CIF model.

    python recipes/train_teacher.py hparams/synth/asr.yaml --variant=tea1
    python recipes/train_teacher.py hparams/timit/asr.yaml --variant=tea3 --data_folder=/corpora/TIMIT
    python recipes/train_teacher.py hparams/synth/cif.yaml                      (the CIF baseline)
    torchrun --nproc_per_node=2 recipes/train_teacher.py hparams/synth/asr.yaml --variant=tea0

The YAML chooses the model and the Brain class; SpeechBrain's options apply
(--device, --precision, --debug, --data_parallel_backend, ...).  The trained
model is exported to <output_folder>/model, loadable with
speechbrain.inference.ASR.EncoderDecoderASR.from_hparams(source=...) (joint
CTC/attention models) or hieradist_lobes.inference.CIFASR.from_hparams(source=...)
(CIF models).
"""

from hieradist_lobes.experiment import main_train

if __name__ == "__main__":
    main_train()
