"""The base of the project's own errors.

Example
-------
>>> from hieradist_lobes.hparams import HparamsError
>>> issubclass(HparamsError, ReportedError) and issubclass(HparamsError, ValueError)
True
"""

from __future__ import annotations


class ReportedError(Exception):
    """An error whose message is the whole report: what is wrong, where (the
    file, line, utterance or key) and what to do. A user's mistake (a YAML, a
    manifest, a corpus, a store, a model folder), or a run that diverged.
    Command lines print the message without a traceback
    (:func:`hieradist_lobes.cli.run_command`); anything else keeps its traceback."""
