"""The closed phone set shared by every corpus of this project.

All manifests label phones with the 39 folded TIMIT phones of Lee & Hon (1989),
the set SpeechBrain's and Kaldi's TIMIT recipes score with::

    aa ae ah aw ay b ch d dh dx eh er ey f g hh ih iy jh k
    l m n ng ow oy p r s sh sil t th uh uw v w y z

* TIMIT's 61 phones fold onto it with :data:`TIMIT_61_TO_39` (closures,
  pauses and ``h#`` become ``sil``; the glottal stop ``q`` is dropped).
* The built-in synthetic corpus maps eSpeak NG's IPA output onto it with
  :data:`IPA_TO_PHONES`: each accent's own realisation is transcribed (a
  Scottish ``car`` is ``k aa r``, a southern British one ``k aa``); centring
  diphthongs become vowel + ``ah``; the glottal stop is dropped as in TIMIT.

Example
-------
>>> ipa_to_phones(["w", "ˈɔː", "ɾ", "ɚ"])
['w', 'aa', 'dx', 'er']
>>> fold_timit(["h#", "q", "ix", "tcl", "t", "h#"])
['sil', 'ih', 'sil', 't', 'sil']
"""

from __future__ import annotations

import unicodedata
from typing import Dict, Iterable, List, Tuple

from hieradist_lobes.errors import ReportedError

PHONES_39: Tuple[str, ...] = (
    "aa", "ae", "ah", "aw", "ay", "b", "ch", "d", "dh", "dx", "eh", "er", "ey",
    "f", "g", "hh", "ih", "iy", "jh", "k", "l", "m", "n", "ng", "ow", "oy", "p",
    "r", "s", "sh", "sil", "t", "th", "uh", "uw", "v", "w", "y", "z",
)

TIMIT_61_TO_39: Dict[str, str] = {
    "aa": "aa", "ae": "ae", "ah": "ah", "ao": "aa", "aw": "aw", "ax": "ah",
    "ax-h": "ah", "axr": "er", "ay": "ay", "b": "b", "bcl": "sil", "ch": "ch",
    "d": "d", "dcl": "sil", "dh": "dh", "dx": "dx", "eh": "eh", "el": "l",
    "em": "m", "en": "n", "eng": "ng", "epi": "sil", "er": "er", "ey": "ey",
    "f": "f", "g": "g", "gcl": "sil", "h#": "sil", "hh": "hh", "hv": "hh",
    "ih": "ih", "ix": "ih", "iy": "iy", "jh": "jh", "k": "k", "kcl": "sil",
    "l": "l", "m": "m", "n": "n", "ng": "ng", "nx": "n", "ow": "ow", "oy": "oy",
    "p": "p", "pau": "sil", "pcl": "sil", "q": "", "r": "r", "s": "s",
    "sh": "sh", "t": "t", "tcl": "sil", "th": "th", "uh": "uh", "uw": "uw",
    "ux": "uw", "v": "v", "w": "w", "y": "y", "z": "z", "zh": "sh",
}

