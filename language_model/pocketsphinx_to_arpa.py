"""Convert a PocketSphinx "Trie Language Model" binary (e.g. ``en-us.lm.bin``) to an ARPA file.

Why not ``pocketsphinx.NGramModel(...).write(path)``: on the shipped ``en-us.lm.bin`` it segfaults.
The file declares 2,051,547 bigrams but only 2,051,541 are reachable from the unigram table; the
writer walks the trie, collects 2,051,541 n-grams, then sorts an array of 2,051,547 whose last six
entries have a NULL word pointer (the assert that would catch it is compiled out). So this module
reads the binary itself, with numpy, and writes the ARPA text directly.

The format (pocketsphinx ``src/lm/ngram_model_trie.c``, ``lm_trie.c``, ``lm_trie_quant.c``; a port
of KenLM's bit-packed trie), all little-endian:

* ``b"Trie Language Model"`` (19 bytes, no NUL), ``uint8 order``, ``uint32 counts[order]``.
  ``counts`` are *declared* sizes; they may exceed what is actually in the trie (quirk 1).
* ``int32`` (always 1, formerly the quantiser type), then the quantisation tables: ``float32``
  bins, 2**16 for each middle order's probabilities, 2**16 for its backoffs, 2**16 for the longest
  order's probabilities. Unigrams are not quantised.
* ``counts[0] + 1`` unigram records ``{float32 prob, float32 backoff, uint32 next}``; the last is a
  sentinel whose ``next`` is the end of the last unigram's range. ``next`` indexes the bigram array.
* The n-gram memory: one bit-packed array per order 2..N. A middle entry is
  ``word_bits | 16-bit backoff code | 16-bit prob code | next_bits`` (LSB first; word_bits =
  bit length of counts[0], next_bits = bit length of the next order's declared count); a longest
  entry is ``word_bits | 16-bit prob code``. Each array has ``declared count + 1`` slots (the extra
  slot's ``next`` ends the last range) and 8 bytes of padding.
* ``uint32 nbytes`` and the NUL-terminated word strings in word-id order.

Quirks that matter for conversion:

1. **Unreachable slots and misfiled n-grams.** ``lm_trie_fix_counts`` sizes the arrays by counting
   one blank (see 4) for every trigram whose suffix bigram is missing. ``recursive_insert`` then
   decides whether a blank is needed by comparing the trigram's middle word with the last bigram it
   inserted, which may still belong to the *previous* unigram; when that stale word happens to
   match, no blank is inserted, the slot stays empty at the end of the bigram array, and the
   trigram is filed under that previous unigram's bigram, i.e. it becomes a different (wrong)
   trigram that may duplicate a real one. ``en-us.lm.bin`` has 6 such slots and no duplicates.
   We take each order's real size from its parent's sentinel ``next``, report the rest as
   unreachable, and keep the first of any duplicated n-gram, which is what pocketsphinx's lookup
   finds too. (The misfiled trigrams cannot be put back: the file no longer says where they were.)
2. **Reversed keys.** The trie is keyed by the *predicted* word first: unigram ``w`` -> child
   ``h1`` -> grandchild ``h2`` means the ARPA trigram ``h2 h1 w``. A middle entry's backoff belongs
   to the forward n-gram it spells (``h1 w``), as in ARPA.
3. **Log base.** Values are ``log_{1.0001}`` (pocketsphinx's default logmath base), not log10.
   Multiply by ``log10(1.0001)``. (Checked: the unigram probabilities then sum to 1 - 1e-6.)
4. **Blank suffixes.** The builder inserts an entry for a missing ``h1 w`` when ``h2 h1 w`` exists
   (KenLM does the same), with prob = backed-off prob and backoff 0. They are ordinary, valid ARPA
   n-grams, so they are kept.
5. **Quantisation.** Bigram/trigram probabilities and backoffs are 16-bit quantised; the values we
   write are the bin centres, i.e. exactly what pocketsphinx itself scores with.

Vocabulary normalisation for a character-level CTC model whose alphabet is ``a-z`` and ``'``
(see :func:`normalise_word`): lower-case; a trailing-dot letter ``b.`` (CMU's spelling of a spoken
letter) becomes ``b`` and ``b.'s`` becomes ``b's``; any word still holding another character
(``e-mail``, ``brother-in-law``, digits) is dropped. When two words normalise to the same spelling
(``a.`` and ``a``), the one already spelled that way wins, else the more probable unigram; the
loser is dropped. Dropping a word drops every n-gram that contains it, so each kept n-gram's prefix
and suffix are still present and the ARPA stays consistent; backoffs are left as they were, so the
kept distribution sums to slightly less than one (the dropped words' mass, reported by ``main``).

Usage::

    python language_model/pocketsphinx_to_arpa.py \\
        .venv/lib/python3.11/site-packages/pocketsphinx/model/en-us/en-us.lm.bin out.arpa
"""

