import pytest

from hieradist_lobes.data.phones import (
    IPA_TO_PHONES,
    PHONES_39,
    TIMIT_61_TO_39,
    UnknownPhoneError,
    fold_timit,
    ipa_to_phones,
    normalize_ipa,
)


def test_phone_set_is_the_39_timit_phones():
    assert len(PHONES_39) == 39 == len(set(PHONES_39))


def test_every_mapping_lands_in_the_phone_set():
    for ipa, phones in IPA_TO_PHONES.items():
        assert set(phones) <= set(PHONES_39), ipa
    assert set(TIMIT_61_TO_39.values()) - {""} == set(PHONES_39)
    assert len(TIMIT_61_TO_39) == 61


def test_stress_length_and_diacritics_are_ignored():
    assert normalize_ipa("ˈɔː") == "ɔ"
    assert normalize_ipa("ˌɑːɹ") == "ɑɹ"
    assert normalize_ipa("t̪") == "t"
    assert ipa_to_phones(["k", "ˈɑːɹ"]) == ["k", "aa", "r"]
    assert ipa_to_phones(["f", "ˈaɪə"]) == ["f", "ay", "ah"]


def test_glottal_stop_is_dropped_like_timit_q():
    assert ipa_to_phones(["b", "ˈʌ", "ʔ", "n̩"]) == ["b", "ah", "n"]
    assert fold_timit(["q", "ah"]) == ["ah"]


def test_unknown_phoneme_is_an_error_naming_it():
    with pytest.raises(UnknownPhoneError, match="ǃ"):
        ipa_to_phones(["k", "ǃ"])
    with pytest.raises(KeyError, match="xx"):
        fold_timit(["aa", "xx"])


def test_timit_folding():
    assert fold_timit(["h#", "sh", "ix", "hv", "eh", "dcl", "jh", "axr", "h#"]) == [
        "sil", "sh", "ih", "hh", "eh", "sil", "jh", "er", "sil",
    ]
