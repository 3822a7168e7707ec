"""``xlsr-stream mic``: live captions from a microphone (or a file replayed as one).

Data flow::

    sounddevice callback (PortAudio thread): block.copy() -> loop.call_soon_threadsafe(queue.put_nowait)
      -> source.blocks(): native-rate float32, backlog merged into one block
      -> StreamResampler -> 16 kHz
      -> backend: in-process Recognizer (model runs in a worker thread)
                  or a server over websocket (--server, vosk or native protocol)
      -> Partial / Final events -> terminal (partial rewritten in place), SRT, WebVTT, JSON log

Without a sound card or PortAudio the command says what is missing and how to
fix it; ``--input-file`` replays audio at real-time pace instead, which is how
demos and tests run on machines without one.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import numpy as np
from websockets.exceptions import ConnectionClosedOK, WebSocketException

from client.audio_files import open_audio
from client.captions import CaptionRenderer, JsonLog, SubtitleWriter
from client.websocket import ProtocolError, open_stream, stream_url
from streaming.audio import StreamResampler
from streaming.errors import StreamingError
from streaming.events import Event, Final

__all__ = [
    "FileSource",
    "MicError",
    "MicrophoneSource",
    "build_parser",
    "import_sounddevice",
    "input_devices",
    "main",
    "resolve_device",
]

logger = logging.getLogger("demos.mic")

PROG = "xlsr-stream mic"

# 100 ms blocks: short enough that a partial never waits on capture, long
# enough that the per-block overhead (a thread hop, a websocket message) stays
# negligible.  The engine's 0.6 s chunk dominates latency anyway.
DEFAULT_BLOCK_S = 0.1
# Backlog merged into one block at most: about one or two model chunks,
# and 1 s of int16 (32 kB) is far below any server's message limit.
MAX_MERGE_S = 1.0

PORTAUDIO_HINT = (
    "install the PortAudio library: Debian/Ubuntu `sudo apt-get install libportaudio2`, "
    "Fedora `sudo dnf install portaudio`, macOS `brew install portaudio` "
    "(or replay a recording with --input-file AUDIO)"
)


class MicError(Exception):
    """A setup problem the user can fix: the message says what is missing and how."""


# -------------------------------------------------------------- sounddevice
def import_sounddevice() -> ModuleType:
    """Import sounddevice, turning a missing PortAudio into a MicError that says how to fix it."""
    try:
        import sounddevice
    except OSError as exc:  # sounddevice raises OSError when libportaudio is not found
        raise MicError(f"PortAudio is missing ({exc}); {PORTAUDIO_HINT}") from None
    except ImportError as exc:
        raise MicError(
            f"the sounddevice package is not installed ({exc}); "
            f"`pip install sounddevice`, and {PORTAUDIO_HINT}"
        ) from None
    return sounddevice


def input_devices(sd: ModuleType) -> list[dict[str, Any]]:
    """Devices that can record, each a dict with at least index, name, max_input_channels,
    default_samplerate and hostapi_name."""
    found = []
    for index, info in enumerate(sd.query_devices()):
        if int(info.get("max_input_channels", 0)) < 1:
            continue
        device = dict(info)
        device["index"] = int(info.get("index", index))
        try:
            device["hostapi_name"] = sd.query_hostapis(info["hostapi"])["name"]
        except Exception:  # host API names are cosmetic
            device["hostapi_name"] = ""
        found.append(device)
    return found


NO_DEVICE_HINT = (
    "connect a microphone (and check that this user may use it: the 'audio' group, "
    "PulseAudio/PipeWire running, container/VM audio passthrough), or replay a recording "
    "with --input-file AUDIO"
)


def resolve_device(sd: ModuleType, spec: str | None) -> dict[str, Any]:
    """The input device for ``--device``: an index, or a case-insensitive part of its name."""
    devices = input_devices(sd)
    if not devices:
        raise MicError(
            f"no audio input device found (PortAudio lists none that can record); {NO_DEVICE_HINT}"
        )
    if spec is None:
        default = sd.default.device
        index = default[0] if isinstance(default, (list, tuple)) else default
        for device in devices:
            if device["index"] == index:
                return device
        return devices[0]  # no default input configured: take the first that records
    if spec.strip().isdigit():
        for device in devices:
            if device["index"] == int(spec):
                return device
        raise MicError(
            f"--device {spec}: no input device with that index; inputs are "
            + ", ".join(f"{d['index']} ({d['name']})" for d in devices)
            + "; see --list-devices"
        )
    matches = [d for d in devices if spec.lower() in str(d["name"]).lower()]
    exact = [d for d in matches if str(d["name"]).lower() == spec.lower()]
    if len(exact) == 1:
        return exact[0]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise MicError(f"--device {spec!r}: no input device name contains it; see --list-devices")
    raise MicError(
        f"--device {spec!r} matches {len(matches)} devices: "
        + ", ".join(f"{d['index']} ({d['name']})" for d in matches)
        + "; give the index instead"
    )


def list_devices(sd: ModuleType, out: Any) -> int:
    devices = input_devices(sd)
    if not devices:
        print(f"{PROG}: no audio input devices; {NO_DEVICE_HINT}", file=sys.stderr)
        return 1
    default = sd.default.device
    default_index = default[0] if isinstance(default, (list, tuple)) else default
    for d in devices:
        mark = "*" if d["index"] == default_index else " "
        print(f"{mark} {d['index']:3d}  {d['name']}  ({d['hostapi_name']}, "
              f"{d['max_input_channels']} ch, {float(d['default_samplerate']):.0f} Hz)", file=out)
    print("(* = default; pass --device INDEX or part of the name)", file=out)
    return 0


# ------------------------------------------------------------------ sources
class Source(Protocol):
    sample_rate: int
    description: str

    def blocks(self) -> AsyncIterator[np.ndarray]: ...
    def stop(self) -> None: ...


class _QueueSource:
    """Blocks handed over through an asyncio queue; ``None`` in the queue ends the stream."""

    def __init__(self, sample_rate: int, duration: float | None) -> None:
        self.sample_rate = sample_rate
        self.duration = duration
        self.samples = 0
        self._queue: asyncio.Queue[np.ndarray | None] = asyncio.Queue()

    def stop(self) -> None:
        self._queue.put_nowait(None)

    async def _queued(self) -> AsyncIterator[np.ndarray]:
        limit = None if self.duration is None else round(self.duration * self.sample_rate)
        merge_limit = round(MAX_MERGE_S * self.sample_rate)
        done = False
        while not done:
            first = await self._queue.get()
            parts: list[np.ndarray] = []
            if first is None:
                break
            parts.append(first)
            total = len(first)
            # A slow consumer (model busy) gets the backlog as one block rather than a queue
            # it never catches up on; bounded, so one websocket message stays small.
            while not self._queue.empty() and total < merge_limit:
                more = self._queue.get_nowait()
                if more is None:
                    done = True
                    break
                parts.append(more)
                total += len(more)
            # (frames, channels) -> (frames,): the mean keeps both sides of a stereo-only mic
            mono = [p.reshape(len(p), -1).mean(axis=1) for p in parts]
            block = np.concatenate(mono).astype(np.float32, copy=False)
            if limit is not None and self.samples + len(block) >= limit:
                block = block[: limit - self.samples]
                done = True
            self.samples += len(block)
            if len(block):
                yield block


class MicrophoneSource(_QueueSource):
    """Capture from a sounddevice input at its native rate.

    The PortAudio callback runs on PortAudio's thread and only copies the
    block and hands it to the event loop; everything else happens on the loop.
    """

    def __init__(self, sd: ModuleType, device: dict[str, Any], *, sample_rate: int | None = None,
                 block_s: float = DEFAULT_BLOCK_S, duration: float | None = None) -> None:
        rate = int(sample_rate or round(float(device["default_samplerate"])))
        super().__init__(rate, duration)
        self.sd = sd
        self.device = device
        self.block_s = block_s
        self.description = f"{device['name']!r} (device {device['index']}, {rate} Hz)"
        self.overflows = 0
        self._stream: Any = None
        # Mono if the device offers it, else its first two channels (mixed down on the loop side).
        # Checked before the model loads: a wrong rate or device should fail at once.
        self.channels = 1
        try:
            sd.check_input_settings(device=device["index"], samplerate=rate, channels=1, dtype="float32")
        except sd.PortAudioError as exc:
            if int(device.get("max_input_channels", 1)) < 2:
                raise self._error(exc) from None
            try:
                sd.check_input_settings(device=device["index"], samplerate=rate, channels=2, dtype="float32")
            except sd.PortAudioError:
                raise self._error(exc) from None
            self.channels = 2

    def _error(self, exc: BaseException) -> MicError:
        return MicError(
            f"cannot record from {self.description}: {exc}; try another --device or --samplerate "
            "(see --list-devices)"
        )

    def _note_status(self, status: object) -> None:
        self.overflows += 1
        logger.warning("audio input: %s (the machine is too busy; audio was lost)", status)

    async def blocks(self) -> AsyncIterator[np.ndarray]:
        loop = asyncio.get_running_loop()
        queue = self._queue

        def callback(indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
            if status:
                loop.call_soon_threadsafe(self._note_status, status)
            loop.call_soon_threadsafe(queue.put_nowait, indata.copy())

        try:
            self._stream = self.sd.InputStream(
                device=self.device["index"], samplerate=self.sample_rate, channels=self.channels,
                dtype="float32", blocksize=max(1, round(self.block_s * self.sample_rate)), callback=callback,
            )
            self._stream.start()
        except self.sd.PortAudioError as exc:
            raise self._error(exc) from None
        try:
            async for block in self._queued():
                yield block
        finally:
            self._stream.stop()
            self._stream.close()


class FileSource(_QueueSource):
    """An audio file replayed as if it were the microphone: same blocks, real-time pace.

    ``speed`` 2.0 replays twice as fast; 0 as fast as the consumer takes it.
    """

    def __init__(self, path: str | Path, *, block_s: float = DEFAULT_BLOCK_S, speed: float = 1.0,
                 duration: float | None = None) -> None:
        self.audio = open_audio(path)
        super().__init__(self.audio.sample_rate, duration)
        self.block_s = block_s
        self.speed = speed
        self.description = f"{path} replayed at {'full speed' if speed == 0 else f'{speed:g}x real time'}"

    async def _feed(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        fed = 0
        for block in self.audio.blocks(self.block_s):
            fed += len(block)
            if self.speed > 0:
                # Like a sound card: a block exists only once its last sample was "recorded".
                await asyncio.sleep(max(0.0, start + fed / self.sample_rate / self.speed - loop.time()))
            else:
                await asyncio.sleep(0)
            self._queue.put_nowait(block)
        self._queue.put_nowait(None)

    async def blocks(self) -> AsyncIterator[np.ndarray]:
        feeder = asyncio.create_task(self._feed())
        try:
            async for block in self._queued():
                yield block
        finally:
            feeder.cancel()


# ----------------------------------------------------------------- backends
Emit = Callable[[Event], None]


class EngineBackend:
    """The recognizer in this process; the model runs in a worker thread so capture never waits."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.description = f"in-process engine ({engine.info.name})"

    async def run(self, blocks: AsyncIterator[np.ndarray], emit: Emit) -> None:
        recognizer = self.engine.new_stream(sample_rate=16_000)

        def feed(block: np.ndarray) -> list[Event]:
            recognizer.accept_audio(block)
            return list(recognizer.events())

        def finish() -> list[Event]:
            recognizer.finish()
            return list(recognizer.events())

        async for block in blocks:
            for event in await asyncio.to_thread(feed, block):
                emit(event)
        for event in await asyncio.to_thread(finish):
            emit(event)


