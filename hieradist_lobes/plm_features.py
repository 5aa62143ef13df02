"""A pre-trained language model's token features: the teacher of CIF-HieraDist.

Token k of a transcript is CIF fire k (the ASR's output units are the PLM's
tokens, :mod:`hieradist_lobes.plm`); the PLM's hidden state at position k + 1
(after [CLS]) is its teacher feature, the [SEP] position's that of the eos
fire.  Features are extracted once, offline, into a ``plm`` teacher store
(:mod:`hieradist_lobes.teacher_store`, records :class:`~hieradist_lobes.store_codecs.PLMRecord`).

* :class:`PLMFeatureExtractor`: transcripts to (tokens + 1) × hidden-size
  features, checking that the PLM's tokens are the ASR's.
* :func:`save_plm_features`: a manifest into the store, resumable, by rank.

Example
-------
>>> from hieradist_lobes.plm import minilm_path
>>> extractor = PLMFeatureExtractor(minilm_path())
>>> [f.shape for f in extractor.features(["THE GARDEN", "TRAVEL"])]
[(3, 384), (2, 384)]
"""

from __future__ import annotations

import logging
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from hieradist_lobes.plm import (
    MISMATCH_ACTIONS,
    PLMAlignmentError,
    PLMTextTooLongError,
    PLMTokenizer,
    _check_model_folder,
    transcript_text,
    weights_sha256,
)
from hieradist_lobes.teacher_store import PLMRecord, StoreMetadata, TeacherStoreWriter, fill_store
from hieradist_lobes.tokens import first_difference

logger = logging.getLogger(__name__)