from __future__ import annotations

import argparse
import math
import re
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
import numpy.typing as npt

MAGIC = b"Trie Language Model"
# pocketsphinx's default logmath base; the file does not record it.
LOG_BASE = 1.0001
QUANT_BITS = 16  # prob and backoff codes, fixed in lm_trie_quant.c
SENTENCE_TOKENS = ("<s>", "</s>", "<unk>")
WORD_RE = re.compile(r"[a-z']+")
SPOKEN_LETTER_RE = re.compile(r"([a-z])\.('s)?")

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


class TrieFormatError(ValueError):
    """The file is not a PocketSphinx trie LM, or its sizes do not add up."""


@dataclass(frozen=True)
class NGramOrder:
    """All n-grams of one order, in forward (ARPA) word order.

    ``words[:, 0]`` is the oldest history word and ``words[:, -1]`` the predicted word.
    """

    words: IntArray  # (count, n) word ids
    log10_prob: FloatArray  # (count,)
    log10_backoff: FloatArray | None  # (count,); None for the highest order


@dataclass(frozen=True)
class NGramModel:
    """A backoff n-gram model: ``orders[0]`` unigrams (``words`` is (V, 1)), up to ``orders[-1]``."""

    vocabulary: tuple[str, ...]
    orders: tuple[NGramOrder, ...]

    @property
    def order(self) -> int:
        return len(self.orders)


@dataclass(frozen=True)
class ReadReport:
    declared_counts: tuple[int, ...]
    reachable_counts: tuple[int, ...]

    @property
    def unreachable(self) -> tuple[int, ...]:
        return tuple(d - r for d, r in zip(self.declared_counts, self.reachable_counts, strict=True))


def bit_length(value: int) -> int:
    """``bitarr_required_bits``: bits needed to store 0..value. ``bit_length(72547) == 17``."""
    return int(value).bit_length()


def _packed_size(entries: int, entry_bits: int) -> int:
    """Bytes of one bit-packed order: ``entries`` + 1 sentinel slots, rounded up, + 8 padding.

    Example: 2,051,547 bigrams at 17 + 32 + 21 = 70 bits -> (2,051,548 * 70 + 7) // 8 + 8
    = 17,951,053 bytes.
    """
    return ((1 + entries) * entry_bits + 7) // 8 + 8


def _read_fields(mem: npt.NDArray[np.uint8], bit_offset: int, count: int, stride: int,
                 width: int) -> IntArray:
    """Read ``count`` unsigned ``width``-bit fields spaced ``stride`` bits apart, LSB first.

    Same as ``bitarr_read_int25``/``int57``: load 8 little-endian bytes at ``offset >> 3``, shift by
    ``offset & 7``, mask. ``width`` must be <= 57.
    """
    offsets = bit_offset + np.arange(count, dtype=np.int64) * stride
    first_byte = offsets >> 3
    value = np.zeros(count, dtype=np.uint64)
    for j in range(8):
        value |= mem[first_byte + j].astype(np.uint64) << np.uint64(8 * j)
    value >>= (offsets & 7).astype(np.uint64)
    value &= np.uint64((1 << width) - 1)
    return value.astype(np.int64)


