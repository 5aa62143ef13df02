import numpy as np
import pytest

from hieradist_lobes.data.espeak import Espeak, EspeakError
from hieradist_lobes.data.phones import PHONES_39, ipa_to_phones
from hieradist_lobes.data.sentences import SentenceGenerator
from hieradist_lobes.data.synth import ACCENTS, SPLIT_VARIANTS


def test_synthesis_gives_speech_length_audio():
    engine = Espeak.instance()
    audio = engine.synthesize("the small dog ran across the bridge", voice="en-us", variant="m3")
    seconds = audio.size / engine.sample_rate
    assert 1.0 < seconds < 5.0
    assert 0.05 < np.abs(audio).max() <= 1.0


def test_rate_changes_duration():
    engine = Espeak.instance()
    slow = engine.synthesize("the small dog ran across the bridge", rate=120).size
    fast = engine.synthesize("the small dog ran across the bridge", rate=300).size
    assert fast < 0.7 * slow


def test_variants_change_the_voice():
    engine = Espeak.instance()
    male = engine.synthesize("hello there", variant="m1")
    female = engine.synthesize("hello there", variant="f2")
    assert male.shape != female.shape or not np.allclose(male, female)


def test_unknown_variant_is_an_error():
    with pytest.raises(EspeakError, match="nosuchvoice"):
        Espeak.instance().synthesize("hello", variant="nosuchvoice")


def test_every_split_variant_exists():
    available = set(Espeak.instance().available_variants())
    for variants in SPLIT_VARIANTS.values():
        assert set(variants) <= available


def test_phone_set_is_closed_for_every_accent_and_word():
    """Every word of the grammar, in every accent, maps into PHONES_39."""
    engine = Espeak.instance()
    text = ". ".join(sorted(SentenceGenerator().vocabulary())).lower()
    for accent in ACCENTS:
        words = engine.phonemize(text, voice=accent)
        assert len(words) > 300
        phones = [phone for word in words for phone in ipa_to_phones(word)]
        assert set(phones) <= set(PHONES_39), accent
