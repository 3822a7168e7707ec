"""The engine's public API: a shared :class:`Engine` and one :class:`Recognizer` per stream.

Data flow of one stream::

    accept_audio(int16/float32, any rate)
      -> validate, resample to 16 kHz (audio.py)
      -> windows: chunk + left context + right look-ahead, as the engine's
         stream plan says (plan.py, windows.py); buffered and scaled with
         running statistics by the stream's scheduler (window_scheduler.py,
         normalization.py)
      -> acoustic model, batched across streams (batched_forward.py, acoustic_model.py)
      -> stitched frames: each window's chunk (window_scheduler.py, stitching.py)
      -> incremental CTC beam search with an n-gram LM (decoder.py)
      -> endpointing on trailing non-speech frames (endpointing.py); between
         chunks, a pause that goes on in quiet audio is decoded sooner (a probe)
      -> Partial / Final events (events.py)

The recognizer does no I/O and starts no threads.  With ``inline=True`` it
runs the model itself inside ``accept_audio``; with ``inline=False`` it only
buffers, and a server collects ``take_windows()`` from many streams, runs them
through ``Engine.run_windows`` in one batched forward off its event loop, and
hands the outputs back with ``accept_window_outputs``.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .acoustic_model import AcousticModel, ModelInfo
from .arrays import AnyArray, BoolArray, FloatArray
from .audio import StreamResampler, as_float32_mono, check_float_amplitude, validate_sample_rate
from .batched_forward import run_windows
from .decoder import DecodedWord, DecoderConfig, DecoderStream, Hypothesis, build_decoder
from .endpointing import WORD_END, EndpointConfig, Endpointer, QuietAudio, ends_in_word
from .errors import AudioError, StreamStateError
from .events import Alternative, Event, Final, Partial, Word
from .grammar import Grammar, compile_grammar
from .language_model import LanguageModel, build_labels
from .loading import default_model_path, load_language_model_for, load_model
from .normalization import normalize_utterance
from .plan import StreamPlan, plan_stream
from .stitching import WindowOutput, WindowRequest
from .window_scheduler import WindowScheduler
from .windows import FrameGeometry, WindowConfig, num_frames

__all__ = ["Engine", "Recognizer"]

logger = logging.getLogger(__name__)

class Engine:
    """One acoustic model and decoder (with its LM), shared by every stream.

    ``run_windows`` may be called from one worker thread while streams are
    driven elsewhere; the model call itself is serialised by a lock.
    """

    def __init__(
        self,
        model: AcousticModel,
        *,
        language_model: LanguageModel | None = None,
        decoder_config: DecoderConfig | None = None,
        window: WindowConfig | None = None,
        endpoint: EndpointConfig | None = None,
        normalization: str = "running",
        reuse_features: bool = True,
    ) -> None:
        self.model = model
        self.info: ModelInfo = model.info
        self.language_model = language_model
        self.decoder_config = decoder_config or DecoderConfig()
        self.endpoint = endpoint or EndpointConfig()
        self.plan: StreamPlan = plan_stream(
            window or WindowConfig(),
            FrameGeometry(
                hop_samples=self.info.hop_samples,
                receptive_field_samples=self.info.receptive_field_samples,
                sample_rate=self.info.sample_rate,
            ),
            features_are_local=model.features_are_local,
            pos_context_frames=model.pos_context_frames,
            do_normalize=self.info.do_normalize,
            normalization=normalization,
            reuse_features=reuse_features,
        )
        if self.plan.fallback is not None:
            logger.info("%s", self.plan.fallback)
        self._decoder = build_decoder(self.info.vocab, lm=language_model, config=self.decoder_config)
        self._model_lock = threading.Lock()
        self._stream_ids = itertools.count()

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(
        cls,
        model: str | Path | None = None,
        *,
        lm: str | Path | bool | None = None,
        dtype: str = "float32",
        device: str = "cpu",
        threads: int | None = None,
        decoder: DecoderConfig | None = None,
        window: WindowConfig | None = None,
        endpoint: EndpointConfig | None = None,
        normalization: str = "running",
        reuse_features: bool = True,
    ) -> Engine:
        """Load a checkpoint and its LM.

        ``model``: a local Wav2Vec2ForCTC folder or a Hub id; None is the shipped default.
        ``lm``: None uses the checkpoint's ``language_model/`` when it has one; False
        decodes without an LM; a path loads that LM folder or KenLM file.
        ``dtype``: float32 (the reference), bfloat16, float16 (CUDA) or auto (bfloat16 on
        CPUs with bf16 instructions, as the command line uses); see ``load_model``.
        """
        acoustic = load_model(
            default_model_path() if model is None else model, device=device, dtype=dtype, threads=threads
        )
        return cls(
            acoustic,
            language_model=load_language_model_for(acoustic.info, lm),
            decoder_config=decoder or DecoderConfig(),
            window=window,
            endpoint=endpoint,
            normalization=normalization,
            reuse_features=reuse_features,
        )

    @property
    def lm_description(self) -> str | None:
        return None if self.language_model is None else str(self.language_model)

    # ---------------------------------------------------------------- decoders
    def new_decoder_stream(
        self, *, use_lm: bool = True, hotwords: Sequence[str] = (), grammar: Grammar | None = None
    ) -> DecoderStream:
        return self._decoder.new_stream(hotwords=tuple(hotwords) or None, use_lm=use_lm, grammar=grammar)

    def compile_grammar(self, phrases: Sequence[str]) -> Grammar:
        """A vosk phrase list compiled for this engine's vocabulary (see streaming/grammar.py)."""
        return compile_grammar(phrases, build_labels(self.info.vocab))

    # ---------------------------------------------------------------- streams
    def new_stream(
        self,
        *,
        sample_rate: int = 16_000,
        hotwords: Sequence[str] = (),
        use_lm: bool = True,
        inline: bool = True,
        record_log_probs: bool = False,
        max_alternatives: int = 0,
        grammar: Sequence[str] = (),
    ) -> Recognizer:
        return Recognizer(
            self,
            sample_rate=sample_rate,
            hotwords=hotwords,
            use_lm=use_lm,
            inline=inline,
            record_log_probs=record_log_probs,
            max_alternatives=max_alternatives,
            grammar=grammar,
        )

    def run_windows(self, requests: Sequence[WindowRequest]) -> list[WindowOutput]:
        """Run windows of any streams through the model, batching equal shapes.

        Blocking; call it off an event loop.  Returns one output per request, in order.
        """
        with self._model_lock:
            return run_windows(self.model, self.plan, requests)

    def next_stream_id(self) -> int:
        """A new stream's id: window requests carry it back to their stream."""
        return next(self._stream_ids)

    # ---------------------------------------------------------------- offline
    def offline_log_probs(self, samples: AnyArray, sample_rate: int = 16_000) -> FloatArray:
        """Full-utterance log-probs (frames, vocab): the reference streaming must match."""
        audio = _prepare_utterance(samples, sample_rate, self.info.sample_rate)
        if self.info.do_normalize:
            audio = normalize_utterance(audio)
        if num_frames(audio.shape[0], self.plan.geometry) == 0:
            return np.zeros((0, len(self.info.vocab)), dtype=np.float32)
        with self._model_lock:
            log_probs: FloatArray = self.model.log_probs(audio[None, :])[0]
            return log_probs

    def transcribe_offline(
        self,
        samples: AnyArray,
        sample_rate: int = 16_000,
        *,
        use_lm: bool = True,
        hotwords: Sequence[str] = (),
    ) -> Final:
        """Decode a whole utterance at once: full-utterance logits, one beam search."""
        log_probs = self.offline_log_probs(samples, sample_rate)
        stream = self.new_decoder_stream(use_lm=use_lm, hotwords=hotwords)
        if log_probs.shape[0]:
            stream.accept(log_probs)
        hyp = stream.finalize()
        end = log_probs.shape[0] * self.plan.geometry.frame_seconds
        return Final(
            text=hyp.text,
            words=_words(hyp.words, 0, self.plan.geometry.frame_seconds),
            segment=0,
            start=0.0,
            end=end,
            reason="finish",
        )


