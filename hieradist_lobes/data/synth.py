"""The built-in synthetic speech corpus.

Real audio from a real synthesiser (eSpeak NG, shipped in the
``espeakng-loader`` wheel), so that every recipe, test and demo of this
project runs on a fresh machine without downloads::

    python -m hieradist_lobes.data.synth --output_folder data/synth --size small

What it makes
-------------
* **Speakers**: an accent (eight English eSpeak voices: American, New York,
  British, Received Pronunciation, Scottish, Caribbean, Lancaster, West
  Midlands) × a voice variant (timbre: ``m1``-``m8``, ``f1``-``f5`` and named
  variants) × a speaker's own pitch, pitch range and speaking rate.  The
  variants of the train, valid and test splits are disjoint (see
  :data:`SPLIT_VARIANTS`), so test voices are never heard in training, like
  TIMIT's speaker-independent split.
* **Text**: grammatical English sentences over about 500 words from
  :mod:`hieradist_lobes.data.sentences`; no sentence appears twice in the
  corpus, so no test sentence is in train.
* **Labels**: words (``wrd``), characters (``char``) and phones (``phn``) of
  the closed set :data:`~hieradist_lobes.data.phones.PHONES_39`, from the
  synthesiser's own phonemiser for the accent that speaks.
* **Audio**: 16 kHz mono 16-bit WAV, with a random gain, a little leading and
  trailing silence and white noise at 30-50 dB SNR.
* **Manifests**: ``train.csv``, ``valid.csv``, ``test.csv`` with the schema of
  :mod:`hieradist_lobes.data.manifest`, and ``prepare_options.json``.
* **LM text**: ``lm_text.txt``, 100 000 further sentences of the grammar that
  are in no split (:func:`write_lm_text`), for the token LM.

Sizes (:data:`SIZES`): ``tiny`` 60 utterances (seconds to make, for tests),
``small`` 2 000 (the demo), ``medium`` 10 000.  Everything is deterministic for
a seed; a second call with the same options finds the manifests and does
nothing.

Example
-------
>>> import tempfile
>>> folder = tempfile.mkdtemp()
>>> manifests = prepare_synth(folder, size="tiny", num_workers=1)
>>> sorted(manifests)
['test', 'train', 'valid']
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import random
import re
import subprocess
import sys
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import soundfile
from scipy.signal import resample_poly

from hieradist_lobes.cli import path_argument, run_command
from hieradist_lobes.data.common import (already_prepared, finish_preparation, manifest_paths, start_preparation,
                                         write_prepared_manifest)
from hieradist_lobes.data.manifest import MANIFEST_FIELDS, SPLITS, chars_of_words, read_manifest
from hieradist_lobes.data.espeak import Espeak, word_times_of
from hieradist_lobes.data.phones import ipa_to_phones
from hieradist_lobes.data.sentences import unique_sentences
from hieradist_lobes.files import write_json, write_text

logger = logging.getLogger(__name__)

_MODULE = "hieradist_lobes.data.synth"
_PRELOAD = ("numpy", "soundfile", "scipy.signal", "hieradist_lobes.data.common", "hieradist_lobes.data.espeak",
            "hieradist_lobes.data.phones", "hieradist_lobes.data.sentences", "hieradist_lobes.files")
SAMPLE_RATE = 16000
# Bump when a change alters the audio or labels, so that old corpora are remade.
CORPUS_VERSION = 2
# Every utterance's words with their start and end in its wav file (seconds), from the synthesiser's
# events: utterance ID -> [[word, start, end], ...]. A corpus made without it gets it at the next preparation.
WORD_TIMES_FILE = "word_times.json"
WORD_TIMES_KEY = "word_times"
# The LM text beside the corpus (write_lm_text): sentences of the same grammar in no split.
LM_TEXT_FILE = "lm_text.txt"
LM_TEXT_SENTENCES = 100_000

ACCENTS: Tuple[str, ...] = (
    "en-us", "en-us-nyc", "en", "en-gb-x-rp", "en-gb-scotland", "en-029",
    "en-gb-x-gbclan", "en-gb-x-gbcwmd",
)

# Voice variants (timbres) per split; disjoint, so test voices are unseen.
SPLIT_VARIANTS: Dict[str, Tuple[str, ...]] = {
    "train": (
        "m1", "m2", "m4", "m6", "m7", "m8", "f1", "f3", "f5", "Andy", "adam",
        "Gene", "Lee", "Michael", "paul", "rob", "robert", "steph", "linda",
        "ed", "david", "travis", "klatt", "klatt3",
    ),
    # Not "Alicia": its strong breath noise made it an outlier that no
    # training voice prepares for (about 45 % PER against 1-11 % for the others).
    "valid": ("m5", "f4", "max", "aunty"),
    "test": ("m3", "f2", "john", "Annie"),
}


@dataclass(frozen=True)
class SizeSpec:
    """Number of speakers per split and utterances per speaker."""

    train_speakers: int
    valid_speakers: int
    test_speakers: int
    utterances_per_speaker: int

    def speakers(self, split: str) -> int:
        return getattr(self, f"{split}_speakers")

    def total(self) -> int:
        return (self.train_speakers + self.valid_speakers + self.test_speakers) * self.utterances_per_speaker


SIZES: Dict[str, SizeSpec] = {
    "tiny": SizeSpec(6, 2, 2, 6),
    "small": SizeSpec(80, 10, 10, 20),
    "medium": SizeSpec(200, 25, 25, 40),
}


@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker: an accent, a timbre and prosody settings."""

    spk_id: str
    accent: str
    variant: str
    pitch: int
    pitch_range: int
    rate: int