# eSpeak NG IPA phonemes (stress and length marks removed) -> phones.  Every
# phoneme eSpeak's English voices produce for the built-in vocabulary is here;
# an unknown one raises, so the phone set stays closed.
IPA_TO_PHONES: Dict[str, Tuple[str, ...]] = {
    # Consonants.
    "p": ("p",), "b": ("b",), "t": ("t",), "d": ("d",), "k": ("k",), "ɡ": ("g",),
    "g": ("g",), "f": ("f",), "v": ("v",), "θ": ("th",), "ð": ("dh",), "s": ("s",),
    "z": ("z",), "ʃ": ("sh",), "ʒ": ("sh",), "h": ("hh",), "x": ("hh",), "m": ("m",),
    "n": ("n",), "ŋ": ("ng",), "l": ("l",), "ɫ": ("l",), "ɹ": ("r",), "r": ("r",),
    "ɾ": ("dx",), "w": ("w",), "ʍ": ("w",), "j": ("y",), "tʃ": ("ch",),
    "dʒ": ("jh",), "ʔ": (), "əl": ("l",), "əm": ("m",), "ən": ("n",),
    # Monophthongs.
    "ɪ": ("ih",), "ᵻ": ("ih",), "i": ("iy",), "e": ("eh",), "ɛ": ("eh",),
    "æ": ("ae",), "a": ("aa",), "aa": ("aa",), "a:": ("aa",), "ɑ": ("aa",),
    "ɒ": ("aa",), "ɔ": ("aa",), "ʌ": ("ah",), "ə": ("ah",), "ɐ": ("ah",),
    "ʊ": ("uh",), "u": ("uw",), "ʉ": ("uw",), "o": ("ow",), "ɜ": ("er",),
    "ɚ": ("er",), "ɝ": ("er",),
    # Closing diphthongs.
    "eɪ": ("ey",), "ei": ("ey",), "eʲ": ("ey",), "aɪ": ("ay",), "əɪ": ("ay",),
    "aʊ": ("aw",), "æʊ": ("aw",), "ʌʊ": ("ow",), "ʌʉ": ("aw",), "ɔɪ": ("oy",),
    "oɪ": ("oy",), "oʊ": ("ow",), "əʊ": ("ow",), "əu": ("ow",),
    # Centring diphthongs and r-coloured vowels.
    "iə": ("iy", "ah"), "ɪə": ("ih", "ah"), "eə": ("eh", "ah"), "ɛə": ("eh", "ah"),
    "ʊə": ("uh", "ah"), "oə": ("ow", "ah"), "ɔə": ("aa", "ah"), "ɑə": ("aa", "ah"),
    "aɪə": ("ay", "ah"), "aɪɚ": ("ay", "er"), "aʊə": ("aw", "ah"),
    "ɑɹ": ("aa", "r"), "ɔɹ": ("aa", "r"), "ɛɹ": ("eh", "r"), "ɪɹ": ("ih", "r"),
    "ʊɹ": ("uh", "r"), "ʉɹ": ("uw", "r"), "ʌɹ": ("er",), "əɹ": ("er",),
}

# Marks that do not change the phone: stress, length, and combining diacritics
# such as the dental bridge of the Caribbean ``t̪``.
_STRESS_AND_LENGTH = {"ˈ", "ˌ", "ː", "ˑ"}


class UnknownPhoneError(ReportedError, ValueError):
    """An eSpeak phoneme has no entry in :data:`IPA_TO_PHONES`."""


def normalize_ipa(phoneme: str) -> str:
    """Strip stress, length and combining diacritics from an IPA phoneme.

    Example
    -------
    >>> normalize_ipa("ˈɑːɹ"), normalize_ipa("t̪")
    ('ɑɹ', 't')
    """
    kept = [
        char for char in unicodedata.normalize("NFD", phoneme)
        if char not in _STRESS_AND_LENGTH and not unicodedata.combining(char)
    ]
    return "".join(kept)


def ipa_to_phones(phonemes: Iterable[str]) -> List[str]:
    """Map eSpeak NG IPA phonemes to phones of :data:`PHONES_39`.

    Arguments
    ---------
    phonemes : iterable of str
        One eSpeak phoneme per item, as returned (per word) by
        :meth:`hieradist_lobes.data.espeak.Espeak.phonemize`.

    Returns
    -------
    list of str

    Raises
    ------
    UnknownPhoneError
        If a phoneme has no mapping.
    """
    phones: List[str] = []
    for phoneme in phonemes:
        key = normalize_ipa(phoneme)
        if key == "":
            continue
        if key not in IPA_TO_PHONES:
            # A stressed long variant such as "a:" keeps its ASCII colon.
            raise UnknownPhoneError(f"eSpeak phoneme {phoneme!r} (normalised {key!r}) has no phone mapping")
        phones.extend(IPA_TO_PHONES[key])
    return phones


def fold_timit(phones: Iterable[str]) -> List[str]:
    """Fold TIMIT's 61 phones onto :data:`PHONES_39`, dropping ``q``.

    Raises
    ------
    KeyError
        If a phone is not one of TIMIT's 61.
    """
    folded = []
    for phone in phones:
        if phone not in TIMIT_61_TO_39:
            raise KeyError(f"{phone!r} is not a TIMIT phone")
        if TIMIT_61_TO_39[phone]:
            folded.append(TIMIT_61_TO_39[phone])
    return folded
