"""A small generator of grammatical English sentences.

The built-in synthetic corpus needs text that is varied enough for a speech
recogniser to learn phones and words, yet drawn from a closed vocabulary of a
few hundred words so that small models can learn it on a CPU.  The grammar
below produces declarative sentences, yes/no questions and coordinations with
subject-verb agreement, e.g. ``THE OLD FARMER OPENED A HEAVY DOOR`` or
``DID THE CHILDREN FIND THE RED KEYS NEAR THE RIVER``.

Generation is deterministic for a given :class:`random.Random` state.

Example
-------
>>> import random
>>> generator = SentenceGenerator()
>>> sentence = generator.sentence(random.Random(0))
>>> sentence == sentence.upper() and len(sentence.split()) >= 3
True
>>> set(sentence.split()) <= generator.vocabulary()
True
"""

from __future__ import annotations

import random
from typing import List, Set, Tuple

# Nouns as (singular, plural).
NOUNS: List[Tuple[str, str]] = [
    ("apple", "apples"), ("artist", "artists"), ("baby", "babies"),
    ("bag", "bags"), ("ball", "balls"), ("basket", "baskets"),
    ("bird", "birds"), ("boat", "boats"), ("book", "books"),
    ("bottle", "bottles"), ("box", "boxes"), ("boy", "boys"),
    ("bridge", "bridges"), ("brother", "brothers"), ("cake", "cakes"),
    ("candle", "candles"), ("captain", "captains"), ("car", "cars"),
    ("cat", "cats"), ("chair", "chairs"), ("child", "children"),
    ("coat", "coats"), ("cook", "cooks"), ("cup", "cups"),
    ("doctor", "doctors"), ("dog", "dogs"), ("door", "doors"),
    ("driver", "drivers"), ("farmer", "farmers"), ("fish", "fish"),
    ("flower", "flowers"), ("friend", "friends"), ("garden", "gardens"),
    ("girl", "girls"), ("glass", "glasses"), ("guest", "guests"),
    ("hat", "hats"), ("horse", "horses"), ("house", "houses"),
    ("hunter", "hunters"), ("key", "keys"), ("king", "kings"),
    ("kitchen", "kitchens"), ("knife", "knives"), ("lamp", "lamps"),
    ("lawyer", "lawyers"), ("letter", "letters"), ("map", "maps"),
    ("market", "markets"), ("mother", "mothers"), ("nurse", "nurses"),
    ("painter", "painters"), ("paper", "papers"), ("pencil", "pencils"),
    ("picture", "pictures"), ("pilot", "pilots"), ("plate", "plates"),
    ("player", "players"), ("queen", "queens"), ("rabbit", "rabbits"),
    ("river", "rivers"), ("road", "roads"), ("sailor", "sailors"),
    ("shoe", "shoes"), ("singer", "singers"), ("sister", "sisters"),
    ("soldier", "soldiers"), ("song", "songs"), ("spoon", "spoons"),
    ("stone", "stones"), ("student", "students"), ("table", "tables"),
    ("teacher", "teachers"), ("tiger", "tigers"), ("tower", "towers"),
    ("town", "towns"), ("train", "trains"), ("tree", "trees"),
    ("village", "villages"), ("wagon", "wagons"), ("window", "windows"),
    ("woman", "women"), ("man", "men"), ("worker", "workers"),
    ("writer", "writers"), ("sheep", "sheep"),
    ("engine", "engines"), ("jacket", "jackets"), ("mountain", "mountains"),
]

# Nouns that make sense as the object of a place preposition.
PLACES: List[str] = [
    "bridge", "garden", "house", "kitchen", "market", "river", "road",
    "table", "tower", "town", "tree", "village", "window", "door",
    "mountain", "station", "church", "school", "forest", "harbour",
    "castle", "field", "lake", "hill", "beach", "library", "office",
]

ADJECTIVES: List[str] = [
    "old", "young", "small", "large", "tall", "short", "heavy", "light",
    "red", "blue", "green", "yellow", "white", "black", "brown", "grey",
    "quiet", "noisy", "happy", "angry", "tired", "clever", "gentle",
    "brave", "busy", "lazy", "famous", "strange", "pretty", "ugly",
    "clean", "dirty", "empty", "broken", "wooden", "golden", "cold",
    "warm", "wet", "dry", "new", "rich", "poor", "kind", "proud",
    "careful", "lucky", "silent", "bright", "dark",
]

