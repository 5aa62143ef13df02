#!/usr/bin/env python3
"""Store the teachers' outputs in an HDF5 teacher store, keyed by utterance ID.

    python recipes/save_teachers.py hparams/synth/save_teachers.yaml
    python recipes/save_teachers.py hparams/timit/save_teachers.yaml --data_folder=/corpora/TIMIT --device=cuda
    torchrun --nproc_per_node=2 recipes/save_teachers.py hparams/synth/save_teachers.yaml
    python recipes/save_teachers.py hparams/synth/cif_plm_features.yaml   (a PLM's token features, for CIF)

Teachers are rebuilt from their model folders (teacher_dirs or
teacher_list_file).  Killing it and starting again continues where it
stopped; with the same inputs a second run does nothing.  Inspect the result
with: python -m hieradist_lobes.teacher_store info <store_path>
"""

import sys

from hieradist_lobes.experiment import save_teachers

if __name__ == "__main__":
    save_teachers(sys.argv[1:])
