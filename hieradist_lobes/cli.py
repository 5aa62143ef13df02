"""What the project's command lines share.

Example
-------
>>> import argparse
>>> parser = argparse.ArgumentParser()
>>> _ = parser.add_argument("--data_folder", type=path_argument)
>>> parser.parse_args(["--data_folder", "data/synth_small"]).data_folder
'data/synth_small'
"""

from __future__ import annotations

import argparse


def path_argument(text: str) -> str:
    """An argparse ``type`` for a file or folder: an empty value (as an unset
    shell variable gives) is refused, named like a missing path, instead of
    failing later with a raw ``TypeError`` or writing into the working folder.

    Raises
    ------
    argparse.ArgumentTypeError
        If ``text`` is empty or blank (argparse prints it with the option's name and exits 2).
    """
    if not text.strip():
        raise argparse.ArgumentTypeError("the path is empty (an unset shell variable?): give a file or folder")
    return text