def _parent_of(child_index: IntArray, parent_next: IntArray) -> IntArray:
    """Map child slots to the parent whose ``[next[p], next[p+1])`` range holds them.

    ``parent_next`` has one entry per parent plus the sentinel. Example: next = [0, 2, 2, 5] ->
    children 0,1 belong to parent 0, parent 1 has none, children 2,3,4 belong to parent 2.
    """
    return np.searchsorted(parent_next, child_index, side="right").astype(np.int64) - 1


def read_pocketsphinx_trie(data: bytes, log_base: float = LOG_BASE) -> tuple[NGramModel, ReadReport]:
    """Parse a PocketSphinx trie LM (the bytes of the file) into forward-order n-gram tables."""
    if data[: len(MAGIC)] != MAGIC:
        raise TrieFormatError(f"expected header {MAGIC!r}, found {data[:len(MAGIC)]!r}")
    pos = len(MAGIC)
    order = data[pos]
    pos += 1
    if not 2 <= order <= 6:
        raise TrieFormatError(f"expected n-gram order 2..6, found {order}")
    declared = struct.unpack_from(f"<{order}I", data, pos)
    pos += 4 * order
    n_words = declared[0]
    pos += 4  # int32 "quantiser type", always 1

    n_bins = 1 << QUANT_BITS
    n_quant = (order - 2) * 2 * n_bins + n_bins
    quant = np.frombuffer(data, dtype="<f4", count=n_quant, offset=pos).astype(np.float64)
    pos += 4 * n_quant
    to_log10 = math.log10(log_base)

    unigram_dtype = np.dtype([("prob", "<f4"), ("backoff", "<f4"), ("next", "<u4")])
    unigrams = np.frombuffer(data, dtype=unigram_dtype, count=n_words + 1, offset=pos)
    pos += unigram_dtype.itemsize * (n_words + 1)

    word_bits = bit_length(n_words)
    entry_bits = []
    for k in range(1, order):  # k indexes counts: order k+1 n-grams
        next_bits = bit_length(declared[k + 1]) if k < order - 1 else 0
        quant_bits = 2 * QUANT_BITS if k < order - 1 else QUANT_BITS
        entry_bits.append(word_bits + quant_bits + next_bits)
    sizes = [_packed_size(declared[k], entry_bits[k - 1]) for k in range(1, order)]
    mem = np.frombuffer(data, dtype=np.uint8, count=sum(sizes), offset=pos)
    pos += sum(sizes)

    (n_bytes,) = struct.unpack_from("<I", data, pos)
    pos += 4
    raw_words = data[pos : pos + n_bytes].split(b"\0")
    pos += n_bytes
    if raw_words[-1] != b"" or len(raw_words) - 1 != n_words:
        raise TrieFormatError(f"expected {n_words} word strings, found {len(raw_words) - 1}")
    if pos != len(data):
        raise TrieFormatError(f"expected the file to end at byte {pos}, it has {len(data)}")
    vocabulary = tuple(w.decode("utf-8") for w in raw_words[:-1])

    # Level 1: unigrams. ``paths`` holds each entry's reversed key: predicted word first.
    uni_ids = np.arange(n_words, dtype=np.int64)
    orders = [NGramOrder(uni_ids[:, None],
                         unigrams["prob"][:n_words].astype(np.float64) * to_log10,
                         unigrams["backoff"][:n_words].astype(np.float64) * to_log10)]
    reachable = [n_words]
    paths = uni_ids[:, None]  # (count, n) reversed word ids
    parent_next = unigrams["next"].astype(np.int64)  # (count + 1,) child ranges
    byte_base = 0
    quant_base = 0
    for k in range(1, order):  # this level holds (k + 1)-grams
        is_longest = k == order - 1
        bits = entry_bits[k - 1]
        level_mem = mem[byte_base : byte_base + sizes[k - 1]]
        byte_base += sizes[k - 1]
        n_real = int(parent_next[-1])  # quirk 1: may be less than declared[k]
        if parent_next[0] != 0 or np.any(np.diff(parent_next) < 0) or n_real > declared[k]:
            raise TrieFormatError(f"order {k + 1}: child ranges are not a monotone cover of "
                                  f"0..{declared[k]}")
        reachable.append(n_real)
        word = _read_fields(level_mem, 0, n_real, bits, word_bits)
        if n_real and int(word.max()) >= n_words:
            raise TrieFormatError(f"order {k + 1}: word id {int(word.max())} >= {n_words}")
        parent = _parent_of(np.arange(n_real, dtype=np.int64), parent_next)
        paths = np.concatenate([paths[parent], word[:, None]], axis=1)
        if is_longest:
            prob_code = _read_fields(level_mem, word_bits, n_real, bits, QUANT_BITS)
            backoff = None
        else:
            bo_code = _read_fields(level_mem, word_bits, n_real, bits, QUANT_BITS)
            prob_code = _read_fields(level_mem, word_bits + QUANT_BITS, n_real, bits, QUANT_BITS)
            backoff = quant[quant_base + n_bins + bo_code] * to_log10
            next_bits = bits - word_bits - 2 * QUANT_BITS
            parent_next = _read_fields(level_mem, word_bits + 2 * QUANT_BITS, n_real + 1, bits,
                                       next_bits)
        prob = quant[quant_base + prob_code] * to_log10
        quant_base += 2 * n_bins
        orders.append(NGramOrder(np.ascontiguousarray(paths[:, ::-1]), prob, backoff))
    return NGramModel(vocabulary, tuple(orders)), ReadReport(tuple(declared), tuple(reachable))


