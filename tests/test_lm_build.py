"""The default LM: the PocketSphinx -> ARPA converter and the shipped models/en-small/language_model.

The converter test makes its input with the real tool: pocketsphinx reads a hand-made ARPA and
writes its trie binary, and this ARPA is shaped to trigger the same builder bug that left six
unreachable bigram slots in CMU's en-us.lm.bin (trigram "<s> a c" without bigram "a c", right after
unigram "b" whose last bigram is "a b"). KenLM then reads our ARPA and must score every trigram of
the kept words exactly as pocketsphinx scores the binary.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import random
import re
import sys
from pathlib import Path

import numpy as np
import pytest

kenlm = pytest.importorskip("kenlm")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "language_model"))
import pocketsphinx_to_arpa as p2a  # noqa: E402

MODEL_DIR = REPO / "models" / "en-small"
LM_DIR = MODEL_DIR / "language_model"

TINY_ARPA = """\
\\data\\
ngram 1=9
ngram 2=9
ngram 3=4

\\1-grams:
-1.0\t</s>\t0.0
-99\t<s>\t-0.5
-1.2\ta\t-0.3
-1.3\tb\t-0.2
-1.4\tc\t-0.25
-1.5\tD\t-0.1
-1.6\te-mail\t-0.1
-1.7\ta.\t-0.1
-1.8\tx.\t-0.2

\\2-grams:
-0.3\t<s> a\t-0.2
-0.4\ta b\t-0.1
-0.5\tb </s>\t0.0
-0.6\t<s> D\t-0.15
-0.7\tD a\t-0.05
-0.8\te-mail D\t0.0
-0.9\ta. </s>\t0.0
-0.6\tx. a\t-0.1
-0.5\tD </s>\t0.0

\\3-grams:
-0.1\t<s> a c
-0.2\t<s> D a
-0.3\t<s> a b
-0.4\tx. a b

