import random

import pytest

from hieradist_lobes.data.sentences import SentenceGenerator, unique_sentences


def test_same_seed_same_sentences():
    assert unique_sentences(50, seed=7) == unique_sentences(50, seed=7)
    assert unique_sentences(50, seed=7) != unique_sentences(50, seed=8)


def test_sentences_use_the_closed_vocabulary():
    generator = SentenceGenerator()
    vocabulary = generator.vocabulary()
    assert 300 <= len(vocabulary) <= 700
    rng = random.Random(0)
    used = set()
    for _ in range(2000):
        words = generator.sentence(rng).split()
        assert 2 <= len(words) <= generator.max_words
        assert set(words) <= vocabulary
        used.update(words)
    # The grammar actually reaches most of its vocabulary.
    assert len(used) > 0.8 * len(vocabulary)


def test_articles_agree_with_the_next_word():
    rng = random.Random(1)
    generator = SentenceGenerator()
    for _ in range(3000):
        words = generator.sentence(rng).split()
        for article, following in zip(words, words[1:]):
            if article == "A":
                assert following[0] not in "AEIOU", words
            if article == "AN":
                assert following[0] in "AEIOU", words


def test_excluded_sentences_never_come_back():
    train = unique_sentences(500, seed=1)
    test = unique_sentences(100, seed=2, exclude=set(train))
    assert len(set(train)) == 500 and len(set(test)) == 100
    assert not set(train) & set(test)


class ThreeSentenceGrammar(SentenceGenerator):
    def sentence(self, rng):
        return rng.choice(["A B", "C D", "E F"])


def test_impossible_request_fails_instead_of_looping():
    assert sorted(unique_sentences(3, seed=0, generator=ThreeSentenceGrammar())) == ["A B", "C D", "E F"]
    with pytest.raises(RuntimeError, match="got 3"):
        unique_sentences(4, seed=0, generator=ThreeSentenceGrammar())
