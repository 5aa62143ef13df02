"""eSpeak NG speech synthesis and phonemisation through ctypes.

The library and its voice data come from the ``espeakng-loader`` wheel, so no
system package and no network are needed.  eSpeak NG keeps global state, so
there is one :class:`Espeak` per process (use a process pool, not threads, to
synthesise in parallel).

Example
-------
>>> engine = Espeak.instance()
>>> audio = engine.synthesize("hello world", voice="en-us", variant="m3")
>>> audio.dtype.name, audio.ndim, engine.sample_rate
('float32', 1, 22050)
>>> [(word, round(start, 2), round(end, 2)) for word, start, end in engine.word_times("hello world")]
[('hello', 0.01, 0.3), ('world', 0.31, 0.75)]
>>> engine.phonemize("hello world", voice="en-us")
[['h', 'ə', 'l', 'ˈoʊ'], ['w', 'ˈɜː', 'l', 'd']]
"""

from __future__ import annotations

import ctypes
import os
import threading
from typing import List, NamedTuple, Optional, Tuple

import numpy as np

from hieradist_lobes.errors import ReportedError

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE = 1
_PARAM_VOLUME = 2
_PARAM_PITCH = 3
_PARAM_RANGE = 4
# espeak_TextToPhonemes phoneme mode: bit 1 selects IPA, bits 8-23 hold the
# character written between the phonemes of a word.
_PHONEME_SEPARATOR = "_"
_PHONEME_MODE_IPA = 2 | (ord(_PHONEME_SEPARATOR) << 8)

_INITIALIZE_PHONEME_EVENTS = 1  # espeak_Initialize option: phoneme events besides word events (no change to audio)
_EVENT_END_OF_LIST, _EVENT_WORD, _EVENT_END, _EVENT_PHONEME = 0, 1, 5, 7


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """eSpeak NG's ``espeak_EVENT`` (speak_lib.h)."""

    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _EventId)]


class SynthesisEvent(NamedTuple):
    """A word, phoneme or end event of a synthesis: where it is in the text (1-based character) and in the
    audio (samples at the engine's rate)."""

    kind: int
    text_position: int
    length: int
    sample: int
    phoneme: str


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


class EspeakError(ReportedError, RuntimeError):
    """Raised when eSpeak NG cannot be loaded or rejects a request."""