\\end\\
"""
# How the converter respells the tiny vocabulary; "e-mail" and "a." (loses to "a") are dropped.
SPELLING = {"</s>": "</s>", "<s>": "<s>", "a": "a", "b": "b", "c": "c", "D": "d", "x.": "x"}


@pytest.fixture(scope="module")
def tiny_trie(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pocketsphinx = pytest.importorskip("pocketsphinx")
    folder = tmp_path_factory.mktemp("tiny_lm")
    (folder / "tiny.arpa").write_text(TINY_ARPA)
    model = pocketsphinx.NGramModel.readfile(str(folder / "tiny.arpa"))
    model.write(str(folder / "tiny.lm.bin"), pocketsphinx.NGramModel.str_to_type("bin"))
    return folder / "tiny.lm.bin"


def test_normalise_word() -> None:
    cases = {"Hello": "hello", "b.": "b", "b.'s": "b's", "don't": "don't", "'cause": "'cause",
             "e-mail": None, "u.s.": None, "mp3": None, "'": None, "<S>": "<s>", "</s>": "</s>"}
    assert {w: p2a.normalise_word(w) for w in cases} == cases


def test_reader_finds_the_unreachable_slot_and_the_misfiled_trigram(tiny_trie: Path) -> None:
    model, report = p2a.read_pocketsphinx_trie(tiny_trie.read_bytes())
    assert report.declared_counts == (9, 10, 4)
    assert report.unreachable == (0, 1, 0)
    trigrams = [tuple(model.vocabulary[w] for w in row) for row in model.orders[2].words]
    # "<s> a c" was filed under "a b": pocketsphinx now holds "<s> a b" twice.
    assert sorted(trigrams) == sorted([("<s>", "D", "a"), ("<s>", "a", "b"), ("<s>", "a", "b"),
                                       ("x.", "a", "b")])
    _, duplicates = p2a.drop_duplicates(model)
    assert duplicates == (0, 0, 1)


def test_converted_arpa_scores_like_pocketsphinx(tiny_trie: Path, tmp_path: Path) -> None:
    pocketsphinx = pytest.importorskip("pocketsphinx")
    arpa = tmp_path / "tiny.out.arpa"
    assert p2a.main([str(tiny_trie), str(arpa)]) == 0
    text = arpa.read_text()
    assert "e-mail" not in text and "a." not in text and "D" not in text
    header = [int(n) for n in re.findall(r"^ngram \d=(\d+)$", text, re.M)]
    sections = [re.search(rf"^\\{n}-grams:\n(.*?)\n\n", text, re.M | re.S) for n in (1, 2, 3)]
    assert header == [len(m[1].splitlines()) for m in sections if m] == [7, 7, 3]

    ours = kenlm.Model(str(arpa))
    truth = kenlm.Model(str(tiny_trie.parent / "tiny.arpa"))  # the hand-made original
    theirs = pocketsphinx.NGramModel.readfile(str(tiny_trie))
    to_log10 = math.log10(p2a.LOG_BASE)
    words = [w for w in SPELLING if w != "<s>"]
    for h2, h1, w in itertools.product(SPELLING, SPELLING, words):
        if h1 == "<s>":
            continue  # "<s>" only starts a sentence; KenLM keeps no history before it
        got = list(ours.full_scores(" ".join(SPELLING[x] for x in (h2, h1, w)),
                                    bos=False, eos=False))[-1][0]
        original = list(truth.full_scores(f"{h2} {h1} {w}", bos=False, eos=False))[-1][0]
        pocket = theirs.prob([w, h1, h2]) * to_log10  # predicted word first, then history
        if (h2, h1, w) == ("<s>", "a", "c"):
            # Misfiled by the builder: gone from the binary, so both back off.
            assert got == pytest.approx(pocket, abs=1e-3) and got < original - 1
        elif (h2, h1, w) == ("x.", "a", "b"):
            # The misfiled entry unsorted its range: pocketsphinx's search misses it, ours does not.
            assert got == pytest.approx(original, abs=1e-3) and pocket < original - 0.05
        else:
            assert got == pytest.approx(pocket, abs=1e-3), (h2, h1, w)
            assert got == pytest.approx(original, abs=1e-3), (h2, h1, w)


def test_missing_prefix_is_added_without_changing_scores() -> None:
    vocab = ("</s>", "<s>", "a", "b", "c")
    model = p2a.NGramModel(vocab, (
        p2a.NGramOrder(np.arange(5)[:, None], np.array([-1.0, -99, -1.2, -1.3, -1.4]),
                       np.array([0.0, -0.5, -0.3, -0.2, -0.25])),
        p2a.NGramOrder(np.array([[1, 2], [2, 3]]), np.array([-0.3, -0.4]), np.array([-0.2, -0.1])),
        p2a.NGramOrder(np.array([[3, 2, 4], [1, 2, 3]]), np.array([-0.1, -0.2]), None),
    ))  # "b a c" lacks its prefix "b a"
    fixed, added = p2a.add_missing_prefixes(model)
    assert added == (0, 1, 0)
    index = p2a.NGramIndex(fixed)
    row = index.find(np.array([[3, 2]]))[0]
    assert row >= 0
    assert index.model.orders[1].log10_prob[row] == pytest.approx(-0.2 + -1.2)  # bo(b) + p(a)
    backoff = index.model.orders[1].log10_backoff
    assert backoff is not None and backoff[row] == 0.0
    out = io.StringIO()
    p2a.write_arpa(index.model, out)
    assert "ngram 2=3" in out.getvalue()
    assert "-1.400000\tb a\t0.000000" in out.getvalue()


def test_shipped_lm_loads_and_prefers_english() -> None:
    from pyctcdecode import BeamSearchDecoderCTC, LanguageModel

    files = sorted(p.name for p in LM_DIR.iterdir() if not p.name.startswith("."))
    (binary,) = [name for name in files if name.endswith(".bin")]
    assert files == sorted(["attrs.json", "unigrams.txt", binary])
    assert (LM_DIR / binary).stat().st_size < 25e6
    attrs = json.loads((LM_DIR / "attrs.json").read_text())
    assert set(attrs) == {"alpha", "beta", "unk_score_offset", "score_boundary"}
    alphabet = json.loads((MODEL_DIR / "alphabet.json").read_text())
    assert alphabet["labels"][4:] == [" ", *"abcdefghijklmnopqrstuvwxyz", "'"]

    lm = LanguageModel.load_from_dir(str(LM_DIR))
    assert BeamSearchDecoderCTC.load_from_dir(str(MODEL_DIR)) is not None
    unigrams = (LM_DIR / "unigrams.txt").read_text().split()
    assert len(unigrams) > 70_000 and all(p2a.WORD_RE.fullmatch(w) for w in unigrams)

    model = kenlm.Model(str(LM_DIR / binary))
    assert lm.alpha == attrs["alpha"]
    rng = random.Random(0)
    for sentence in ["i would like a cup of coffee", "she went to the store to buy some bread"]:
        words = sentence.split()
        shuffled = words[:]
        while shuffled == words:
            rng.shuffle(shuffled)
        assert model.score(sentence) > model.score(" ".join(shuffled)) + 3  # 1000x likelier


def test_tune_alpha_beta_prefers_the_lm_where_acoustics_are_unsure(tiny_trie: Path,
                                                                     tmp_path: Path) -> None:
    import tune_alpha_beta
    from pyctcdecode import build_ctcdecoder

    arpa = tmp_path / "tiny.arpa"
    p2a.main([str(tiny_trie), str(arpa)])
    labels = ["<pad>", "<s>", "</s>", "<unk>", "|", *"abcdefghijklmnopqrstuvwxyz", "'"]
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    build_ctcdecoder(labels, str(arpa), unigrams=["a", "b", "c", "d", "x"]).save_to_dir(str(model_dir))

    # "a b", but the acoustics say "d" (0.55) a little more than "b" (0.45): P(b|a) saves it.
    dev = tmp_path / "dev"
    dev.mkdir()
    col = {label: i for i, label in enumerate(labels)}
    frames = np.full((5, len(labels)), 1e-6, dtype=np.float32)
    for t, label in enumerate(["a", "<pad>", "|", "<pad>"]):
        frames[t, col[label]] = 1.0
    frames[4, col["b"]], frames[4, col["d"]] = 0.45, 0.55
    np.save(dev / "utt1.npy", np.log(frames / frames.sum(axis=1, keepdims=True)))
    (dev / "utt1.txt").write_text("A b.\n")

    assert tune_alpha_beta.main(["--model-dir", str(model_dir), "--dev-dir", str(dev),
                                 "--alphas", "0,1", "--betas", "0", "--write"]) == 0
    points = tune_alpha_beta.grid_search(model_dir, tune_alpha_beta.load_dev_set(dev), [0.0, 1.0],
                                         [0.0])
    assert [(p.alpha, p.wer) for p in points] == [(None, 0.5), (0.0, 0.5), (1.0, 0.0)]
    assert tune_alpha_beta.grid_search(model_dir, tune_alpha_beta.load_dev_set(dev), [0.0, 1.0], [0.0],
                                       jobs=2) == points  # the same grid over two processes
    attrs = json.loads((model_dir / "language_model" / "attrs.json").read_text())
    assert (attrs["alpha"], attrs["beta"]) == (1.0, 0.0)


def test_tune_alpha_beta_reads_an_eval_folder_through_the_engine(tmp_path: Path) -> None:
    """--eval-dir: transcripts.tsv + audio -> full-utterance log-probs from the engine, cached."""
    import soundfile as sf
    import tune_alpha_beta
    from tiny_models import write_tiny_checkpoint

    from streaming import Engine

    model_dir = write_tiny_checkpoint(tmp_path / "model")
    dev = tmp_path / "dev"
    dev.mkdir()
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(8000)).astype(np.float32)
    sf.write(dev / "one.wav", audio, 8000, subtype="FLOAT")  # resampled to 16 kHz like any eval input
    (dev / "transcripts.tsv").write_text("one.wav\tHello, World\n")

    cache = tmp_path / "cache"
    utts = tune_alpha_beta.load_eval_dir(dev, model_dir, cache_dir=cache)
    expected = Engine.load(model_dir, lm=False).offline_log_probs(audio, 8000)
    assert [u.name for u in utts] == ["one"] and utts[0].reference == "hello world"
    np.testing.assert_array_equal(utts[0].logits, expected)
    np.testing.assert_array_equal(np.load(cache / "one.npy"), expected)
    (dev / "one.wav").unlink()  # served from the cache from now on
    assert tune_alpha_beta.load_eval_dir(dev, model_dir, cache_dir=cache)[0].logits.shape == expected.shape
