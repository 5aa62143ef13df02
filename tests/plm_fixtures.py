"""A tiny random BERT folder for tests (the library's examples use the shipped all-MiniLM-L6-v2)."""

import os
from typing import Sequence

from hieradist_lobes.data.manifest import write_manifest
from hieradist_lobes.plm import PLMTokenizer, plm_label_sequences
from hieradist_lobes.tokens import build_label_encoder

# The tiny BERT's WordPiece vocabulary, and sentences it can spell.
VOCABULARY = ["the", "gar", "##den", "could", "travel", "cat", "sat", "##s", "a", "dog", "sleep", "late"]
HIDDEN = 32
SENTENCES = ["THE GARDEN COULD TRAVEL", "THE CATS SAT", "A DOG COULD SLEEP LATE", "THE CAT", "A GARDEN",
             "THE DOGS TRAVEL LATE"]


def tiny_plm_folder(folder: str, vocabulary: Sequence[str], hidden_size: int = 32, num_layers: int = 2,
                    seed: int = 0, max_position_embeddings: int = 64) -> str:
    """Write a tiny randomly initialised BERT with a WordPiece tokenizer, for tests.

    Arguments
    ---------
    folder : str
        Where the model folder goes (created).
    vocabulary : sequence of str
        Lower-case words and ``##`` continuations; [PAD], [UNK], [CLS],
        [SEP] and [MASK] come first.
    hidden_size, num_layers : int
        Model size (two attention heads).
    seed : int
        Seed of the random weights.
    max_position_embeddings : int
        Longest input, [CLS] and [SEP] included.

    """
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    os.makedirs(folder, exist_ok=True)
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [t for t in vocabulary if not t.startswith("[")]
    vocab_file = os.path.join(folder, "vocab.txt")
    with open(vocab_file, "w", encoding="utf-8") as handle:
        handle.write("\n".join(tokens) + "\n")
    BertTokenizer(vocab=vocab_file).save_pretrained(folder)
    config = BertConfig(vocab_size=len(tokens), hidden_size=hidden_size, num_hidden_layers=num_layers,
                        num_attention_heads=2, intermediate_size=2 * hidden_size,
                        max_position_embeddings=max_position_embeddings)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        BertModel(config).save_pretrained(folder)
    finally:
        torch.random.set_rng_state(state)  # leave the caller's random stream alone
    return folder


def sentences_manifest(path, sentences: Sequence[str] = SENTENCES):
    """A manifest of ``sentences`` (audio never read: PLM features need only the text)."""
    rows = [{"ID": f"utt{i:02d}", "duration": 1.0 + i / 4, "wav": "/does/not/exist.wav", "spk_id": "s",
             "phn": "", "wrd": text, "char": " ".join("_".join(text.split()))} for i, text in enumerate(sentences)]
    write_manifest(str(path), rows)
    return rows


def sentence_encoder(plm_folder: str, sentences: Sequence[str] = SENTENCES, **options):
    """The ASR label vocabulary of ``sentences`` in the PLM's tokens."""
    return build_label_encoder("wrd", "from_data", plm_label_sequences(PLMTokenizer(plm_folder), sentences), **options)