class ServerBackend:
    """Stream to a websocket server and show what it sends back."""

    def __init__(self, url: str, protocol: str, *, open_timeout: float = 10.0) -> None:
        self.url, self.protocol, self.open_timeout = url, protocol, open_timeout
        self.description = f"server {stream_url(url, protocol)} ({protocol} protocol)"

    async def run(self, blocks: AsyncIterator[np.ndarray], emit: Emit) -> None:
        async with open_stream(self.url, self.protocol, 16_000, open_timeout=self.open_timeout) as stream:
            async def send() -> None:
                async for block in blocks:
                    await stream.send_audio(block)
                await stream.send_eof()

            async def receive() -> None:
                async for event in stream.replies():
                    emit(event)

            sender = asyncio.create_task(send())
            receiver = asyncio.create_task(receive())
            try:
                done, _ = await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    task.result()  # re-raise a failure of either half
                await receiver
                if not stream.completed:  # closed before answering our eof, or before we sent it
                    raise ConnectionClosedOK(None, None)
            except ConnectionClosedOK:  # a clean close before our eof: a session limit, a shutdown
                ws = stream.websocket
                reason = f" {ws.close_reason}" if ws.close_reason else ""
                raise MicError(f"the server ended the stream before the audio did "
                               f"(close code {ws.close_code}{reason})") from None
            finally:
                sender.cancel()
                receiver.cancel()