class PLMFeatureExtractor:
    """Per-token hidden states of a PLM, in eval mode, without gradients.

    Arguments
    ---------
    path : str
        A local Hugging Face model folder (config, tokenizer, weights).
    layer : int
        Index into the model's hidden states: -1 the last layer, 0 the
        embeddings.
    device : str
        ``cpu`` or ``cuda[:n]``.
    max_length : int
        Most tokens per text, [CLS] and [SEP] included (at most the model's
        position embeddings).
    name : str, optional
        Name in the store metadata (default: the folder's name, or its
        parent's for a folder called ``model`` inside a pip package).

    Example
    -------
    >>> from hieradist_lobes.plm import minilm_path
    >>> extractor = PLMFeatureExtractor(minilm_path(), layer=0)
    >>> extractor.features(["THE CAT"], expected_pieces=[["the", "cat"]])[0].shape
    (3, 384)
    >>> extractor.features(["THE CAT"], expected_pieces=[["the", "dog"]], utt_ids=["u7"])
    Traceback (most recent call last):
    ...
    hieradist_lobes.plm.PLMAlignmentError: utterance u7: ...
    """

    def __init__(self, path: str, layer: int = -1, device: str = "cpu", max_length: int = 512,
                 name: Optional[str] = None) -> None:
        import torch  # noqa: F401
        from transformers import AutoModel

        self.path = _check_model_folder(path, need_weights=True)
        self.tokenizer = PLMTokenizer(self.path)
        try:
            self.model = AutoModel.from_pretrained(self.path, local_files_only=True)
        except (OSError, ValueError, KeyError) as error:
            raise ValueError(f"cannot load a model from the PLM folder {self.path}: {error}") from error
        self.model.eval().to(device)
        self.device = device
        config = self.model.config
        self.hidden_size = int(config.hidden_size)
        self.num_layers = int(config.num_hidden_layers)
        if not -(self.num_layers + 1) <= layer <= self.num_layers:
            raise ValueError(f"layer {layer} does not exist: the PLM {self.path} has embeddings (0) and "
                             f"{self.num_layers} layers (1..{self.num_layers}, or -1 for the last)")
        self.layer = layer
        positions = getattr(config, "max_position_embeddings", None) or max_length
        self.max_length = min(int(max_length), int(positions))
        folder = os.path.basename(self.path)
        if folder == "model":  # pip-packaged models: <package>/model
            folder = os.path.basename(os.path.dirname(self.path))
        self.name = name or folder
        self._sha256: Optional[Tuple[str, str]] = None

    def describe(self) -> Dict[str, object]:
        """What the store metadata records about this teacher.

        Keys: ``name``, ``source`` (the folder), ``layer``, ``hidden_size``,
        ``num_layers``, ``weights_file`` and ``checkpoint_sha256`` (of the
        weights file, as for ASR teachers).
        """
        if self._sha256 is None:  # hashing hundreds of MB: once
            self._sha256 = weights_sha256(self.path)
        return {"name": self.name, "source": self.path, "layer": self.layer, "hidden_size": self.hidden_size,
                "num_layers": self.num_layers, "weights_file": self._sha256[0],
                "checkpoint_sha256": self._sha256[1]}

    def check(self, text: str, expected_pieces: Optional[Sequence[str]] = None, utt_id: Optional[str] = None
              ) -> List[str]:
        """The PLM's tokens of ``text``, checked against ``expected_pieces`` and
        ``max_length`` without running the model.

        Raises
        ------
        PLMAlignmentError
            The tokens differ from ``expected_pieces``, or include the PLM's
            unknown token.
        PLMTextTooLongError
            More than ``max_length`` tokens with [CLS] and [SEP].
        """
        pieces = self.tokenizer.pieces(text)
        self._check_pieces(text, pieces, expected_pieces, utt_id)
        return pieces

    def _check_pieces(self, text: str, pieces: List[str], expected: Optional[Sequence[str]],
                      utt_id: Optional[str]) -> None:
        where = f"utterance {utt_id}" if utt_id is not None else f"text {text!r}"
        if expected is not None and list(expected) != pieces:
            first = first_difference(pieces, list(expected))
            raise PLMAlignmentError(
                f"{where}: the PLM {self.path} tokenises {text!r} into {len(pieces)} tokens {pieces}, "
                f"the ASR into {len(expected)} tokens {list(expected)} (first difference at token {first}); "
                "the ASR labels must be this PLM's tokens"
            )
        unknown = self.tokenizer.unk_token
        if unknown and unknown in pieces:
            # The [UNK] feature stands for no particular text: a silent wrong target.
            raise PLMAlignmentError(
                f"{where}: the PLM {self.path} has no token for part of {text!r} (it becomes {unknown} at token "
                f"{pieces.index(unknown)}); correct the transcript, use a PLM whose vocabulary covers it, or set "
                "plm_on_mismatch: skip")
        if len(pieces) + 2 > self.max_length:
            raise PLMTextTooLongError(f"{where}: {len(pieces)} PLM tokens + [CLS] + [SEP] exceed max_length "
                                      f"{self.max_length}")

    def features(self, texts: Sequence[str], expected_pieces: Optional[Sequence[Sequence[str]]] = None,
                 utt_ids: Optional[Sequence[str]] = None) -> List[np.ndarray]:
        """Per text, the (tokens + 1) × hidden_size float32 hidden states of
        ``layer``: [CLS] dropped, row k the feature of token k, the last row
        [SEP]'s (the eos target).  One padded batch.

        Arguments
        ---------
        texts : sequence of str
            Transcripts (:func:`transcript_text`).
        expected_pieces : sequence of sequences of str, optional
            The ASR's tokens of each text; the PLM's must be equal.
        utt_ids : sequence of str, optional
            Utterance IDs, to name in errors.

        Raises
        ------
        PLMAlignmentError, PLMTextTooLongError
            See :meth:`check`.
        """
        import torch

        texts = list(texts)
        if not texts:
            return []
        if expected_pieces is not None and len(expected_pieces) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(expected_pieces)} expected token sequences")
        tokenizer = self.tokenizer.tokenizer
        encoded = tokenizer(texts, padding=True, truncation=False, return_special_tokens_mask=True,
                            return_tensors="pt")
        mask = encoded["attention_mask"].bool()
        rows: List[torch.Tensor] = []
        for i, text in enumerate(texts):
            ids = encoded["input_ids"][i][mask[i]]
            special = encoded["special_tokens_mask"][i][mask[i]].tolist()
            # The feature layout assumes exactly one special token before the text and one after.
            if len(special) < 2 or special[0] != 1 or special[-1] != 1 or any(special[1:-1]):
                raise ValueError(f"the PLM {self.path} does not wrap a text as [CLS] tokens [SEP] "
                                 f"(special-token mask {special}); its features cannot be aligned to tokens")
            pieces = tokenizer.convert_ids_to_tokens(ids[1:-1].tolist())
            self._check_pieces(text, pieces, None if expected_pieces is None else expected_pieces[i],
                               None if utt_ids is None else utt_ids[i])
            rows.append(mask[i])
        inputs = {key: value.to(self.device) for key, value in encoded.items() if key != "special_tokens_mask"}
        with torch.no_grad():
            hidden = self.model(**inputs, output_hidden_states=True).hidden_states[self.layer]
        hidden = hidden.float().cpu()
        # Real positions by the attention mask, whichever side the tokenizer pads; drop [CLS].
        return [hidden[i][rows[i]][1:].numpy().astype(np.float32) for i in range(len(texts))]