# Transitive verbs: (base, third person singular, past).
TRANSITIVE_VERBS: List[Tuple[str, str, str]] = [
    ("see", "sees", "saw"), ("find", "finds", "found"),
    ("carry", "carries", "carried"), ("open", "opens", "opened"),
    ("close", "closes", "closed"), ("paint", "paints", "painted"),
    ("wash", "washes", "washed"), ("follow", "follows", "followed"),
    ("watch", "watches", "watched"), ("help", "helps", "helped"),
    ("push", "pushes", "pushed"), ("pull", "pulls", "pulled"),
    ("lift", "lifts", "lifted"), ("drop", "drops", "dropped"),
    ("buy", "buys", "bought"), ("sell", "sells", "sold"),
    ("hold", "holds", "held"), ("bring", "brings", "brought"),
    ("take", "takes", "took"), ("keep", "keeps", "kept"),
    ("like", "likes", "liked"), ("love", "loves", "loved"),
    ("need", "needs", "needed"), ("want", "wants", "wanted"),
    ("hide", "hides", "hid"), ("catch", "catches", "caught"),
    ("throw", "throws", "threw"), ("break", "breaks", "broke"),
    ("fix", "fixes", "fixed"), ("clean", "cleans", "cleaned"),
    ("draw", "draws", "drew"), ("call", "calls", "called"),
    ("meet", "meets", "met"), ("visit", "visits", "visited"),
    ("remember", "remembers", "remembered"), ("move", "moves", "moved"),
]

# Intransitive verbs: (base, third person singular, past).
INTRANSITIVE_VERBS: List[Tuple[str, str, str]] = [
    ("sleep", "sleeps", "slept"), ("run", "runs", "ran"),
    ("walk", "walks", "walked"), ("sing", "sings", "sang"),
    ("dance", "dances", "danced"), ("laugh", "laughs", "laughed"),
    ("wait", "waits", "waited"), ("sit", "sits", "sat"),
    ("stand", "stands", "stood"), ("swim", "swims", "swam"),
    ("fall", "falls", "fell"), ("work", "works", "worked"),
    ("play", "plays", "played"), ("travel", "travels", "travelled"),
    ("rest", "rests", "rested"), ("shout", "shouts", "shouted"),
    ("smile", "smiles", "smiled"), ("arrive", "arrives", "arrived"),
    ("leave", "leaves", "left"), ("return", "returns", "returned"),
]

ADVERBS: List[str] = [
    "quickly", "slowly", "quietly", "loudly", "happily", "sadly",
    "carefully", "early", "late", "often", "again", "together", "today",
    "yesterday", "outside", "alone",
]

PREPOSITIONS: List[str] = [
    "near", "behind", "under", "beside", "inside", "across", "along",
    "above", "below", "past", "around", "between the tree and",
]

NAMES: List[str] = [
    "anna", "david", "emma", "george", "helen", "jack", "james", "lucy",
    "martin", "mary", "oliver", "paul", "peter", "robert", "sarah",
    "thomas", "kate", "simon", "laura", "henry",
]

NUMBERS: List[str] = [
    "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "twelve", "twenty",
]

SINGULAR_DETERMINERS = ["the", "a", "this", "that", "every", "my", "his", "her", "our"]
PLURAL_DETERMINERS = ["the", "these", "those", "some", "many", "my", "her", "our", "their"]
MODALS = ["will", "can", "should", "might", "must", "could"]
TIME_PHRASES = ["every morning", "in the evening", "at night", "on sunday", "last week"]