class Espeak:
    """A handle on the process-wide eSpeak NG engine.

    Use :meth:`instance` rather than the constructor: the engine can be
    initialised only once per process.
    """

    _instance: Optional["Espeak"] = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as error:  # pragma: no cover - dependency of the package
            raise EspeakError("the espeakng-loader package is required: pip install espeakng-loader") from error
        self.data_path = espeakng_loader.get_data_path()
        self._lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self._lib.espeak_Initialize.restype = ctypes.c_int
        self._lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        self._lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int]
        self._lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        self.sample_rate = self._lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, self.data_path.encode(),
                                                       _INITIALIZE_PHONEME_EVENTS)
        if self.sample_rate <= 0:
            raise EspeakError(f"espeak_Initialize failed with data path {self.data_path}")
        self._chunks: List[np.ndarray] = []
        self.events: List[SynthesisEvent] = []  # of the last synthesis
        # Keep a reference to the callback so that it is not garbage collected.
        self._callback = _CALLBACK(self._collect)
        self._lib.espeak_SetSynthCallback(self._callback)

    @classmethod
    def instance(cls) -> "Espeak":
        """Return the engine of this process, initialising it on first use."""
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def _collect(self, samples, count, events) -> int:
        if samples and count > 0:
            self._chunks.append(np.ctypeslib.as_array(samples, shape=(count,)).copy())
        index = 0
        while events and events[index].type != _EVENT_END_OF_LIST:
            event = events[index]
            if event.type in (_EVENT_WORD, _EVENT_PHONEME, _EVENT_END):
                phoneme = bytes(event.id.string).split(b"\0")[0].decode("utf-8", "replace") \
                    if event.type == _EVENT_PHONEME else ""
                self.events.append(SynthesisEvent(event.type, event.text_position, event.length, event.sample,
                                                  phoneme))
            index += 1
        return 0

    def seed(self, value: int) -> None:
        """Seed eSpeak's noise generator (used by breathy voices).

        It is otherwise seeded from the clock.  Other state, such as the pitch
        flutter phase, still carries over between syntheses in one process:
        for byte-identical audio, synthesise the same sequence in a fresh
        process after seeding.
        """
        self._lib.espeak_ng_SetRandSeed(int(value))

    def available_variants(self) -> List[str]:
        """Names of the voice variants shipped with the data (``m1``, ``f2``, ...)."""
        return sorted(os.listdir(os.path.join(self.data_path, "voices", "!v")))

    def _set_voice(self, voice: str, variant: Optional[str]) -> None:
        name = voice
        if variant:
            # eSpeak silently ignores an unknown variant: check it ourselves.
            if not os.path.exists(os.path.join(self.data_path, "voices", "!v", variant)):
                raise EspeakError(f"unknown eSpeak NG voice variant {variant!r}")
            name = f"{voice}+{variant}"
        if self._lib.espeak_SetVoiceByName(name.encode()) != 0:
            raise EspeakError(f"unknown eSpeak NG voice {voice!r}")

    def synthesize(
        self,
        text: str,
        voice: str = "en-us",
        variant: Optional[str] = None,
        rate: int = 175,
        pitch: int = 50,
        pitch_range: int = 50,
    ) -> np.ndarray:
        """Speak ``text`` and return the waveform.

        Arguments
        ---------
        text : str
            Text to speak.
        voice : str
            eSpeak NG language voice, e.g. ``en-us`` or ``en-gb-scotland``.
        variant : str, optional
            Voice variant (timbre), e.g. ``m3`` or ``f2``.
        rate : int
            Speaking rate in words per minute (80 to 450).
        pitch, pitch_range : int
            Base pitch and pitch range, 0 to 100.

        Returns
        -------
        numpy.ndarray
            Float32 samples in [-1, 1] at :attr:`sample_rate`.
        """
        self._set_voice(voice, variant)
        for parameter, value in ((_PARAM_RATE, rate), (_PARAM_PITCH, pitch), (_PARAM_RANGE, pitch_range)):
            self._lib.espeak_SetParameter(parameter, int(value), 0)
        self._chunks, self.events = [], []
        encoded = text.encode("utf-8")
        status = self._lib.espeak_Synth(encoded, len(encoded) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        self._lib.espeak_Synchronize()
        if status != 0:
            raise EspeakError(f"espeak_Synth failed ({status}) for text {text!r}")
        if not self._chunks:
            return np.zeros(0, dtype=np.float32)
        return (np.concatenate(self._chunks).astype(np.float32) / 32768.0).astype(np.float32)

    def word_times(self, text: str, **voice) -> List[Tuple[str, Optional[float], Optional[float]]]:
        """Speak ``text`` (``voice``: :meth:`synthesize`'s options) and return each word of it with its start
        and end in the audio (seconds): :func:`word_times_of` the synthesis's events."""
        self.synthesize(text, **voice)
        return word_times_of(text, self.events, self.sample_rate)

    def phonemize(self, text: str, voice: str = "en-us") -> List[List[str]]:
        """Return the IPA phonemes eSpeak NG speaks for ``text``, per word.

        Stress marks are kept on the phoneme they precede; see
        :func:`hieradist_lobes.data.phones.ipa_to_phones` to map them to the
        closed phone set.
        """
        self._set_voice(voice, None)
        pointer = ctypes.c_char_p(text.encode("utf-8"))
        words: List[List[str]] = []
        while pointer.value:
            clause = self._lib.espeak_TextToPhonemes(ctypes.byref(pointer), _CHARS_UTF8, _PHONEME_MODE_IPA)
            for word in clause.decode("utf-8").split():
                words.append([p for p in word.split(_PHONEME_SEPARATOR) if p])
        return words


def _is_pause(event: SynthesisEvent) -> bool:
    return event.kind == _EVENT_PHONEME and event.phoneme.startswith("_")


def word_times_of(text: str, events: List[SynthesisEvent], sample_rate: int
                  ) -> List[Tuple[str, Optional[float], Optional[float]]]:
    """Each whitespace-separated word of ``text`` with the start and end (seconds) of its sounds.

    A word starts at its first phoneme (eSpeak's word event can come a little before it) and ends where
    the next word's event, a pause or the end of the synthesis comes (so that a glottal stop eSpeak puts
    before the next word's vowel belongs to neither). A word eSpeak gave no phoneme has ``None`` times.

    Example
    -------
    >>> events = [SynthesisEvent(1, 1, 2, 0, ""), SynthesisEvent(7, 1, 0, 100, "h"),
    ...           SynthesisEvent(7, 1, 0, 300, "aI"), SynthesisEvent(1, 4, 3, 500, ""),
    ...           SynthesisEvent(7, 4, 0, 560, "j"), SynthesisEvent(7, 7, 0, 900, "_:"),
    ...           SynthesisEvent(5, 7, 0, 1000, "")]
    >>> word_times_of("hi you", events, 1000)
    [('hi', 0.1, 0.5), ('you', 0.56, 0.9)]
    """
    words, starts, position = [], [], 0
    for word in text.split():
        position = text.index(word, position)
        words.append(word)
        starts.append(position + 1)  # eSpeak counts characters from 1
        position += len(word)
    index_of = {start: index for index, start in enumerate(starts)}
    times: List[List[Optional[int]]] = [[None, None] for _ in words]
    current: Optional[int] = None  # the word whose sounds are playing

    def end_current(sample: int) -> None:
        if current is not None and times[current][1] is None:
            times[current][1] = sample

    for event in events:
        owner = index_of.get(event.text_position)
        if event.kind == _EVENT_WORD:
            if owner != current:
                end_current(event.sample)
                current = None
        elif event.kind == _EVENT_PHONEME and not _is_pause(event):
            if owner is None or owner == current:
                continue  # a sound of the word playing
            end_current(event.sample)
            if times[owner][0] is None:
                times[owner][0] = event.sample
            current = owner
        else:  # a pause, or the end
            end_current(event.sample)
            current = None
    return [(word, None if start is None else start / sample_rate, None if end is None else end / sample_rate)
            for word, (start, end) in zip(words, times)]