@dataclass(frozen=True)
class UtteranceJob:
    """Everything a worker needs to make one utterance."""

    utt_id: str
    text: str
    speaker: Speaker
    rate: int
    wav_path: str
    noise_seed: int


def make_speakers(split: str, count: int, rng: random.Random) -> List[Speaker]:
    """Draw ``count`` speakers of ``split`` (accent × variant, then prosody).

    Example
    -------
    >>> speakers = make_speakers("test", 3, random.Random(0))
    >>> all(s.variant in SPLIT_VARIANTS["test"] for s in speakers)
    True
    """
    combos = [(variant, accent) for variant in SPLIT_VARIANTS[split] for accent in ACCENTS]
    rng.shuffle(combos)
    speakers = []
    for index in range(count):
        variant, accent = combos[index % len(combos)]
        copy = index // len(combos)
        spk_id = re.sub(r"[^A-Za-z0-9-]", "", f"{variant}-{accent}") + f"-{copy}"
        speakers.append(
            Speaker(
                spk_id=spk_id,
                accent=accent,
                variant=variant,
                pitch=rng.randint(25, 75),
                pitch_range=rng.randint(25, 80),
                rate=rng.randint(145, 195),
            )
        )
    return speakers


def plan_corpus(output_folder: str, size: str, seed: int) -> Dict[str, List[UtteranceJob]]:
    """Decide every utterance of the corpus (text, speaker, file) without synthesis."""
    spec = SIZES[size]
    rng = random.Random(seed)
    taken: set = set()
    plan: Dict[str, List[UtteranceJob]] = {}
    for split_index, split in enumerate(SPLITS):
        speakers = make_speakers(split, spec.speakers(split), rng)
        count = len(speakers) * spec.utterances_per_speaker
        sentences = unique_sentences(count, seed=seed * 1000 + split_index, exclude=taken)
        taken.update(sentences)
        jobs = []
        for index, text in enumerate(sentences):
            speaker = speakers[index // spec.utterances_per_speaker]
            utt_id = f"{speaker.spk_id}_{index % spec.utterances_per_speaker:03d}"
            jobs.append(
                UtteranceJob(
                    utt_id=utt_id,
                    text=text,
                    speaker=speaker,
                    rate=speaker.rate + rng.randint(-8, 8),
                    wav_path=os.path.join(output_folder, "wav", split, speaker.spk_id, f"{utt_id}.wav"),
                    noise_seed=rng.randrange(2**31),
                )
            )
        plan[split] = jobs
    return plan


def _synthesize(job: UtteranceJob) -> np.ndarray:
    engine = Espeak.instance()
    speaker = job.speaker
    audio = engine.synthesize(
        job.text.lower(), voice=speaker.accent, variant=speaker.variant, rate=job.rate,
        pitch=speaker.pitch, pitch_range=speaker.pitch_range,
    )
    if audio.size == 0:
        raise RuntimeError(f"eSpeak NG produced no audio for utterance {job.utt_id} ({job.text!r})")
    return audio


def _silences(job: UtteranceJob) -> Tuple[np.random.Generator, int, int]:
    """The utterance's noise generator and the samples of silence before and after the speech, its first
    two draws (the generator goes on to the gain and the noise)."""
    rng = np.random.default_rng(job.noise_seed)
    lead, trail = (int(rng.uniform(0.05, 0.25) * SAMPLE_RATE) for _ in range(2))
    return rng, lead, trail


def _word_times(job: UtteranceJob) -> List[List[object]]:
    """The words of the synthesis just made for ``job``, each with its start and end in the written file
    (seconds: the synthesiser's times, which resampling keeps, after the leading silence)."""
    engine = Espeak.instance()
    offset = _silences(job)[1] / SAMPLE_RATE
    spoken = word_times_of(job.text.lower(), engine.events, engine.sample_rate)
    return [[word, None if start is None else round(start + offset, 4), None if end is None else round(end + offset, 4)]
            for word, (_, start, end) in zip(job.text.split(), spoken)]


def render_utterance(job: UtteranceJob) -> Dict[str, object]:
    """Synthesise, post-process and write one utterance; return its manifest row (and its word times)."""
    engine = Espeak.instance()
    speaker = job.speaker
    audio = _synthesize(job)
    word_times = _word_times(job)
    divisor = np.gcd(SAMPLE_RATE, engine.sample_rate)
    audio = resample_poly(audio, SAMPLE_RATE // divisor, engine.sample_rate // divisor)

    rng, lead, trail = _silences(job)
    audio = np.concatenate([np.zeros(lead), audio, np.zeros(trail)])
    audio *= rng.uniform(0.3, 0.9) / max(np.abs(audio).max(), 1e-6)
    signal_power = np.mean(audio**2)
    snr_db = rng.uniform(30.0, 50.0)
    audio += rng.normal(0.0, np.sqrt(signal_power / 10 ** (snr_db / 10)), size=audio.shape)
    audio = np.clip(audio, -1.0, 1.0).astype(np.float32)

    os.makedirs(os.path.dirname(job.wav_path), exist_ok=True)
    temporary = job.wav_path + ".tmp.wav"
    soundfile.write(temporary, audio, SAMPLE_RATE, subtype="PCM_16")
    os.replace(temporary, job.wav_path)

    phones = [phone for word in engine.phonemize(job.text.lower(), voice=speaker.accent) for phone in ipa_to_phones(word)]
    return {
        "ID": job.utt_id,
        "duration": len(audio) / SAMPLE_RATE,
        "wav": os.path.abspath(job.wav_path),
        "spk_id": speaker.spk_id,
        "phn": " ".join(phones),
        "wrd": job.text,
        "char": chars_of_words(job.text),
        WORD_TIMES_KEY: word_times,
    }


def render_speaker(jobs: List[UtteranceJob]) -> List[Dict[str, object]]:
    """Render one speaker's utterances in order (see :func:`prepare_synth`)."""
    Espeak.instance().seed(jobs[0].noise_seed)
    return [render_utterance(job) for job in jobs]


def time_speaker(jobs: List[UtteranceJob]) -> Dict[str, List[List[object]]]:
    """The word times of one speaker's utterances, synthesised again as :func:`render_speaker` did (for a
    corpus made before word times were recorded; the audio is not written again)."""
    Espeak.instance().seed(jobs[0].noise_seed)
    times = {}
    for job in jobs:
        _synthesize(job)
        times[job.utt_id] = _word_times(job)
    return times


def read_word_times(folder: str) -> Dict[str, List[Tuple[str, Optional[float], Optional[float]]]]:
    """The corpus's word times: utterance ID -> [(word, start, end)] in seconds of its wav file
    (``None`` for a word the synthesiser gave no sound)."""
    with open(os.path.join(folder, WORD_TIMES_FILE), encoding="utf-8") as handle:
        return {utt: [tuple(entry) for entry in words] for utt, words in json.load(handle).items()}


def _options(size: str, seed: int) -> Dict[str, object]:
    return {"corpus": "synth", "corpus_version": CORPUS_VERSION, "size": size, "seed": seed, "sample_rate": SAMPLE_RATE}


def prepare_synth(
    output_folder: str,
    size: str = "small",
    seed: int = 1234,
    num_workers: Optional[int] = None,
    progress: bool = True,
) -> Dict[str, str]:
    """Make the synthetic corpus in ``output_folder`` unless it already exists.

    Arguments
    ---------
    output_folder : str
        Where the audio and manifests go.
    size : str
        One of :data:`SIZES`.
    seed : int
        Seed of the text, speakers and noise.
    num_workers : int, optional
        Processes for synthesis (default: all cores).
    progress : bool
        Show a progress bar.

    Returns
    -------
    dict
        Split name -> manifest path.
    """
    if size not in SIZES:
        raise ValueError(f"unknown corpus size {size!r}; choose one of {', '.join(SIZES)}")
    output_folder = os.path.abspath(output_folder)
    manifests = manifest_paths(output_folder)
    options = _options(size, seed)
    in_synth_process = getattr(getattr(sys.modules.get("__main__"), "__spec__", None), "name", None) == _MODULE
    if already_prepared(output_folder, options):
        if not os.path.isfile(os.path.join(output_folder, WORD_TIMES_FILE)):  # made before word times were kept
            if in_synth_process:
                _add_word_times(output_folder, size, seed, num_workers, progress)
            else:
                _run_in_synth_process(output_folder, size, seed, num_workers, progress, options)
        logger.info("synthetic corpus in %s is up to date, skipping", output_folder)
        write_lm_text(output_folder, seed)
        return manifests

    start_preparation(output_folder, options)
    if not in_synth_process:
        _run_in_synth_process(output_folder, size, seed, num_workers, progress, options)
        write_lm_text(output_folder, seed)
        return manifests
    _render(output_folder, size, seed, num_workers, progress)
    finish_preparation(output_folder, options)
    write_lm_text(output_folder, seed)
    return manifests


def _run_in_synth_process(output_folder: str, size: str, seed: int, num_workers: Optional[int], progress: bool,
                          options: Dict[str, object]) -> None:
    """Prepare in a separate ``python -m hieradist_lobes.data.synth``: worker processes re-import the caller's
    main module (a recipe that imports torch and SpeechBrain: seconds per process), and the fresh process per
    speaker (see :func:`_render`) then starts in milliseconds."""
    command = [sys.executable, "-m", _MODULE, "--output_folder", output_folder, "--size", size, "--seed", str(seed)]
    if num_workers:
        command += ["--num_workers", str(num_workers)]
    if not progress:
        command.append("--quiet")
    completed = subprocess.run(command)
    if (completed.returncode != 0 or not already_prepared(output_folder, options)
            or not os.path.isfile(os.path.join(output_folder, WORD_TIMES_FILE))):
        raise RuntimeError(f"synthesising the {size} corpus in {output_folder} failed "
                           f"(exit code {completed.returncode}); see the messages above")


def write_lm_text(output_folder: str, seed: int = 1234, sentences: int = LM_TEXT_SENTENCES) -> str:
    """The corpus's LM text: ``sentences`` further sentences of its grammar,
    none of them in any split, one per line in ``lm_text.txt`` (written once;
    a second call with the same options does nothing).

    A real LM is trained on far more text than the transcribed audio
    (LibriSpeech's LM corpus has about 800 million words against 10 million in
    its transcripts). An LM trained on the training transcripts only counts
    the decoder's own prior twice in shallow fusion; this text is what the
    built-in corpus offers in their place (``lm_train_text`` of
    ``hparams/synth/cif.yaml``).

    Returns
    -------
    str
        The text file's path.
    """
    path = os.path.join(output_folder, LM_TEXT_FILE)
    options = {"seed": seed, "sentences": sentences, "grammar_version": CORPUS_VERSION}
    marker = os.path.join(output_folder, LM_TEXT_FILE + ".json")
    if os.path.isfile(path) and os.path.isfile(marker):
        with open(marker, encoding="utf-8") as handle:
            if json.load(handle) == options:
                return path
    corpus = {row["wrd"] for split_path in manifest_paths(output_folder).values()
              for row in read_manifest(split_path, ["ID", "wrd"])}
    text = unique_sentences(sentences, seed=seed * 1000 + len(SPLITS), exclude=corpus)
    write_text(path, "\n".join(text) + "\n")
    write_json(marker, options)
    logger.info("wrote %d LM sentences, none in the corpus, to %s", sentences, path)
    return path


def _speaker_batches(plan: Dict[str, List[UtteranceJob]]) -> List[List[UtteranceJob]]:
    """Each speaker's utterances, in order. eSpeak NG carries state (e.g. its pitch flutter phase) from one
    synthesis to the next, so each speaker is rendered, in order, in a fresh process: the audio then depends
    on the seed only, not on scheduling."""
    speaker_batches: List[List[UtteranceJob]] = []
    for split in SPLITS:
        for job in plan[split]:
            if not speaker_batches or speaker_batches[-1][0].speaker != job.speaker:
                speaker_batches.append([])
            speaker_batches[-1].append(job)
    return speaker_batches


def _fresh_process_per_speaker(num_workers: Optional[int], speakers: int):
    """A pool whose processes each render one speaker. Children fork from a server that already imported
    this module's dependencies, so a fresh process per speaker costs milliseconds. Not the module itself: each
    child runs it as its main module (it is the one run with -m), and runpy warned once per child when it
    found it imported."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(_PRELOAD))
    return context.Pool(min(num_workers or os.cpu_count() or 1, speakers), maxtasksperchild=1)


def _add_word_times(output_folder: str, size: str, seed: int, num_workers: Optional[int], progress: bool) -> None:
    """The word times of a corpus made before they were kept: each utterance synthesised again, as it was."""
    from tqdm import tqdm

    speaker_batches = _speaker_batches(plan_corpus(output_folder, size, seed))
    times: Dict[str, List[List[object]]] = {}
    total = sum(len(batch) for batch in speaker_batches)
    with tqdm(total=total, desc=f"word times of the {size} corpus", unit="utt", disable=not progress) as bar:
        with _fresh_process_per_speaker(num_workers, len(speaker_batches)) as pool:
            for batch_times in pool.imap(time_speaker, speaker_batches):
                times.update(batch_times)
                bar.update(len(batch_times))
    write_json(os.path.join(output_folder, WORD_TIMES_FILE), times)


def _render(output_folder: str, size: str, seed: int, num_workers: Optional[int], progress: bool) -> None:
    """Synthesise every utterance and write the manifests and the word times."""
    plan = plan_corpus(output_folder, size, seed)
    speaker_batches = _speaker_batches(plan)
    from tqdm import tqdm

    total = sum(len(batch) for batch in speaker_batches)
    rows: List[Dict[str, object]] = []
    with tqdm(total=total, desc=f"synthesising {size} corpus", unit="utt", disable=not progress) as bar:
        with _fresh_process_per_speaker(num_workers, len(speaker_batches)) as pool:
            for batch_rows in pool.imap(render_speaker, speaker_batches):
                rows.extend(batch_rows)
                bar.update(len(batch_rows))

    write_json(os.path.join(output_folder, WORD_TIMES_FILE), {row["ID"]: row.pop(WORD_TIMES_KEY) for row in rows})
    start = 0
    manifests = manifest_paths(output_folder)
    for split in SPLITS:
        count = len(plan[split])
        write_prepared_manifest(output_folder, manifests[split], rows[start:start + count], MANIFEST_FIELDS)
        start += count
    hours = sum(float(row["duration"]) for row in rows) / 3600
    logger.info("wrote %d utterances (%.2f h) to %s", len(rows), hours, output_folder)


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_folder", required=True, type=path_argument, help="where the corpus goes")
    parser.add_argument("--size", default="small", choices=sorted(SIZES), help="corpus size (default: small)")
    parser.add_argument("--seed", type=int, default=1234, help="random seed (default: 1234)")
    parser.add_argument("--num_workers", type=int, default=None, help="synthesis processes (default: all cores)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    manifests = prepare_synth(args.output_folder, size=args.size, seed=args.seed, num_workers=args.num_workers,
                              progress=not args.quiet)
    for split, path in manifests.items():
        print(f"{split}: {path} ({len(read_manifest(path))} utterances)")


if __name__ == "__main__":
    run_command(main)  # a user's mistake ends with its message, not a traceback