def _label_indices(label_encoder, pieces: Sequence[str], utt_id: str) -> List[int]:
    known = label_encoder.lab2ind
    unknown = [piece for piece in pieces if piece not in known]
    # With an <unk> label the student maps unseen pieces to it too, so the stored indices still match.
    if unknown and not hasattr(label_encoder, "unk_label"):
        raise PLMAlignmentError(f"utterance {utt_id}: the PLM token(s) {sorted(set(unknown))} are not in the ASR "
                                "label vocabulary (built from other transcripts or another PLM?)")
    return list(label_encoder.encode_sequence(list(pieces)))


def save_plm_features(
    extractor: PLMFeatureExtractor,
    label_encoder,
    manifest: str,
    split: str,
    store_path: str,
    unit: str,
    tokenizer: Optional[PLMTokenizer] = None,
    batch_size: int = 32,
    dtype: str = "float16",
    rank: int = 0,
    world_size: int = 1,
    part_size: int = 256,
    on_mismatch: str = "error",
    options: Optional[Dict[str, object]] = None,
    progress: bool = True,
    compression: Optional[str] = None,
) -> int:
    """Extract the PLM features of every transcript of ``manifest`` into a plm store.

    Per utterance the store keeps the features (:meth:`PLMFeatureExtractor.features`),
    the ASR label indices of its tokens (the student checks them when
    reading) and the manifest's duration; no audio is read.  The store is
    filled by :func:`~hieradist_lobes.teacher_store.fill_store`: fixed
    batches, this process's share of them, utterances already stored
    skipped, so a resumed run stores what an uninterrupted one would.

    Arguments
    ---------
    extractor : PLMFeatureExtractor
        The teacher PLM.
    label_encoder : LabelTokenizer
        The ASR label vocabulary (its labels are the store's).
    manifest : str
        The CSV (:mod:`hieradist_lobes.data.manifest`); only ``ID``,
        ``duration`` and the ``unit`` column are used.
    split : str
        Store split name.
    store_path : str
        The store folder.
    unit : str
        Manifest column of the transcript, ``wrd`` or ``char`` (:func:`transcript_text`).
    tokenizer : PLMTokenizer, optional
        How the ASR tokenises transcripts (default: the extractor's own).
    batch_size : int
        Texts per forward pass (sorted by length, so padding is small).
    dtype : str
        ``float16`` or ``float32`` features.
    rank, world_size : int
        This process's share of the manifest.
    part_size : int
        Utterances per store part.
    on_mismatch : str
        What to do with an utterance whose PLM tokens differ from the ASR's,
        has a token outside the ASR vocabulary (without ``<unk>``) or is
        longer than ``max_length``: ``error`` stops, ``skip`` logs a warning
        naming it and leaves it out (the student then needs
        ``skip_missing_teacher_outputs``).
    options : dict, optional
        Extra creation options for the store metadata.
    progress : bool
        Show a progress bar.
    compression : str, optional
        ``gzip`` or ``lzf`` for the stored features (:class:`TeacherStoreWriter`).

    Returns
    -------
    int
        The number of utterances this process added (0 when all were done).

    Example
    -------
    >>> import tempfile
    >>> from hieradist_lobes.data.manifest import write_manifest
    >>> from hieradist_lobes.plm import minilm_path
    >>> from hieradist_lobes.teacher_store import TeacherStore
    >>> from hieradist_lobes.tokens import build_label_encoder
    >>> work = tempfile.mkdtemp()
    >>> extractor = PLMFeatureExtractor(minilm_path())
    >>> rows = [{"ID": f"u{i}", "duration": 1.0, "wav": "unused.wav", "spk_id": "s", "phn": "", "wrd": text,
    ...          "char": ""} for i, text in enumerate(["THE CAT", "THE DOG"])]
    >>> write_manifest(work + "/train.csv", rows)
    >>> labels = build_label_encoder("wrd", sequences=[["the", "cat", "dog"]])
    >>> save_plm_features(extractor, labels, work + "/train.csv", "train", work + "/store", "wrd", progress=False)
    2
    >>> TeacherStore(work + "/store").get("u1").features.shape
    (3, 384)
    """
    from hieradist_lobes.data.manifest import read_manifest

    if on_mismatch not in MISMATCH_ACTIONS:
        raise ValueError(f"on_mismatch must be one of {', '.join(MISMATCH_ACTIONS)}, got {on_mismatch!r}")
    tokenizer = tokenizer or extractor.tokenizer
    rows = read_manifest(manifest)
    metadata = StoreMetadata(
        labels=label_encoder.labels(), teachers=[extractor.describe()], frame_rate=0.0, dtype=dtype,
        kind="plm", feature_dim=extractor.hidden_size,
        options=dict(options or {}, unit=unit, tokenizer=tokenizer.path),
    )
    # Every utterance is checked before the model runs: a mismatch stops at once, not after hours.
    items = {}
    skipped = 0
    for row in rows:
        utt_id = row["ID"]
        text = transcript_text(row[unit], unit)
        try:
            pieces = extractor.check(text, tokenizer.pieces(text), utt_id)
            tokens = _label_indices(label_encoder, pieces, utt_id)
        except (PLMAlignmentError, PLMTextTooLongError) as error:
            if on_mismatch == "error":
                raise
            logger.warning("no PLM features for %s (left out of the store): %s", utt_id, error)
            skipped += 1
            continue
        items[utt_id] = (text, pieces, tokens, float(row["duration"]))
    if skipped:
        logger.warning("%s: %d of %d utterances left out of the PLM feature store %s", split, skipped,
                       len(rows), store_path)

    def records_of(batches: List[List[str]]):
        for batch in batches:
            features = extractor.features([items[u][0] for u in batch], expected_pieces=[items[u][1] for u in batch],
                                          utt_ids=batch)
            yield {utt: PLMRecord(features=matrix, tokens=items[utt][2], duration=items[utt][3])
                   for utt, matrix in zip(batch, features)}

    # Batches by token count (longest first): similar lengths pad little.
    writer = TeacherStoreWriter(store_path, split, metadata, rank=rank, part_size=part_size, compression=compression)
    lengths = {utt: len(item[1]) for utt, item in items.items()}
    return fill_store(writer, lengths, batch_size, world_size, records_of, f"PLM features of {split}", progress)