def normalise_word(word: str) -> str | None:
    """Spell ``word`` in the acoustic model's alphabet (a-z and '), or None if it cannot be.

    >>> [normalise_word(w) for w in ["Hello", "b.", "b.'s", "don't", "e-mail", "<S>", "'"]]
    ['hello', 'b', "b's", "don't", None, '<s>', None]
    """
    lowered = word.lower()
    if lowered in SENTENCE_TOKENS:
        return lowered
    letter = SPOKEN_LETTER_RE.fullmatch(lowered)
    if letter:
        lowered = letter[1] + (letter[2] or "")
    if WORD_RE.fullmatch(lowered) and re.search("[a-z]", lowered):
        return lowered
    return None


@dataclass(frozen=True)
class VocabularyReport:
    kept: int
    dropped_unspellable: tuple[str, ...]  # e.g. "e-mail"
    dropped_collisions: tuple[tuple[str, str], ...]  # (dropped word, the word that kept its spelling)
    renamed: tuple[tuple[str, str], ...]  # (old, new) for kept words respelled, e.g. ("x.", "x")
    dropped_unigram_mass: float  # probability mass of the dropped unigrams


def normalise_vocabulary(model: NGramModel) -> tuple[NGramModel, VocabularyReport]:
    """Rename words with :func:`normalise_word`; drop the unspellable and collision losers.

    Every n-gram containing a dropped word is dropped. Word ids are renumbered densely, keeping
    the original order.
    """
    unigram_prob = model.orders[0].log10_prob
    by_spelling: dict[str, list[int]] = {}
    unspellable = []
    for wid, word in enumerate(model.vocabulary):
        spelled = normalise_word(word)
        if spelled is None:
            unspellable.append(word)
        else:
            by_spelling.setdefault(spelled, []).append(wid)
    new_spelling: dict[int, str] = {}
    collisions = []
    for spelled, wids in by_spelling.items():
        # The word already spelled this way wins ("a" over "a."), else the likelier one.
        winner = max(wids, key=lambda w: (model.vocabulary[w] == spelled, unigram_prob[w]))
        new_spelling[winner] = spelled
        collisions += [(model.vocabulary[w], model.vocabulary[winner]) for w in wids if w != winner]

    n_old = len(model.vocabulary)
    keep = np.zeros(n_old, dtype=bool)
    keep[list(new_spelling)] = True
    new_id = np.cumsum(keep) - 1
    vocabulary = tuple(new_spelling[w] for w in range(n_old) if keep[w])
    orders = []
    for table in model.orders:
        mask = np.all(keep[table.words], axis=1)
        orders.append(NGramOrder(new_id[table.words[mask]], table.log10_prob[mask],
                                 None if table.log10_backoff is None else table.log10_backoff[mask]))
    dropped_mass = float(np.sum(10.0 ** unigram_prob[~keep]))
    renamed = tuple((model.vocabulary[w], s) for w, s in sorted(new_spelling.items())
                    if model.vocabulary[w] != s)
    report = VocabularyReport(len(vocabulary), tuple(unspellable), tuple(collisions), renamed,
                              dropped_mass)
    return NGramModel(vocabulary, tuple(orders)), report


