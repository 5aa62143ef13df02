"""SpeechBrain lobes and recipes for knowledge distillation into ASR models.

Sub-packages and modules:

* :mod:`hieradist_lobes.data`: the built-in synthetic speech corpus and the
  preparation of TIMIT and AISHELL-1, all to one manifest schema.
"""

__version__ = "0.1.0"
