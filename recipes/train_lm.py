#!/usr/bin/env python3
"""Train a token language model for shallow fusion with a CIF model.

    python recipes/train_lm.py hparams/synth/cif.yaml
    python recipes/train_lm.py hparams/aishell1/cif.yaml --data_folder=/corpora/aishell \
        --plm_path=/models/bert-base-chinese

It reads the dataset's CIF YAML (its lm_* settings), so the LM is trained on
the training transcripts in the CIF model's own vocabulary, and exports
lm_dir (default <output_root>/lm/model), which CIF decoding uses with
    CIFASR.from_hparams(source=..., overrides={"lm_folder": <lm_dir>, "lm_weight": 0.2})
"""

import sys

from hieradist_lobes.experiment import train_lm

if __name__ == "__main__":
    result = train_lm(sys.argv[1:])
    print(f"valid perplexity {result['valid_perplexity']:.2f}, test perplexity {result['test_perplexity']:.2f}, "
          f"LM folder {result['lm_dir']}")