def _row_view(rows: IntArray) -> npt.NDArray[np.void]:
    """View each int64 row as one opaque value, so rows can be compared as a set."""
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    return rows.view(np.dtype((np.void, 8 * rows.shape[1]))).ravel()


def _take(table: NGramOrder, index: IntArray) -> NGramOrder:
    return NGramOrder(table.words[index], table.log10_prob[index],
                      None if table.log10_backoff is None else table.log10_backoff[index])


def _find(keys: Sequence[IntArray], n_words: int, rows: IntArray) -> IntArray:
    """Row of each n-gram of ``rows`` (count, n) in its sorted order table, -1 where absent."""
    ids = rows[:, 0].astype(np.int64)
    for k in range(1, rows.shape[1]):
        keys_k = keys[k]
        if len(keys_k) == 0:
            return np.full(len(rows), -1, dtype=np.int64)
        key = ids * n_words + rows[:, k]
        pos = np.minimum(np.searchsorted(keys_k, key), len(keys_k) - 1)
        ids = np.where((ids >= 0) & (keys_k[pos] == key), pos, -1)
    return ids


class NGramIndex:
    """A model with each order sorted for exact lookup, plus a vectorised backoff scorer.

    An n-gram's key is ``row(prefix) * V + last word``, where ``row(prefix)`` is the prefix's row
    in the sorted table one order down (so keys fit int64 for any order). Building the index sorts
    the tables; ``self.model`` is that sorted model. Every n-gram's prefix must be present
    (see :func:`add_missing_prefixes`).
    """

    def __init__(self, model: NGramModel) -> None:
        n_words = len(model.vocabulary)
        unigram_ids = model.orders[0].words[:, 0]
        if not np.array_equal(np.sort(unigram_ids), np.arange(n_words)):
            raise ValueError(f"unigram table must hold each of the {n_words} word ids once")
        orders = [_take(model.orders[0], np.argsort(unigram_ids, kind="stable"))]
        self.n_words = n_words
        self.keys: list[IntArray] = [np.arange(n_words, dtype=np.int64)]
        for n in range(2, model.order + 1):
            table = model.orders[n - 1]
            prefix = _find(self.keys, n_words, table.words[:, :-1])
            if np.any(prefix < 0):
                raise ValueError(f"{int(np.sum(prefix < 0))} {n}-grams have no {n - 1}-gram "
                                 "prefix; run add_missing_prefixes first")
            keys = prefix * n_words + table.words[:, -1]
            perm = np.argsort(keys, kind="stable")
            keys = keys[perm]
            if len(keys) > 1 and np.any(np.diff(keys) == 0):
                raise ValueError(f"the {n}-gram table has duplicate n-grams")
            orders.append(_take(table, perm))
            self.keys.append(keys)
        self.model = NGramModel(model.vocabulary, tuple(orders))

    def find(self, rows: IntArray) -> IntArray:
        """Row of each n-gram of ``rows`` (count, n) in ``self.model``'s table, -1 if absent."""
        return _find(self.keys, self.n_words, rows)

    def log10_prob(self, rows: IntArray) -> FloatArray:
        """log10 P(rows[:, -1] | rows[:, :-1]) with standard ARPA backoff, vectorised."""
        if rows.shape[1] > self.model.order:
            rows = rows[:, -self.model.order :]
        n = rows.shape[1]
        if n == 1:
            return self.model.orders[0].log10_prob[rows[:, 0]]
        found = self.find(rows)
        result = np.empty(len(rows))
        hit = found >= 0
        result[hit] = self.model.orders[n - 1].log10_prob[found[hit]]
        miss = ~hit
        if np.any(miss):
            context = self.find(rows[miss, :-1])
            backoff_table = self.model.orders[n - 2].log10_backoff
            assert backoff_table is not None
            backoff = np.where(context >= 0, backoff_table[np.maximum(context, 0)], 0.0)
            result[miss] = backoff + self.log10_prob(rows[miss, 1:])
        return result