# ----------------------------------------------------------------------- cli
def build_parser() -> argparse.ArgumentParser:
    from cli.options import add_engine_arguments

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Live captions from a microphone: the partial line is rewritten in place, "
        "finals are committed with timestamps. Ctrl-C stops and flushes.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        conflict_handler="resolve",  # our --device is the sound device; torch's becomes --torch-device
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")

    audio = parser.add_argument_group("audio input")
    remote = parser.add_argument_group("server (instead of the in-process engine)")
    # The engine's options (model, decoding, windows, endpointing) as every subcommand has them;
    # added before our --device so that ours (the sound device) wins the name.
    add_engine_arguments(parser)
    engine_group = next((g for g in parser._action_groups if g.title == "model"), parser)
    engine_group.add_argument("--torch-device", dest="device", default="cpu",
                              help="torch device for the in-process engine, e.g. cpu or cuda")

    audio.add_argument("--list-devices", action="store_true", help="list input devices and exit")
    audio.add_argument("--device", dest="input_device", default=None, metavar="NAME_OR_INDEX",
                       help="input device: index or part of its name; unset: the system default input")
    audio.add_argument("--samplerate", type=int, default=None,
                       help="capture rate; unset: the device's native rate (resampled to 16 kHz either way)")
    audio.add_argument("--input-file", type=Path, default=None, metavar="AUDIO",
                       help="replay this file as if it were the microphone (no sound card needed)")
    audio.add_argument("--speed", type=float, default=1.0,
                       help="--input-file pace: 1 = real time, 2 = twice as fast, 0 = as fast as possible")
    audio.add_argument("--block-ms", type=float, default=DEFAULT_BLOCK_S * 1000, help="capture block size")
    audio.add_argument("--duration", type=float, default=None, metavar="S",
                       help="stop after this many seconds of audio; unset: at Ctrl-C or the end of the file")

    remote.add_argument("--server", default=None, metavar="URL",
                        help="stream to this websocket server, e.g. ws://127.0.0.1:2700")
    remote.add_argument("--protocol", choices=("vosk", "native"), default="vosk",
                        help="the server's protocol (vosk on /, native on /v1/stream)")

    out = parser.add_argument_group("captions output")
    out.add_argument("--partials", choices=("auto", "on", "off"), default="auto",
                     help="show the changing partial line (auto: only on a terminal)")
    out.add_argument("--color", choices=("auto", "on", "off"), default="auto",
                     help="dim the still-changing end of a partial (auto: on a terminal, unless NO_COLOR is set)")
    out.add_argument("--srt", type=Path, default=None, metavar="PATH",
                     help="write finals as SRT subtitles")
    out.add_argument("--vtt", type=Path, default=None, metavar="PATH",
                     help="write finals as WebVTT subtitles")
    out.add_argument("--json-log", type=Path, default=None, metavar="PATH",
                     help="write every final (with words and times) as JSON Lines, one per line")
    out.add_argument("--json-log-partials", action="store_true", help="log partials too")
    return parser


