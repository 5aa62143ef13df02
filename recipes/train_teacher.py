#!/usr/bin/env python3
"""Train a joint CTC/attention ASR model (a teacher, or a baseline student).

    python recipes/train_teacher.py hparams/synth/asr.yaml --teacher=tea1
    python recipes/train_teacher.py hparams/timit/asr.yaml --teacher=tea3 --data_folder=/corpora/TIMIT
    torchrun --nproc_per_node=2 recipes/train_teacher.py hparams/synth/asr.yaml --teacher=tea0

The YAML chooses the model and the Brain class; SpeechBrain's options apply
(--device, --precision, --debug, --data_parallel_backend, ...).  The trained
model is exported to <output_folder>/model, loadable with
speechbrain.inference.ASR.EncoderDecoderASR.from_hparams(source=...).
"""

from hieradist_lobes.experiment import main_train

if __name__ == "__main__":
    main_train()