def drop_duplicates(model: NGramModel) -> tuple[NGramModel, tuple[int, ...]]:
    """Keep the first row of each n-gram that appears more than once (quirk 1); count the rest."""
    orders = []
    dropped = []
    for table in model.orders:
        _, first = np.unique(_row_view(table.words), return_index=True)
        first = np.sort(first)
        dropped.append(len(table.words) - len(first))
        orders.append(_take(table, first) if dropped[-1] else table)
    return NGramModel(model.vocabulary, tuple(orders)), tuple(dropped)


def add_missing_prefixes(model: NGramModel) -> tuple[NGramModel, tuple[int, ...]]:
    """Make every n-gram's prefix (its context) an explicit (n-1)-gram, as ARPA requires.

    An added prefix gets the probability the model already gave it by backing off and a backoff
    of 0, so no score changes: a missing context contributed no backoff weight before either.
    Returns the model and how many n-grams were added per order (index 0 = unigrams, always 0).
    """
    rows = [t.words for t in model.orders]
    added_rows: list[IntArray] = [np.zeros((0, n + 1), dtype=np.int64) for n in range(model.order)]
    for n in range(model.order, 1, -1):  # top-down: added rows may need prefixes themselves
        needed = np.unique(_row_view(rows[n - 1][:, :-1]))
        have = _row_view(rows[n - 2])
        missing = needed[~np.isin(needed, have)].view(np.int64).reshape(-1, n - 1)
        if n - 1 == 1 and len(missing):
            raise ValueError(f"{len(missing)} n-grams use words that are not unigrams")
        added_rows[n - 2] = missing
        rows[n - 2] = np.concatenate([rows[n - 2], missing])
    orders = [model.orders[0]]
    for n in range(2, model.order + 1):  # bottom-up: score the added rows with complete orders below
        table = model.orders[n - 1]
        extra = added_rows[n - 1]
        if len(extra):
            lower = NGramIndex(NGramModel(model.vocabulary, tuple(orders)))  # orders 1..n-1
            context = lower.find(extra[:, :-1])
            context_backoff = lower.model.orders[n - 2].log10_backoff
            assert context_backoff is not None
            backoff = np.where(context >= 0, context_backoff[np.maximum(context, 0)], 0.0)
            prob = backoff + lower.log10_prob(extra[:, 1:])
            assert table.log10_backoff is not None
            table = NGramOrder(np.concatenate([table.words, extra]),
                               np.concatenate([table.log10_prob, prob]),
                               np.concatenate([table.log10_backoff, np.zeros(len(extra))]))
        orders.append(table)
    return NGramModel(model.vocabulary, tuple(orders)), tuple(len(a) for a in added_rows)


def missing_suffix_counts(index: NGramIndex) -> tuple[int, ...]:
    """How many n-grams per order lack their suffix ``w2..wn`` (allowed in ARPA; KenLM fills in)."""
    counts = [0]
    for n in range(2, index.model.order + 1):
        counts.append(int(np.sum(index.find(index.model.orders[n - 1].words[:, 1:]) < 0)))
    return tuple(counts)


