"""Argument groups shared by every subcommand that builds an engine."""

from __future__ import annotations

import argparse
import logging

from streaming import DecoderConfig, EndpointConfig, Engine, WindowConfig
from streaming.decoder import DECODERS
from streaming.normalization import NORMALIZATION_MODES
from streaming.windows import default_left_context_s

__all__ = ["add_engine_arguments", "engine_from_args", "window_from_args"]

_WINDOW = WindowConfig()
_DECODER = DecoderConfig()
_ENDPOINT = EndpointConfig()


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """--model/--lm, decoding, window and endpoint options, in groups."""
    model = parser.add_argument_group("model")
    model.add_argument(
        "--model",
        default=None,
        help="Wav2Vec2ForCTC folder or Hugging Face Hub id (default: the shipped models/en-small)",
    )
    lm = model.add_mutually_exclusive_group()
    lm.add_argument("--lm", default=None, help="language_model/ folder or KenLM .arpa/.bin "
                    "(default: the model's language_model/ if it has one)")
    lm.add_argument("--no-lm", action="store_true", help="decode without a language model")
    model.add_argument("--dtype", choices=("auto", "float32", "bfloat16", "float16"), default="auto",
                       help="inference precision; auto: bfloat16 on CPUs with AVX-512 BF16 or AMX (about 2x "
                       "faster, same WER on the shipped model), else float32")
    model.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    model.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")

    dec = parser.add_argument_group("decoding")
    dec.add_argument("--greedy", action="store_true", help="greedy CTC instead of beam search")
    dec.add_argument("--decoder", choices=DECODERS, default=_DECODER.decoder,
                     help="beam search: pyctcdecode (Python, pyctcdecode-identical, hotwords) or flashlight "
                          "(C++ flashlight-text, lexicon-constrained by the LM's unigrams, no hotwords) "
                          "(default: %(default)s)")
    dec.add_argument("--beam-width", type=int, default=_DECODER.beam_width)
    dec.add_argument("--beam-prune-logp", type=float, default=_DECODER.beam_prune_logp, metavar="LOGP",
                     help="beam threshold: drop beams this far (natural log) below the best (default: %(default)s)")
    dec.add_argument("--token-min-logp", type=float, default=_DECODER.token_min_logp, metavar="LOGP",
                     help="tokens below this log-prob at a frame are not expanded, the main speed knob "
                          "(default: %(default)s)")
    dec.add_argument("--alpha", type=float, default=None, help="LM weight (default: from the LM's attrs.json)")
    dec.add_argument("--beta", type=float, default=None, help="word insertion bonus (default: from attrs.json)")
    dec.add_argument("--hotword", action="append", default=[], metavar="WORD",
                     help="boost a word or phrase (repeatable)")
    dec.add_argument("--hotword-weight", type=float, default=_DECODER.hotword_weight)
    dec.add_argument("--pyctcdecode-unknown-words", action="store_true",
                     help="score words outside the LM's vocabulary as pyctcdecode does (KenLM <unk> + "
                          "unk_score_offset) instead of by their spelling: output identical to "
                          "pyctcdecode / Wav2Vec2ProcessorWithLM")
    dec.add_argument("--peek-beams", type=int, default=_DECODER.peek_beams, metavar="N",
                     help="beams that decode the look-ahead into a partial's provisional tail "
                          "(0: partials show only audio decoded for good, --right-context-s later)")

    win = parser.add_argument_group("streaming windows")
    win.add_argument("--chunk-s", type=float, default=_WINDOW.chunk_s, help="output per window, seconds")
    win.add_argument("--left-context-s", type=float, default=argparse.SUPPRESS,
                     help=f"past audio the model sees (default: {default_left_context_s(True):g} with attention "
                          f"memory, {default_left_context_s(False):g} without)")
    win.add_argument("--attention-memory", action=argparse.BooleanOptionalAction, default=_WINDOW.memory,
                     help="keep the left context as each layer's cached inputs instead of recomputing it "
                          "(needs a layer-norm conv front end; others recompute)")
    win.add_argument("--right-context-s", type=float, default=_WINDOW.right_context_s,
                     help="look-ahead: every output frame hears this much future; partials show it "
                          "provisionally (--peek-beams), finals wait for it")
    win.add_argument("--normalization", choices=NORMALIZATION_MODES, default="running",
                     help="how do_normalize is applied to streams")

    ep = parser.add_argument_group("endpointing")
    ep.add_argument("--silence-after-speech-s", type=float, default=_ENDPOINT.silence_after_speech_s)
    ep.add_argument("--silence-after-word-s", type=float, default=_ENDPOINT.silence_after_word_s, metavar="S",
                    help="end a segment sooner when the best hypothesis ends in a complete (LM) word and "
                         "this much non-speech follows (Kaldi/vosk rule 2); 0: off (default: %(default)s)")
    ep.add_argument("--endpoint-probe", action=argparse.BooleanOptionalAction, default=_ENDPOINT.probe_quiet_audio,
                    help="between chunks, when the pause and the audio after it are at the stream's noise floor, "
                         "ask the model once an endpoint's silence is complete, instead of at the next chunk")
    ep.add_argument("--max-segment-s", type=float, default=_ENDPOINT.max_segment_s)
    ep.add_argument("--no-endpoints", action="store_true", help="one segment per stream")


def window_from_args(args: argparse.Namespace) -> WindowConfig:
    left = getattr(args, "left_context_s", None)  # absent unless given: its default depends on the mode
    if left is None:
        left = default_left_context_s(args.attention_memory)
    return WindowConfig(args.chunk_s, left, args.right_context_s, memory=args.attention_memory)


def engine_from_args(args: argparse.Namespace) -> Engine:
    """Build the engine the options describe; errors surface as StreamingError/ValueError."""
    decoder = DecoderConfig(
        beam_width=args.beam_width,
        beam_prune_logp=args.beam_prune_logp,
        token_min_logp=args.token_min_logp,
        alpha=args.alpha,
        beta=args.beta,
        hotword_weight=args.hotword_weight,
        hotwords=tuple(args.hotword),
        greedy=args.greedy,
        peek_beams=args.peek_beams,
        decoder=args.decoder,
        oov_word_logp=None if args.pyctcdecode_unknown_words else _DECODER.oov_word_logp,
    )
    engine = Engine.load(
        args.model,
        lm=False if args.no_lm else args.lm,
        dtype=args.dtype,
        device=args.device,
        threads=args.threads,
        decoder=decoder,
        window=window_from_args(args),
        endpoint=EndpointConfig(
            silence_after_speech_s=args.silence_after_speech_s,
            silence_after_word_s=args.silence_after_word_s or None,
            max_segment_s=args.max_segment_s,
            enabled=not args.no_endpoints,
            probe_quiet_audio=args.endpoint_probe,
        ),
        normalization=args.normalization,
    )
    logging.getLogger("xlsr_stream").info(
        "model %s (%d parameters), LM: %s", engine.info.name, engine.info.num_parameters,
        engine.lm_description or "none",
    )
    return engine
