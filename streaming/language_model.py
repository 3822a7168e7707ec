"""N-gram language model for CTC beam search: KenLM + unigrams + alpha/beta.

Two on-disk layouts are accepted, because those are the two ways LMs ship:

* a Hugging Face ``language_model/`` folder as written by
  ``Wav2Vec2ProcessorWithLM.save_pretrained`` (pyctcdecode's layout):
  ``attrs.json`` (alpha, beta, unk_score_offset, score_boundary),
  ``unigrams.txt`` (one word a line) and one KenLM file (``.arpa``/``.bin``/``.binary``);
* a bare KenLM file.  For ``.arpa`` the unigrams are read from its 1-gram
  section (what ``pyctcdecode.build_ctcdecoder`` does).  A binary file does not
  list its words in a readable way, so ``unigrams=`` must be given: without
  them pyctcdecode treats *every* partial word as out-of-vocabulary and the
  beam search quietly gets much worse, so we refuse rather than degrade
  (:class:`~streaming.errors.LanguageModelError` says how to fix it).

Scoring itself is delegated to ``pyctcdecode.language_model.LanguageModel``,
used as a library: the incremental decoder in ``decoder.py`` must reproduce
pyctcdecode's floats bit for bit, and the simplest way to get KenLM calls,
the unknown-word offset and the partial-word trie exactly right is to call the
same object.

The alphabet is built from a wav2vec2 vocabulary exactly as
``Wav2Vec2ProcessorWithLM`` does (``pyctcdecode.Alphabet.build_alphabet`` on
the tokens in index order): ``"<pad>"`` becomes the CTC blank ``""``, ``"|"``
becomes the word delimiter ``" "``, ``"<unk>"`` becomes ``"⁇"`` and other
specials (``"<s>"``, ``"</s>"``) stay as they are.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyctcdecode.alphabet import Alphabet
from pyctcdecode.constants import (
    DEFAULT_ALPHA,
    DEFAULT_BETA,
    DEFAULT_SCORE_LM_BOUNDARY,
    DEFAULT_UNK_LOGP_OFFSET,
    LOG_BASE_CHANGE_FACTOR,
)
from pyctcdecode.language_model import LanguageModel as _PyctcLanguageModel
from pyctcdecode.language_model import load_unigram_set_from_arpa

from .errors import LanguageModelError, VocabularyError

__all__ = [
    "LanguageModel",
    "LanguageModelConfig",
    "build_labels",
    "load_language_model",
]

logger = logging.getLogger(__name__)

_KENLM_SUFFIXES = (".arpa", ".bin", ".binary")
_ATTRS_KEYS = ("alpha", "beta", "unk_score_offset", "score_boundary")
_SPECIAL_WORD = re.compile(r"^<.+>$")
# More than this fraction of unigrams unspellable by the acoustic model means the
# LM was built for another alphabet (typically upper case vs lower case); a few
# unspellable words (digits, foreign letters) are normal and only logged.
_MAX_UNSPELLABLE_FRACTION = 0.5


# Partial words whose scores a LanguageModel.partial_scores cache keeps (~100 bytes each).
PARTIAL_SCORES_LIMIT = 200_000


@dataclass(frozen=True)
class LanguageModelConfig:
    """Overrides for the scoring parameters stored with the LM (``None`` keeps them).

    Precedence: these overrides, then ``attrs.json`` of a Hugging Face folder, then
    pyctcdecode's defaults (the values every pyctcdecode user gets).
    """

    # LM weight in shallow fusion; pyctcdecode default 0.5 (folder attrs usually tuned).
    alpha: float | None = None
    # per-word insertion bonus that offsets the LM's bias to short outputs; default 1.5.
    beta: float | None = None
    # log score added for words not in the unigram list; default -10 (strongly unlikely).
    unk_score_offset: float | None = None
    # score <s> ... </s> sentence boundaries; default True, right for whole segments.
    score_boundary: bool | None = None

    def __post_init__(self) -> None:
        if self.alpha is not None and not (math.isfinite(self.alpha) and self.alpha >= 0.0):
            raise ValueError(f"alpha must be a finite number >= 0, got {self.alpha!r}")
        if self.beta is not None and not math.isfinite(self.beta):
            raise ValueError(f"beta must be a finite number, got {self.beta!r}")
        if self.unk_score_offset is not None and not (
            math.isfinite(self.unk_score_offset) and self.unk_score_offset <= 0.0
        ):
            raise ValueError(f"unk_score_offset must be a finite number <= 0, got {self.unk_score_offset!r}")


class _DropLengthWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "entries of length > 1" not in record.getMessage()


@contextlib.contextmanager
def _quiet_pyctcdecode_alphabet() -> Iterator[None]:
    log = logging.getLogger("pyctcdecode.alphabet")
    flt = _DropLengthWarning()
    log.addFilter(flt)
    try:
        yield
    finally:
        log.removeFilter(flt)


def build_labels(vocab: Sequence[str]) -> tuple[str, ...]:
    """Decoder labels for a wav2vec2 vocabulary (index order), as Wav2Vec2ProcessorWithLM builds them.

    Example: ``("<pad>", "<s>", "</s>", "<unk>", "|", "e", "t")`` ->
    ``("", "<s>", "</s>", "⁇", " ", "e", "t")``.

    Raises :class:`VocabularyError` for vocabularies the decoder cannot use: empty,
    duplicate tokens, BPE style, no blank (``<pad>``) or no word delimiter (``|``),
    or tokens containing whitespace (they would split words behind our back).
    """
    tokens = list(vocab)
    if not tokens or not all(isinstance(t, str) for t in tokens):
        raise VocabularyError(f"vocabulary must be a non-empty sequence of str, got {vocab!r}")
    duplicates = sorted(t for t, n in Counter(tokens).items() if n > 1)
    if duplicates:
        raise VocabularyError(f"vocabulary has duplicate tokens: {duplicates}")
    try:
        # "<s>"/"</s>" are multi-character tokens in every wav2vec2 vocabulary;
        # pyctcdecode warns about them each time, which says nothing to our users.
        with _quiet_pyctcdecode_alphabet():
            alphabet = Alphabet.build_alphabet(tokens)
    except ValueError as exc:
        raise VocabularyError(f"vocabulary is not a usable CTC alphabet: {exc}") from exc
    if alphabet.is_bpe:
        raise VocabularyError(
            "vocabulary looks like BPE (tokens starting with '##' or '▁'); "
            "only character vocabularies with a '|' word delimiter are supported"
        )
    labels = tuple(alphabet.labels)
    if len(labels) != len(tokens):
        raise VocabularyError(f"vocabulary has no CTC blank token: expected '<pad>' among {len(tokens)} tokens")
    if labels.count(" ") != 1:
        raise VocabularyError("vocabulary has no word delimiter: expected '|' (or ' ')")
    bad = [t for t, label in zip(tokens, labels, strict=True) if label != " " and any(c.isspace() for c in label)]
    if bad:
        raise VocabularyError(f"vocabulary tokens must not contain whitespace, got {bad!r}")
    return labels


def _emittable_chars(labels: Iterable[str]) -> frozenset[str]:
    """Characters an acoustic model with these labels can spell (single-char labels)."""
    return frozenset(label for label in labels if len(label) == 1 and label != " ")


class _SpelledOovScorer(_PyctcLanguageModel):
    """pyctcdecode's scorer, but a word outside the unigrams costs a spelling score.

    In-vocabulary words score exactly as pyctcdecode scores them.  An unknown word costs
    ``word_logp + char_logp * len(word)`` nats (plus beta, and the LM's end-of-sentence
    score after it when it ends the segment); a partial word that is no prefix of any
    unigram costs the same for the letters so far, so completing it adds nothing but
    beta.  KenLM still advances its state over the word (as ``<unk>``), so the words after
    it are scored in the same context as pyctcdecode scores them.

    Example (``word_logp=-8, char_logp=-1``, alpha 0.5, beta 1): ``score_partial_token("xq")``
    is -10.0; ``score(state, "xqzt")`` is (-8 - 4 + 1, state after <unk>) = -11.0.

    Shares the KenLM model, unigram set and trie of ``base`` (no copy of the large parts).
    """

    def __init__(self, base: _PyctcLanguageModel, word_logp: float, char_logp: float) -> None:
        # no super().__init__(): that would rebuild the 72k-word trie; take base's parts
        self.__dict__.update(base.__dict__)
        self.oov_word_logp = word_logp
        self.oov_char_logp = char_logp

    def _is_known(self, word: str) -> bool:
        # the same test pyctcdecode's score() makes before adding unk_score_offset
        return not (len(self._unigram_set) > 0 and word not in self._unigram_set or word not in self._kenlm_model)

    def score_partial_token(self, partial_token: str) -> float:
        if self._char_trie is not None and self._char_trie.has_node(partial_token):
            return 0.0
        return self.oov_word_logp + self.oov_char_logp * len(partial_token)

    def score(self, prev_state: Any, word: str, is_last_word: bool = False) -> tuple[float, Any]:
        if self._is_known(word):
            score, state = super().score(prev_state, word, is_last_word=is_last_word)
            return float(score), state
        end_state = type(prev_state)()  # a fresh kenlm.State; BaseScore fills it in
        self._kenlm_model.BaseScore(prev_state, word, end_state)
        end = self._get_raw_end_score(end_state) if is_last_word else 0.0
        spelled = self.oov_word_logp + self.oov_char_logp * len(word)
        return self.alpha * end * LOG_BASE_CHANGE_FACTOR + self.beta + spelled, end_state


class LanguageModel:
    """A loaded KenLM model with its unigrams and fusion weights; shared by all streams.

    Immutable after loading: :meth:`with_params` returns a new object sharing the
    (large) KenLM model, so per-engine alpha/beta overrides cost nothing.
    """

    def __init__(
        self,
        scorer: _PyctcLanguageModel,
        *,
        kenlm_path: Path,
        source: Path,
        unigrams: frozenset[str],
    ) -> None:
        self._scorer = scorer
        self.kenlm_path = kenlm_path
        self.source = source
        self._unigrams = unigrams
        self._unigram_chars: Counter[str] | None = None
        # label tuples already checked (a decoder per hotword set must not rescan 500k words)
        self._fits: set[tuple[str, ...]] = set()
        self._oov_scorers: dict[tuple[float, float], _PyctcLanguageModel] = {}
        # per scorer (by id; each lives as long as this object): partial word -> its score
        self._partial_scores: dict[int, dict[str, float]] = {}

    # -- parameters ---------------------------------------------------------------------
    @property
    def alpha(self) -> float:
        return float(self._scorer.alpha)

    @property
    def beta(self) -> float:
        return float(self._scorer.beta)

    @property
    def unk_score_offset(self) -> float:
        return float(self._scorer.unk_score_offset)

    @property
    def score_boundary(self) -> bool:
        return bool(self._scorer.score_boundary)

    @property
    def order(self) -> int:
        """n of the n-gram model (history pruning keeps ``order - 1`` words)."""
        return int(self._scorer.order)

    @property
    def unigrams(self) -> frozenset[str]:
        """The words the LM scores as known (a lexicon for lexicon-constrained decoders)."""
        return self._unigrams

    def oov_scorer(self, word_logp: float | None, char_logp: float) -> _PyctcLanguageModel:
        """The scorer with unknown words costing ``word_logp + char_logp * letters`` (nats).

        ``word_logp=None`` gives :attr:`scorer` itself (pyctcdecode's scoring).  Cached per
        setting, so every stream of an engine shares one object (and its score caches).
        """
        if word_logp is None:
            return self._scorer
        key = (float(word_logp), float(char_logp))
        scorer = self._oov_scorers.get(key)
        if scorer is None:
            scorer = self._oov_scorers[key] = _SpelledOovScorer(self._scorer, *key)
        return scorer

    @property
    def num_unigrams(self) -> int:
        return len(self._unigrams)

    @property
    def scorer(self) -> _PyctcLanguageModel:
        """The pyctcdecode scorer; the decoder calls it so floats match pyctcdecode."""
        return self._scorer

    def partial_scores(self, scorer: _PyctcLanguageModel) -> dict[str, float]:
        """One cache of ``scorer.score_partial_token`` (the penalty of a word being spelled)
        for every stream and segment of this LM: the score is pure in the partial word,
        and each miss walks pyctcdecode's Python character trie.  ``scorer`` is
        :attr:`scorer` or one of :meth:`oov_scorer`'s, which live as long as this object.
        Dict operations are atomic under the GIL, so decode threads may share it; the
        decoder empties it at ``PARTIAL_SCORES_LIMIT`` entries."""
        return self._partial_scores.setdefault(id(scorer), {})

    @property
    def description(self) -> str:
        """One line for logs and ``Engine.lm_description``."""
        return (
            f"{self.kenlm_path.name} ({self.order}-gram, {self.num_unigrams} unigrams, "
            f"alpha={self.alpha:g}, beta={self.beta:g})"
        )

    def __str__(self) -> str:
        return self.description

    def __repr__(self) -> str:
        return f"LanguageModel({self.description}, source={str(self.source)!r})"

    def with_params(
        self,
        *,
        alpha: float | None = None,
        beta: float | None = None,
        unk_score_offset: float | None = None,
        score_boundary: bool | None = None,
    ) -> LanguageModel:
        """A copy with other fusion weights; the KenLM model and unigram trie are shared."""
        LanguageModelConfig(alpha=alpha, beta=beta, unk_score_offset=unk_score_offset)
        if alpha is None and beta is None and unk_score_offset is None and score_boundary is None:
            return self
        scorer = copy.copy(self._scorer)
        if alpha is not None:
            scorer.alpha = float(alpha)
        if beta is not None:
            scorer.beta = float(beta)
        if unk_score_offset is not None:
            scorer.unk_score_offset = float(unk_score_offset)
        if score_boundary is not None:
            scorer.score_boundary = bool(score_boundary)
        clone = LanguageModel(scorer, kenlm_path=self.kenlm_path, source=self.source, unigrams=self._unigrams)
        clone._unigram_chars = self._unigram_chars
        clone._fits = self._fits
        return clone

    # -- vocabulary fit -----------------------------------------------------------------
    def check_vocab(self, vocab: Sequence[str]) -> None:
        """Raise :class:`LanguageModelError` if most LM words cannot be spelled by ``vocab``.

        Why: an LM built for another alphabet (upper case, another script) loads
        fine and silently turns every word into an unknown word; saying which
        characters are missing points straight at the mismatch.
        """
        labels = build_labels(vocab)
        if labels in self._fits:
            return
        words = [w for w in self._unigrams if not _SPECIAL_WORD.match(w)]
        if not words:
            self._fits.add(labels)
            return
        if self._unigram_chars is None:
            chars: Counter[str] = Counter()
            for word in words:
                chars.update(set(word))
            self._unigram_chars = chars
        emittable = _emittable_chars(labels)
        missing = {c: n for c, n in self._unigram_chars.items() if c not in emittable}
        if not missing:
            self._fits.add(labels)
            return
        unspellable = sum(1 for w in words if not set(w) <= emittable)
        fraction = unspellable / len(words)
        worst = sorted(missing.items(), key=lambda item: (-item[1], item[0]))[:8]
        listing = ", ".join(f"{c!r} (in {n} words)" for c, n in worst)
        if fraction > _MAX_UNSPELLABLE_FRACTION:
            raise LanguageModelError(
                f"language model {self.source} does not fit the vocabulary: "
                f"{unspellable} of its {len(words)} unigrams ({fraction:.0%}) use characters "
                f"the acoustic model cannot emit: {listing}; expected words spelled with "
                f"{''.join(sorted(emittable))!r}"
            )
        logger.warning(
            "%d of %d LM unigrams use characters the model cannot emit: %s",
            unspellable,
            len(words),
            listing,
        )
        self._fits.add(labels)


def _read_unigrams(unigrams: str | Path | Iterable[str]) -> list[str]:
    if isinstance(unigrams, (str, Path)):
        path = Path(unigrams)
        try:
            return path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise LanguageModelError(f"cannot read unigrams file {path}: {exc}") from exc
    return [w for w in unigrams]


def _read_attrs(path: Path) -> dict[str, Any]:
    try:
        attrs = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LanguageModelError(f"cannot read {path}: {exc}") from exc
    if not isinstance(attrs, dict) or set(attrs) != set(_ATTRS_KEYS):
        found = sorted(attrs) if isinstance(attrs, dict) else type(attrs).__name__
        raise LanguageModelError(f"{path} must hold exactly {list(_ATTRS_KEYS)}, found {found}")
    return attrs


def _find_kenlm_file(folder: Path) -> Path:
    candidates = sorted(p for p in folder.iterdir() if p.suffix in _KENLM_SUFFIXES and not p.name.startswith("."))
    if len(candidates) != 1:
        raise LanguageModelError(
            f"expected exactly one KenLM file ({'/'.join(_KENLM_SUFFIXES)}) in {folder}, "
            f"found {[p.name for p in candidates]}"
        )
    return candidates[0]


def _load_kenlm(path: Path) -> Any:
    import kenlm

    try:
        return kenlm.Model(str(path))
    except (OSError, RuntimeError) as exc:
        raise LanguageModelError(f"cannot load KenLM model {path}: {exc}") from exc


def load_language_model(
    path: str | Path,
    vocab: Sequence[str] | None = None,
    *,
    unigrams: str | Path | Iterable[str] | None = None,
    config: LanguageModelConfig = LanguageModelConfig(),
) -> LanguageModel:
    """Load a Hugging Face ``language_model/`` folder or a bare KenLM file.

    ``unigrams`` (a word-list file, one word a line, or the words themselves)
    replaces ``unigrams.txt`` / the ARPA 1-grams; it is required for a bare
    binary KenLM file.  With ``vocab`` (the wav2vec2 tokens in index order) the
    LM is checked against what the acoustic model can spell.

    Raises :class:`LanguageModelError` for a missing, unreadable or corrupt
    model, bad ``attrs.json``, or an LM that does not fit ``vocab``.
    """
    source = Path(path)
    if not source.exists():
        raise LanguageModelError(
            f"language model not found: {source} (expected a language_model/ folder "
            f"or a KenLM {'/'.join(_KENLM_SUFFIXES)} file)"
        )
    attrs: dict[str, Any] = {
        "alpha": DEFAULT_ALPHA,
        "beta": DEFAULT_BETA,
        "unk_score_offset": DEFAULT_UNK_LOGP_OFFSET,
        "score_boundary": DEFAULT_SCORE_LM_BOUNDARY,
    }
    words: list[str]
    if source.is_dir():
        kenlm_path = _find_kenlm_file(source)
        attrs.update(_read_attrs(source / "attrs.json"))
        if unigrams is None:
            unigrams_file = source / "unigrams.txt"
            if not unigrams_file.is_file():
                raise LanguageModelError(f"expected unigrams.txt in {source}, found none")
            unigrams = unigrams_file
        words = _read_unigrams(unigrams)
    else:
        kenlm_path = source
        if kenlm_path.suffix not in _KENLM_SUFFIXES:
            raise LanguageModelError(f"expected a KenLM file ending in {'/'.join(_KENLM_SUFFIXES)}, got {kenlm_path}")
        if unigrams is not None:
            words = _read_unigrams(unigrams)
        elif kenlm_path.suffix == ".arpa":
            try:
                words = sorted(load_unigram_set_from_arpa(str(kenlm_path)))
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                raise LanguageModelError(f"cannot read unigrams from {kenlm_path}: {exc}") from exc
        else:
            raise LanguageModelError(
                f"{kenlm_path} is a binary KenLM file, which does not list its words: "
                "pass unigrams= (a file with one word a line) or use the .arpa file"
            )
    for key in _ATTRS_KEYS:
        override = getattr(config, key)
        if override is not None:
            attrs[key] = override
    kenlm_model = _load_kenlm(kenlm_path)
    scorer = _PyctcLanguageModel(
        kenlm_model,
        words,
        alpha=attrs["alpha"],
        beta=attrs["beta"],
        unk_score_offset=attrs["unk_score_offset"],
        score_boundary=attrs["score_boundary"],
    )
    lm = LanguageModel(
        scorer,
        kenlm_path=kenlm_path,
        source=source,
        unigrams=frozenset(scorer._unigram_set),  # noqa: SLF001 - the filtered set it scores with
    )
    if vocab is not None:
        lm.check_vocab(vocab)
    return lm