def write_arpa(model: NGramModel, out: TextIO) -> None:
    """Write ``model`` as ARPA text; backoffs on every order but the highest, 6 decimals."""
    vocab = np.array(model.vocabulary, dtype=object)
    out.write("\\data\\\n")
    for n, table in enumerate(model.orders, start=1):
        out.write(f"ngram {n}={len(table.log10_prob)}\n")
    for n, table in enumerate(model.orders, start=1):
        out.write(f"\n\\{n}-grams:\n")
        text = vocab[table.words[:, 0]]
        for k in range(1, n):
            text = text + " " + vocab[table.words[:, k]]
        chunk = 200_000
        for start in range(0, len(text), chunk):
            stop = start + chunk
            probs = table.log10_prob[start:stop]
            if table.log10_backoff is None:
                lines = [f"{p:.6f}\t{w}\n" for p, w in zip(probs, text[start:stop], strict=True)]
            else:
                lines = [f"{p:.6f}\t{w}\t{b:.6f}\n" for p, w, b in
                         zip(probs, text[start:stop], table.log10_backoff[start:stop], strict=True)]
            out.write("".join(lines))
    out.write("\n\\end\\\n")


@dataclass(frozen=True)
class ConversionReport:
    read: ReadReport
    duplicates: tuple[int, ...]
    vocabulary: VocabularyReport | None
    added_prefixes: tuple[int, ...]
    missing_suffixes: tuple[int, ...]
    counts: tuple[int, ...]

    def lines(self) -> list[str]:
        out = [f"declared n-gram counts {self.read.declared_counts}, reachable "
               f"{self.read.reachable_counts} (unreachable slots skipped: {self.read.unreachable}); "
               f"duplicate n-grams dropped {self.duplicates}"]
        if self.vocabulary is not None:
            v = self.vocabulary
            out.append(f"vocabulary: kept {v.kept}, respelled {len(v.renamed)} {v.renamed[:3]}, "
                       f"dropped {len(v.dropped_unspellable)} unspellable (e.g. "
                       f"{', '.join(v.dropped_unspellable[:4])}) and {len(v.dropped_collisions)} "
                       f"spelling collisions (e.g. {v.dropped_collisions[:3]}); "
                       f"dropped unigram mass {v.dropped_unigram_mass:.5f}")
        out.append(f"prefixes added {self.added_prefixes}; n-grams without their suffix "
                   f"{self.missing_suffixes} (allowed)")
        out.append(f"written n-gram counts {self.counts}")
        return out


def convert(data: bytes, out: TextIO, *, normalise: bool = True,
            log_base: float = LOG_BASE) -> ConversionReport:
    """PocketSphinx trie bytes -> ARPA text on ``out``. See the module docstring for the steps."""
    model, read_report = read_pocketsphinx_trie(data, log_base)
    model, duplicates = drop_duplicates(model)
    vocab_report = None
    if normalise:
        model, vocab_report = normalise_vocabulary(model)
    model, added = add_missing_prefixes(model)
    index = NGramIndex(model)  # sorts: ARPA sections come out in a stable, reproducible order
    write_arpa(index.model, out)
    return ConversionReport(read_report, duplicates, vocab_report, added, missing_suffix_counts(index),
                            tuple(len(t.log10_prob) for t in index.model.orders))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("input", type=Path, help="PocketSphinx trie LM, e.g. en-us.lm.bin")
    parser.add_argument("output", type=Path, help="ARPA file to write")
    group = parser.add_argument_group("conversion")
    group.add_argument("--log-base", type=float, default=LOG_BASE,
                       help="logmath base the binary was written with (pocketsphinx default)")
    group.add_argument("--keep-vocabulary", action="store_true",
                       help="write the words as they are instead of normalising to a-z and '")
    args = parser.parse_args(argv)

    data = args.input.read_bytes()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_name(args.output.name + ".tmp")
    with tmp.open("w", encoding="utf-8", newline="\n") as out:
        report = convert(data, out, normalise=not args.keep_vocabulary, log_base=args.log_base)
    tmp.replace(args.output)
    for line in report.lines():
        print(line, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