async def _run(source: Source, backend: EngineBackend | ServerBackend, emit: Emit) -> None:
    loop = asyncio.get_running_loop()
    interrupted = False

    def on_sigint() -> None:
        nonlocal interrupted
        interrupted = True
        print(f"\n{PROG}: stopping (Ctrl-C again to abort) ...", file=sys.stderr, flush=True)
        source.stop()
        loop.remove_signal_handler(signal.SIGINT)  # a second Ctrl-C raises KeyboardInterrupt

    try:
        loop.add_signal_handler(signal.SIGINT, on_sigint)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or Windows
        pass
    resampler = StreamResampler(source.sample_rate, 16_000)

    async def blocks_16k() -> AsyncIterator[np.ndarray]:
        async for block in source.blocks():
            out = resampler.process(block)
            if out.size:
                yield out
        tail = resampler.flush()
        if tail.size:
            yield tail

    try:
        await backend.run(blocks_16k(), emit)
    finally:
        try:
            loop.remove_signal_handler(signal.SIGINT)
        except (NotImplementedError, RuntimeError, ValueError):
            pass


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.speed < 0:
        parser.error(f"--speed must be >= 0, got {args.speed}")
    if not 1 <= args.block_ms <= 2000:
        parser.error(f"--block-ms must be in 1..2000, got {args.block_ms}")
    if args.duration is not None and args.duration <= 0:
        parser.error(f"--duration must be > 0, got {args.duration}")

    renderer: CaptionRenderer | None = None
    subtitles: SubtitleWriter | None = None
    json_log: JsonLog | None = None
    started = time.monotonic()
    finals = 0
    try:
        if args.list_devices:
            return list_devices(import_sounddevice(), sys.stdout)

        block_s = args.block_ms / 1000.0
        source: FileSource | MicrophoneSource
        if args.input_file is not None:
            source = FileSource(args.input_file, block_s=block_s, speed=args.speed, duration=args.duration)
        else:
            sd = import_sounddevice()
            device = resolve_device(sd, args.input_device)
            source = MicrophoneSource(sd, device, sample_rate=args.samplerate, block_s=block_s,
                                      duration=args.duration)

        backend: EngineBackend | ServerBackend
        if args.server:
            backend = ServerBackend(args.server, args.protocol)
        else:
            from cli.options import engine_from_args

            print(f"{PROG}: loading the model ...", file=sys.stderr, flush=True)
            backend = EngineBackend(engine_from_args(args))

        tty = sys.stdout.isatty()
        show_partials = args.partials == "on" or (args.partials == "auto" and tty)
        color = args.color == "on" or (args.color == "auto" and tty and not os.environ.get("NO_COLOR"))
        renderer = CaptionRenderer(sys.stdout, partials=show_partials, color=color)
        if args.srt or args.vtt:
            subtitles = SubtitleWriter(srt=args.srt, vtt=args.vtt)
        if args.json_log:
            json_log = JsonLog(args.json_log, partials=args.json_log_partials)

        def emit(event: Event) -> None:
            nonlocal finals
            assert renderer is not None
            renderer.show(event)
            if isinstance(event, Final):
                finals += bool(event.text.strip())
                if subtitles is not None:
                    subtitles.add(event)
            if json_log is not None:
                json_log.add(event)

        hint = "until the end of the file" if args.input_file else "Ctrl-C to stop"
        print(f"{PROG}: {source.description} -> {backend.description}; {hint}", file=sys.stderr, flush=True)
        started = time.monotonic()
        asyncio.run(_run(source, backend, emit))
    except MicError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except (StreamingError, ValueError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if getattr(exc, "filename", None):  # an output file: --srt, --vtt, --json-log
            print(f"{PROG}: error: cannot write {exc.filename}: {exc.strerror}", file=sys.stderr)
        else:  # the network: refused, unreachable, reset
            print(f"{PROG}: error: server {args.server}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except (asyncio.TimeoutError, ProtocolError, WebSocketException) as exc:
        print(f"{PROG}: error: server {args.server}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: aborted", file=sys.stderr)
        return 130
    finally:
        if renderer is not None:
            renderer.close()
        if json_log is not None:
            json_log.close()
    written = [str(p) for p in (args.srt, args.vtt, args.json_log) if p is not None]
    print(f"{PROG}: {finals} caption lines in {time.monotonic() - started:.1f} s"
          + (f"; wrote {', '.join(written)}" if written else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