class Recognizer:
    """Recognition state of one audio stream.  Drive it from one thread or task."""

    def __init__(
        self,
        engine: Engine,
        *,
        sample_rate: int = 16_000,
        hotwords: Sequence[str] = (),
        use_lm: bool = True,
        inline: bool = True,
        record_log_probs: bool = False,
        max_alternatives: int = 0,
        grammar: Sequence[str] = (),
    ) -> None:
        if isinstance(max_alternatives, bool) or not isinstance(max_alternatives, int) or max_alternatives < 0:
            raise ValueError(f"max_alternatives must be an int >= 0, got {max_alternatives!r}")
        self.engine = engine
        self.id = engine.next_stream_id()
        self.sample_rate = validate_sample_rate(sample_rate)
        self.inline = inline
        self._plan = engine.plan
        self._geo = engine.plan.geometry
        self._resampler = StreamResampler(self.sample_rate, engine.info.sample_rate)
        self._use_lm = use_lm
        self._hotwords = tuple(hotwords)
        self._max_alternatives = max_alternatives  # n-best list size of each Final; 0: none
        # vosk's phrase_list: recognition restricted to these phrases' words (no LM, no hotwords).
        if isinstance(grammar, str):
            raise ValueError(f"grammar must be a sequence of phrases, got the str {grammar!r}")
        self._grammar = engine.compile_grammar(grammar) if grammar else None
        self._windows = WindowScheduler(engine.plan, stream_id=self.id, vocab_size=len(engine.info.vocab))
        self._finished = False
        self._closed = False
        self._events: list[Event] = []
        self._endpointer = Endpointer(engine.endpoint, self._geo.frame_seconds)
        probing = engine.endpoint.enabled and engine.endpoint.probe_quiet_audio
        self._quiet = QuietAudio(self._geo.hop_samples) if probing else None
        # Where the model's newest window ended (its look-ahead included) and the trailing
        # non-speech it heard there: a probe extends that pause with quiet audio.  None: no
        # window since the last probe or segment end.
        self._probe_from: int | None = None
        self._probe_pause = 0
        self._probe_word: bool | None = None  # does that window's hypothesis end in a word (asked once)
        # A probe decodes for good only the frames that hear the whole look-ahead, as every
        # window does (decoded sooner, the model's late letters would be lost): the frames
        # after them are its window's look-ahead.
        self._probe_keep_back = max(1, self._plan.right_frames)
        self._probe_tail = round(0.2 / self._geo.frame_seconds)  # frames after a last letter that may still sound
        self._stream: DecoderStream = self._new_decoder_stream()
        self._segment = 0
        self._segment_start = 0  # global frame where the open segment began
        self._decoded_frames = 0
        self._last_partial: str | None = None
        # Log-probs of the newest window's look-ahead frames: a partial's provisional tail.
        self._lookahead = np.zeros((0, len(engine.info.vocab)), dtype=np.float32)  # (frames, vocab)
        silent = {engine.info.blank_id}
        if engine.info.word_delimiter in engine.info.vocab:
            silent.add(engine.info.vocab.index(engine.info.word_delimiter))
        self._silent_ids = np.array(sorted(silent))
        # Rule 2b peeks at the hypothesis with its last word closed by one delimiter frame.
        self._closing = np.full((1, len(engine.info.vocab)), -30.0, dtype=np.float32)  # (1, vocab)
        self._closing[0, max(silent)] = 0.0  # the delimiter (blank where there is none: a no-op)
        # Benchmarks and tests compare stitched frames with a full-utterance forward.
        self._recorded: list[FloatArray] | None = [] if record_log_probs else None

    # ----------------------------------------------------------------- input
    def accept_audio(self, samples: AnyArray, sample_rate: int | None = None) -> None:
        """Add a block of mono int16 or float32 samples.

        A bad block raises :class:`AudioError` and leaves the stream as it was,
        so nothing recognised so far is lost.
        """
        if self._finished:
            raise StreamStateError("audio after finish(): open a new stream for more audio")
        if sample_rate is not None and validate_sample_rate(sample_rate) != self.sample_rate:
            raise AudioError(
                f"stream was opened at {self.sample_rate} Hz, this block says {sample_rate} Hz"
            )
        block = as_float32_mono(samples)
        if block.size == 0:
            return
        if samples.dtype != np.int16 and self._plan.normalization == "running":
            # One int16-scale block would swamp the statistics that scale the rest of the stream.
            check_float_amplitude(block)
        audio = self._resampler.process(block)
        if self._quiet is not None:
            self._quiet.accept(audio)
        self._windows.accept(audio)
        if self.inline:
            self._run_inline()
        self._probe()

    def finish(self) -> None:
        """End of audio: decode everything left; the last event is a Final ("finish")."""
        if self._finished:
            return
        self._windows.accept(self._resampler.flush())
        self._finished = True
        self._windows.finish()
        if self.inline:
            self._run_inline()
        self._maybe_close()

    def reset(self) -> None:
        """Close the open segment over all audio accepted so far (Final "reset"), keep the stream.

        The audio not yet decoded is decoded first, its last window without the
        look-ahead it would have waited for, as at finish(): a reset's final never
        leaves audio sent before it to the next segment.  With ``inline=False``
        the Final comes once the windows this releases are decoded.
        """
        if self._closed:
            raise StreamStateError("reset() after the stream was finished")
        self._windows.flush()
        if self.inline:
            self._run_inline()
        self._end_flush()

    def events(self) -> list[Event]:
        """Events produced since the last call, oldest first."""
        out, self._events = self._events, []
        return out

    @property
    def audio_seconds(self) -> float:
        return self._windows.total_samples / self._geo.sample_rate

    @property
    def decoded_seconds(self) -> float:
        return self._decoded_frames * self._geo.frame_seconds

    def recorded_log_probs(self) -> FloatArray:
        """All stitched frames so far, (frames, vocab); needs ``record_log_probs=True``."""
        if self._recorded is None:
            raise StreamStateError("stream was opened without record_log_probs=True")
        if not self._recorded:
            return np.zeros((0, len(self.engine.info.vocab)), dtype=np.float32)
        return np.concatenate(self._recorded)

    @property
    def finished(self) -> bool:
        """True once finish() was called and its last Final was produced."""
        return self._closed

    # ------------------------------------------------------- batched compute
    def take_windows(self) -> list[WindowRequest]:
        """Windows whose audio is complete, in order.  Each must come back through
        :meth:`accept_window_outputs`, in the same order."""
        return self._windows.take()

    def accept_window_outputs(
        self, requests: Sequence[WindowRequest], outputs: Sequence[WindowOutput]
    ) -> None:
        """Stitch and decode the model's outputs for requests from :meth:`take_windows`."""
        if len(requests) != len(outputs):
            raise ValueError(f"{len(requests)} requests but {len(outputs)} outputs")
        for request, output in zip(requests, outputs):
            stitched = self._windows.accept_output(request, output)
            if self._recorded is not None:
                self._recorded.append(stitched.frames)
            self._decode(stitched.frames)
            self._lookahead = stitched.lookahead  # (right frames, vocab)
            ahead = self._silent(self._lookahead)
            if self._endpointer.silence_ahead(ahead):
                self._close_segment("silence")  # the look-ahead heard the endpoint's silence
            elif self._endpointer.word_end_ahead(ahead) and self._ends_in_word():
                self._close_segment("silence")  # rule 2b, its silence completed by the look-ahead
            self._probe_from = self._decoded_frames + self._lookahead.shape[0]
            self._probe_pause, self._probe_word = self._endpointer.trailing_with(ahead), None
        self._end_flush()
        self._emit_partial()
        self._maybe_close()

    # --------------------------------------------------------------- internals
    def _new_decoder_stream(self) -> DecoderStream:
        return self.engine.new_decoder_stream(use_lm=self._use_lm, hotwords=self._hotwords, grammar=self._grammar)

    def _run_inline(self) -> None:
        while True:
            requests = self.take_windows()
            if not requests:
                return
            self.accept_window_outputs(requests, self.engine.run_windows(requests))

    def _end_flush(self) -> None:
        """Close a reset's segment once every frame before its flush point is decoded."""
        if self._windows.end_flush():
            self._close_segment("reset")

    def _probe(self) -> None:
        """Between chunks: when the pause the model heard and the audio since its last window
        are quiet and together complete an endpoint rule, run one short window now instead
        of waiting up to a chunk (its last 0.4 s as look-ahead); the model's frames decide."""
        start = self._probe_from
        if start is None or self._quiet is None or not self._windows.idle:
            return
        pause = self._probe_pause + num_frames(self._windows.total_samples, self._geo) - start
        if not self._endpointer.probe_due(pause, ends_in_word=True):  # the shortest rule first: cheap
            return
        # Quiet since the model's last letter, but for the word's own tail (its letters come
        # early in its sound), and after that window too.
        if not self._quiet.quiet_between(start - self._probe_pause + self._probe_tail):
            return
        if self._probe_word is None:
            self._probe_word = self._ends_in_word(self._lookahead)
        if not self._endpointer.probe_due(pause, ends_in_word=self._probe_word):
            return
        self._probe_from = None  # once per window
        if self._windows.flush(keep_back=self._probe_keep_back) and self.inline:
            self._run_inline()

    def _decode(self, log_probs: FloatArray) -> None:
        """Feed stitched frames to the decoder, cutting segments at endpoints."""
        silent = self._silent(log_probs)
        pos = 0
        while pos < log_probs.shape[0]:
            hit = self._endpointer.scan(silent[pos:])
            n = log_probs.shape[0] - pos if hit is None else hit[0]
            self._stream.accept(log_probs[pos : pos + n])
            self._decoded_frames += n
            pos += n
            if hit is None:
                continue
            if hit[1] != WORD_END:
                self._close_segment(hit[1])
            elif self._ends_in_word():
                self._close_segment("silence")  # rule 2b: the speaker stopped after a whole word

    def _ends_in_word(self, ahead: FloatArray | None = None) -> bool:
        """Rule 2b's question to the decoder: does the best hypothesis (with the look-ahead
        frames ``ahead`` decoded provisionally) end in a complete word?"""
        # (a grammar search only spells its own words or [unk]: any last word is whole)
        lm = self.engine.language_model if self._use_lm and self._grammar is None else None
        lexicon: frozenset[str] | None = None
        if lm is not None:  # hotwords may be outside the LM: they are words too
            lexicon = lm.unigrams | {w for h in self._hotwords for w in h.split()} if self._hotwords else lm.unigrams
        # The best beam may still be spelling a word that the LM scores only once it is closed
        # (a partial "do fom" that finalize() turns into "do for"): ask with it closed.
        frames = self._closing if ahead is None or not ahead.shape[0] else np.concatenate([ahead, self._closing])
        return ends_in_word(self._stream.peek(frames).text, lexicon)

    def _silent(self, log_probs: FloatArray) -> BoolArray:
        """Per frame: is the most likely token the blank or the word delimiter?"""
        return np.isin(log_probs.argmax(axis=1), self._silent_ids)

    def _emit_partial(self) -> None:
        ahead = self._lookahead.shape[0] if self.engine.decoder_config.peek_beams else 0  # frames shown provisionally
        hyp = self._stream.peek(self._lookahead) if ahead else self._stream.partial()
        if hyp.text == self._last_partial or (not hyp.text and self._last_partial is None):
            return
        self._last_partial = hyp.text
        words = hyp.text.split()
        self._events.append(
            Partial(
                text=hyp.text,
                stable_text=" ".join(words[: hyp.stable_words]),
                segment=self._segment,
                start=_seconds(self._segment_start, self._geo.frame_seconds),
                end=_seconds(self._decoded_frames + ahead, self._geo.frame_seconds),
                words=_words(hyp.words, self._segment_start, self._geo.frame_seconds),
            )
        )

    def _close_segment(self, reason: str) -> None:
        hyp = self._stream.finalize()
        if self.engine.endpoint.enabled and not self._endpointer.has_speech:
            # Not one frame where the model's best token was a letter: any words are the LM's
            # word bonus spelling a letter out of room noise (a lone "t" after rule 2b closed).
            hyp = Hypothesis("", 0, ())
        if hyp.text or reason in ("reset", "finish"):
            fs = self._geo.frame_seconds
            shown = self._max_alternatives if hyp.text else 0
            alternatives = tuple(
                Alternative(a.text, _words(a.words, self._segment_start, fs), round(a.score, 3))
                for a in (self._stream.alternatives(shown) if shown else ())
            )
            self._events.append(
                Final(
                    text=hyp.text,
                    words=_words(hyp.words, self._segment_start, fs),
                    segment=self._segment,
                    start=_seconds(self._segment_start, fs),
                    end=_seconds(self._decoded_frames, fs),
                    reason=reason,
                    alternatives=alternatives,
                )
            )
            self._segment += 1
        self._stream = self._new_decoder_stream()
        self._endpointer.reset()
        self._probe_from = None
        self._segment_start = self._decoded_frames
        self._last_partial = None

    def _maybe_close(self) -> None:
        if self._finished and not self._closed and self._windows.done:
            self._close_segment("finish")
            self._closed = True


def _seconds(frames: int, frame_seconds: float) -> float:
    """Frames to event seconds, rounded to 6 decimals (70 frames: 1.4, not 1.4000000000000001)."""
    return round(frames * frame_seconds, 6)


def _words(words: Sequence[DecodedWord], offset_frames: int, frame_seconds: float) -> tuple[Word, ...]:
    return tuple(
        Word(
            text=w.text,
            start=_seconds(offset_frames + w.start_frame, frame_seconds),
            end=_seconds(offset_frames + w.end_frame, frame_seconds),
            confidence=w.confidence,
        )
        for w in words
    )


def _prepare_utterance(samples: AnyArray, sample_rate: int, model_rate: int) -> FloatArray:
    audio = as_float32_mono(samples)
    resampler = StreamResampler(sample_rate, model_rate)
    return np.concatenate([resampler.process(audio), resampler.flush()])

