"""SpeechBrain lobes and recipes for knowledge distillation into ASR models.

Modules:

* :mod:`hieradist_lobes.data`: the built-in synthetic speech corpus, TIMIT and
  AISHELL-1 preparation (one manifest schema), and the SpeechBrain datasets.
* :mod:`hieradist_lobes.tokens`: label vocabularies.
* :mod:`hieradist_lobes.losses`: distillation losses and teacher strategies;
  the CIF model's losses and ACD / LRD.
* :mod:`hieradist_lobes.teacher_store`: teacher outputs (or PLM token
  features) in HDF5, by utterance ID; :mod:`hieradist_lobes.store_codecs`:
  what each kind of record holds and how it is written and read.
* :mod:`hieradist_lobes.teachers`: teacher inference into the store.
* :mod:`hieradist_lobes.models`: the two model classes, each with its one
  forward pass (training, teacher inference and inference all use it).
* :mod:`hieradist_lobes.plm`: pre-trained LM tokens (the CIF models' units),
  offline; :mod:`hieradist_lobes.plm_features`: their features (the
  HieraDist teacher) into the store.
* :mod:`hieradist_lobes.cif`: continuous integrate-and-fire, vectorised.
* :mod:`hieradist_lobes.conformer`: the Conformer encoder with 8× subsampling.
* :mod:`hieradist_lobes.cif_decoder`: the decoder over CIF outputs, beam search.
* :mod:`hieradist_lobes.lm`: the token LM for shallow fusion.
* :mod:`hieradist_lobes.inference`: :class:`~hieradist_lobes.inference.CIFASR`.
* :mod:`hieradist_lobes.brains`: Brain classes (CTC/attention, distillation,
  CIF, HieraDist, LM).
* :mod:`hieradist_lobes.hparams`: YAML overlays and range checks.
* :mod:`hieradist_lobes.export`: self-contained model folders;
  :mod:`hieradist_lobes.model_card`: their model card, config and example.
* :mod:`hieradist_lobes.files`: checksums, atomic folders, a process's lock.
* :mod:`hieradist_lobes.errors`: the base of the project's errors;
  :mod:`hieradist_lobes.cli`: what the command lines share.
* :mod:`hieradist_lobes.rnn`: the GRU of the built-in CRDNN and the attentional decoder's faster
  teacher-forced loop; :mod:`hieradist_lobes.crdnn`: SpeechBrain's CRDNN with
  its CNN blocks run channels-last.
* :mod:`hieradist_lobes.running_stats`: running statistics put back after a
  skipped batch.
* :mod:`hieradist_lobes.subwords`: SentencePiece units, trained once per
  training set; :mod:`hieradist_lobes.experiment_logs`: TensorBoard logging.
* :mod:`hieradist_lobes.segmentation`: cutting long recordings at pauses.
* :mod:`hieradist_lobes.streaming`: streaming CIF recognition (with
  :mod:`hieradist_lobes.features`, streamed filterbanks); :mod:`hieradist_lobes.onnx_export`
  and :mod:`hieradist_lobes.onnx_runtime`: ONNX export and a torch-free decoder;
  :mod:`hieradist_lobes.text`: label sequences to text.

The recipe scripts that drive them are in ``recipes/multi_teacher_kd/`` and
``recipes/cif_hieradist/``; the demo (``make demo``) is ``tools/demo.py``.
"""

__version__ = "0.3.0"