class SentenceGenerator:
    """Generate random grammatical English sentences over a closed vocabulary.

    Arguments
    ---------
    max_words : int
        Sentences longer than this are redrawn; keeps utterances short
        enough for small models (about 2 to 5 seconds of speech).

    Example
    -------
    >>> import random
    >>> SentenceGenerator().sentence(random.Random(3)).split()[0].isalpha()
    True
    """

    def __init__(self, max_words: int = 14) -> None:
        self.max_words = max_words

    # Noun phrases -------------------------------------------------------
    def _noun_phrase(self, rng: random.Random, plural: bool) -> str:
        if not plural and rng.random() < 0.15:
            return rng.choice(NAMES)
        singular, plural_form = rng.choice(NOUNS)
        noun = plural_form if plural else singular
        if plural and rng.random() < 0.2:
            determiner = rng.choice(NUMBERS)
        else:
            determiner = rng.choice(PLURAL_DETERMINERS if plural else SINGULAR_DETERMINERS)
        words = [determiner]
        if rng.random() < 0.55:
            adjective = rng.choice(ADJECTIVES)
            words.append(adjective)
        words.append(noun)
        if determiner == "a" and words[1][0] in "aeiou":
            words[0] = "an"
        return " ".join(words)

    def _place_phrase(self, rng: random.Random) -> str:
        preposition = rng.choice(PREPOSITIONS)
        determiner = "the" if preposition.endswith("and") else rng.choice(["the", "a", "our", "that"])
        place = rng.choice(PLACES)
        if determiner == "a" and place[0] in "aeiou":
            determiner = "an"
        return f"{preposition} {determiner} {place}"

    # Verb phrases -------------------------------------------------------
    def _verb_phrase(self, rng: random.Random, plural: bool, tense: str) -> str:
        transitive = rng.random() < 0.6
        base, third, past = rng.choice(TRANSITIVE_VERBS if transitive else INTRANSITIVE_VERBS)
        if tense == "past":
            verb = past
        elif tense == "modal":
            verb = f"{rng.choice(MODALS)} {base}"
        elif tense == "base":
            verb = base
        else:
            verb = base if plural else third
        words = [verb]
        if transitive:
            words.append(self._noun_phrase(rng, plural=rng.random() < 0.4))
        elif rng.random() < 0.6:
            words.append(rng.choice(ADVERBS))
        roll = rng.random()
        if roll < 0.35:
            words.append(self._place_phrase(rng))
        elif roll < 0.45:
            words.append(rng.choice(TIME_PHRASES))
        return " ".join(words)

    def _clause(self, rng: random.Random) -> str:
        plural = rng.random() < 0.35
        tense = rng.choice(["past", "past", "present", "modal"])
        return f"{self._noun_phrase(rng, plural)} {self._verb_phrase(rng, plural, tense)}"

    def _question(self, rng: random.Random) -> str:
        plural = rng.random() < 0.35
        auxiliary = rng.choice(["did", "will", "can"] + (["do"] if plural else ["does"]))
        return f"{auxiliary} {self._noun_phrase(rng, plural)} {self._verb_phrase(rng, plural, 'base')}"

    def _copula(self, rng: random.Random) -> str:
        plural = rng.random() < 0.35
        verb = rng.choice(["are", "were"] if plural else ["is", "was"])
        adverb = rng.choice(["", "", "very ", "not ", "always "])
        return f"{self._noun_phrase(rng, plural)} {verb} {adverb}{rng.choice(ADJECTIVES)}"

    def sentence(self, rng: random.Random) -> str:
        """Return one upper-case sentence without punctuation."""
        while True:
            roll = rng.random()
            if roll < 0.55:
                text = self._clause(rng)
            elif roll < 0.7:
                text = self._question(rng)
            elif roll < 0.85:
                text = self._copula(rng)
            else:
                conjunction = rng.choice(["and", "but", "because", "while"])
                text = f"{self._clause(rng)} {conjunction} {self._clause(rng)}"
            if len(text.split()) <= self.max_words:
                return text.upper()

    def vocabulary(self) -> Set[str]:
        """All upper-case words this generator can produce."""
        words: Set[str] = set()
        groups: List[List[str]] = [
            [w for pair in NOUNS for w in pair], PLACES, ADJECTIVES,
            [w for triple in TRANSITIVE_VERBS + INTRANSITIVE_VERBS for w in triple],
            ADVERBS, PREPOSITIONS, NAMES, NUMBERS, SINGULAR_DETERMINERS,
            PLURAL_DETERMINERS, MODALS, TIME_PHRASES,
            ["an", "and", "but", "because", "while", "did", "do", "does",
             "will", "can", "is", "are", "was", "were", "very", "not", "always"],
        ]
        for group in groups:
            for phrase in group:
                words.update(phrase.upper().split())
        return words


def unique_sentences(
    count: int,
    seed: int,
    exclude: Set[str] | None = None,
    generator: SentenceGenerator | None = None,
) -> List[str]:
    """Draw ``count`` distinct sentences, none of them in ``exclude``.

    Arguments
    ---------
    count : int
        Number of sentences.
    seed : int
        Seed of the generator; the same seed gives the same list.
    exclude : set of str, optional
        Sentences that must not be produced (e.g. those of another split).
    generator : SentenceGenerator, optional
        The grammar to draw from (default: ``SentenceGenerator()``).

    Returns
    -------
    list of str

    Raises
    ------
    RuntimeError
        If 10 000 draws in a row give only sentences already taken: the
        grammar cannot make that many distinct sentences.

    Example
    -------
    >>> train = unique_sentences(20, seed=1)
    >>> test = unique_sentences(5, seed=2, exclude=set(train))
    >>> len(set(train)) == 20 and not set(test) & set(train)
    True
    """
    rng = random.Random(seed)
    generator = generator or SentenceGenerator()
    taken = set(exclude or ())
    sentences: List[str] = []
    misses = 0
    while len(sentences) < count:
        text = generator.sentence(rng)
        if text in taken:
            misses += 1
            if misses > 10_000:
                raise RuntimeError(f"could not draw {count} distinct sentences: got {len(sentences)}")
            continue
        misses = 0
        taken.add(text)
        sentences.append(text)
    return sentences
