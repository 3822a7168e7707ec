// The captioning page: microphone or file -> native protocol (/v1/stream) -> captions.
//
// A run (one press of Start, or one file) may span several streams: when the server
// goes away the page reconnects with backoff and carries on, and the finals already
// shown stay.  Times on the page are "page time": seconds since the first run began,
// so captions of several runs and reconnects form one increasing timeline.
import {
  SendLog, backoffSeconds, clock, median, mixToMono, peak, splitPartial,
  toInt16, toPlainText, toSrt, toVtt, toWav, wavSampleRate,
} from "./captions.js";

const STREAM_PATH = "/v1/stream";
const BLOCK_S = 0.1; // audio per message, as demos/client.py sends
const FAST_HIGH_WATER = 1 << 18; // bytes queued in the socket before a fast file waits
const FINISH_TIMEOUT_MS = 60000;
const PROBE_TIMEOUT_MS = 5000; // a server that takes the connection but never answers counts as gone
const LATENCY_WINDOW = 20; // partials in the median
const MAX_BACKLOG_S = 30; // microphone audio kept while no stream is open
const MAX_RECORDING_S = 600; // microphone audio kept for the Audio download (53 MB at 44.1 kHz)

const CAPTION_BUTTONS = '[data-download]:not([data-download="wav"]), #copy, #clear';

const $ = (id) => document.getElementById(id);
const token = new URLSearchParams(location.search).get("token");

// ------------------------------------------------------------------ messages

// level: info | warn | error; parts: strings, or [text] for a <code> span.
function say(level, ...parts) {
  const box = $("status");
  box.replaceChildren(
    ...parts.map((part) => {
      if (!Array.isArray(part)) return document.createTextNode(part);
      const code = document.createElement("code");
      code.textContent = part[0];
      return code;
    }),
  );
  box.className = level;
  box.dataset.level = level;
  box.hidden = false;
}

function unsay() {
  $("status").hidden = true;
  $("status").replaceChildren();
}

function setState(state) {
  document.body.dataset.state = state;
  const busy = state !== "idle";
  $("start").disabled = busy || !micAvailable();
  $("stop").disabled = !busy;
  $("file").disabled = busy;
  document.querySelector('label[for="file"]').classList.toggle("disabled", busy);
}

function micAvailable() {
  return window.isSecureContext && !!navigator.mediaDevices?.getUserMedia && !!window.AudioWorkletNode;
}

// ------------------------------------------------------------------ transcript

const finals = []; // {start, end, text} in page time
let timelineEnd = 0; // page time where the next run begins
let followLive = true;

function scrollToLive() {
  if (followLive) $("transcript").scrollTop = $("transcript").scrollHeight;
}

$("transcript").addEventListener("scroll", () => {
  const t = $("transcript");
  followLive = t.scrollHeight - t.scrollTop - t.clientHeight < 40;
  $("follow").hidden = followLive;
});
$("follow").addEventListener("click", () => {
  followLive = true;
  $("follow").hidden = true;
  scrollToLive();
});

function showPartial(text, stableText) {
  const { stable, tail } = splitPartial(text, stableText);
  const line = $("partial");
  line.querySelector(".stable").textContent = stable;
  line.querySelector(".tail").textContent = tail;
  if (text) $("empty").hidden = true;
  scrollToLive();
}

function addFinal(final) {
  finals.push(final);
  timelineEnd = Math.max(timelineEnd, final.end);
  const item = document.createElement("li");
  const time = document.createElement("time");
  time.textContent = clock(final.start);
  time.title = `${clock(final.start)} – ${clock(final.end)}`;
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = final.text;
  item.append(time, text);
  $("finals").append(item);
  $("empty").hidden = true;
  for (const button of document.querySelectorAll(CAPTION_BUTTONS)) button.disabled = false;
  showPartial("", "");
}

const latencies = [];
function noteLatency(ms) {
  latencies.push(ms);
  if (latencies.length > LATENCY_WINDOW) latencies.shift();
  $("latency").textContent = `latency ${Math.round(ms)} ms (median ${Math.round(median(latencies))} ms)`;
}

function setLevel(value) {
  const level = Math.min(1, value);
  $("meter-bar").style.width = `${Math.round(Math.sqrt(level) * 100)}%`; // sqrt: quiet speech still shows
  $("meter").setAttribute("aria-valuenow", level.toFixed(2));
}

// ------------------------------------------------------------------ one stream

// A browser cannot set an Authorization header on a WebSocket: the token goes as a
// "bearer.<token>" subprotocol next to "xlsr-stream" (which the server selects), or,
// when it has characters a subprotocol may not hold, as ?token= in the URL (which
// proxies may log).
function openSocket() {
  const url = new URL(STREAM_PATH, location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  if (!token) return new WebSocket(url);
  try {
    return new WebSocket(url, ["xlsr-stream", `bearer.${token}`]);
  } catch (error) {
    if (error.name !== "SyntaxError") throw error;
    url.searchParams.set("token", token);
    return new WebSocket(url);
  }
}

// Browsers hide why an upgrade failed; a plain GET of the endpoint answers with the
// status the upgrade got (426 when it would be let in now).
async function whyRefused() {
  let response;
  try {
    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    response = await fetch(new URL(STREAM_PATH, location.href), {
      cache: "no-store", headers, signal: AbortSignal.timeout(PROBE_TIMEOUT_MS),
    });
  } catch {
    return { kind: "gone" };
  }
  let text;
  try {
    text = (await response.text()).trim();
  } catch {
    return { kind: "gone" };
  }
  console.info(`stream refused: HTTP ${response.status} ${text}`);
  switch (response.status) {
    case 503:
      return { kind: "full", retryAfter: Number(response.headers.get("Retry-After")) || 5, text };
    case 401:
      return { kind: "token", text };
    case 403:
      return { kind: "refused", text: `this page may not open streams (${text})` };
    case 426:
      return { kind: "retry" };
    default:
      return { kind: "refused", text: `HTTP ${response.status}: ${text}` };
  }
}

// One websocket session of the native protocol.  open() resolves once the server
// said "started" and rejects with whyRefused()'s answer when the upgrade failed.
class Stream {
  constructor(rate, handlers) {
    this.rate = rate;
    this.handlers = handlers; // onPartial(msg), onFinal(msg), onClosed({code, reason, error})
    this.log = new SendLog();
    this.ready = false;
    this.ended = false;
    this.error = null;
  }

  open() {
    return new Promise((resolve, reject) => {
      const ws = openSocket();
      ws.binaryType = "arraybuffer";
      this.ws = ws;
      let greeted = false;
      ws.onmessage = (event) => {
        const msg = JSON.parse(event.data);
        if (msg.type === "hello") {
          greeted = true;
          showServer(msg);
          ws.send(JSON.stringify({
            type: "start", version: 1, sample_rate: this.rate, encoding: "int16",
            options: { partials: true, words: false },
          }));
        } else if (msg.type === "started") {
          this.ready = true;
          resolve();
        } else if (msg.type === "partial") {
          this.handlers.onPartial(msg, this);
        } else if (msg.type === "final") {
          this.handlers.onFinal(msg, this);
        } else if (msg.type === "end") {
          this.ended = true;
          this.onEnd?.();
        } else if (msg.type === "error") {
          this.error = msg;
        }
      };
      ws.onclose = (event) => {
        const wasReady = this.ready;
        this.ready = false;
        if (!greeted) {
          whyRefused().then(reject);
          return;
        }
        if (!wasReady) {
          reject({ kind: "refused", text: this.error ? this.error.message : `closed with ${event.code}` });
          return;
        }
        this.onEnd?.();
        this.handlers.onClosed({ code: event.code, reason: event.reason, error: this.error });
      };
    });
  }

  send(int16) {
    this.ws.send(int16.buffer);
    this.log.sent(int16.length / this.rate, performance.now());
  }

  get queuedBytes() {
    return this.ws.bufferedAmount;
  }

  // Send finish and wait for "end" (all finals are in by then) or the close.
  finish() {
    if (!this.ready) {
      this.close();
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, FINISH_TIMEOUT_MS);
      this.onEnd = () => {
        clearTimeout(timer);
        resolve();
      };
      this.ws.send(JSON.stringify({ type: "finish" }));
    });
  }

  close() {
    this.handlers = { onPartial() {}, onFinal() {}, onClosed() {} };
    this.ready = false;
    this.ws?.close();
  }
}

function showServer(hello) {
  const model = hello.model || {};
  $("server-info").textContent =
    `model ${model.name} · ${hello.lm ? "language model on" : "no language model"} · xlsr-stream ${hello.server_version}`;
}

// ------------------------------------------------------------------ a run

// Keeps one stream open for a source, reconnecting when the server goes away.
// A source implements onReady(stream) (a new stream is open) and rate.
class Run {
  constructor(source) {
    this.source = source;
    this.stream = null;
    this.stopped = false;
    this.base = timelineEnd > 0 ? timelineEnd + 1 : 0; // page time of this run's second 0
    this.wake = null;
    source.run = this;
  }

  async connect() {
    let attempt = 0;
    while (!this.stopped) {
      setState(attempt ? "reconnecting" : "connecting");
      const stream = new Stream(this.source.rate, {
        onPartial: (msg, s) => this.partial(msg, s),
        onFinal: (msg, s) => this.final(msg, s),
        onClosed: (info) => this.closed(info),
      });
      try {
        await stream.open();
      } catch (why) {
        if (this.stopped) return;
        const wait = this.refused(why, ++attempt);
        if (wait === null) {
          this.fail();
          return;
        }
        await this.sleep(wait, why);
        continue;
      }
      if (this.stopped) {
        stream.close();
        return;
      }
      if (attempt) say("info", "Reconnected. Captions continue.");
      else unsay();
      this.stream = stream;
      stream.origin = this.base + this.source.position(); // page time of the stream's second 0
      setState("live");
      this.source.onReady(stream);
      return;
    }
  }

  // What to tell the user about a failed connect, and how long to wait (null: give up).
  refused(why, attempt) {
    switch (why.kind) {
      case "full":
        say("warn", `The server cannot take a stream now: ${why.text}. Retrying in ${why.retryAfter} s, as it asked…`);
        return why.retryAfter;
      case "token":
        say("error", token
          ? "The server refused the access token in this page's address. Check the "
          : "This server needs an access token. Open the page as ",
          [`${location.origin}${location.pathname}?token=YOUR_TOKEN`],
          token ? " part." : " (the token the server was started with, --auth-token).");
        return null;
      case "retry":
        return 0.5;
      case "gone": {
        const wait = backoffSeconds(attempt);
        say("warn", `Cannot reach the server at ${location.host}. `,
          finals.length ? "Captions so far are kept. " : "", `Reconnecting in ${wait} s (attempt ${attempt})…`);
        return wait;
      }
      default:
        say("error", `The server refused the stream: ${why.text}`);
        return null;
    }
  }

  sleep(seconds) {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, seconds * 1000);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  partial(msg, stream) {
    showPartial(msg.text, msg.stable_text);
    const sentAt = stream.log.sendTimeOf(msg.end);
    if (sentAt !== null) noteLatency(performance.now() - sentAt);
  }

  final(msg, stream) {
    if (msg.text) addFinal({ start: stream.origin + msg.start, end: stream.origin + msg.end, text: msg.text });
    else showPartial("", "");
    this.source.onFinal?.(msg, stream);
  }

  closed(info) {
    this.stream = null;
    showPartial("", "");
    if (this.stopped) return; // our own finish, or a stop while it was open
    const serverGone = info.code === 1001 || info.code === 1006 || info.code === 1011;
    if (!serverGone) {
      say("error", `The server ended the stream: ${info.error ? info.error.message : `${info.code} ${info.reason}`}`);
      this.fail();
      return;
    }
    const why = info.code === 1001 ? "The server is shutting down" : "The connection to the server was lost";
    say("warn", `${why}. Captions so far are kept; reconnecting…`);
    this.source.onGone?.();
    this.connect();
  }

  fail() {
    this.stopped = true;
    this.source.release();
    setState("idle");
  }

  async stop() {
    this.stopped = true;
    this.wake?.();
    setState("finishing");
    this.source.release();
    if (this.stream) {
      await this.stream.finish();
      this.stream.close();
      this.stream = null;
    }
    setLevel(0);
    setState("idle");
  }
}

let current = null;
let recording = null; // the last microphone run's audio: {blocks, samples, rate, full}

function record(pcm) {
  const button = document.querySelector('[data-download="wav"]');
  if (recording.samples + pcm.length > MAX_RECORDING_S * recording.rate) {
    if (!recording.full) button.title = `the first ${MAX_RECORDING_S / 60} minutes of the last microphone run`;
    recording.full = true;
    return;
  }
  recording.blocks.push(pcm);
  recording.samples += pcm.length;
  button.disabled = false;
}

// ------------------------------------------------------------------ microphone

class Microphone {
  constructor(media, context, node) {
    this.media = media;
    this.context = context;
    this.node = node;
    this.rate = context.sampleRate;
    this.blockLength = Math.round(BLOCK_S * this.rate);
    this.pending = []; // pieces of the block being filled
    this.pendingLength = 0;
    // Blocks captured while no stream is open (connecting, reconnecting): sent as
    // soon as one is, so words spoken meanwhile are captioned late, not lost.
    this.backlog = [];
    this.backlogLength = 0;
    this.sent = 0; // samples sent, on every stream of the run
    this.dropped = 0; // samples older than MAX_BACKLOG_S that never found a stream
    this.stream = null;
    recording = { blocks: [], samples: 0, rate: this.rate, full: false }; // this run's audio, as sent
  }

  static async open(deviceId) {
    const context = new AudioContext(); // the output's native rate; the server resamples
    let media;
    try {
      await context.audioWorklet.addModule("/static/pcm-worklet.js");
      const audio = { echoCancellation: false, noiseSuppression: false, autoGainControl: false, channelCount: 1 };
      if (deviceId) audio.deviceId = { exact: deviceId };
      media = await navigator.mediaDevices.getUserMedia({ audio });
      await context.resume(); // started from a click, but some browsers still begin suspended
    } catch (error) {
      media?.getTracks().forEach((t) => t.stop());
      context.close();
      throw error;
    }
    const node = new AudioWorkletNode(context, "pcm-tap", { numberOfOutputs: 0 });
    const mic = new Microphone(media, context, node);
    node.port.onmessage = (event) => mic.accept(mixToMono(event.data));
    context.createMediaStreamSource(media).connect(node);
    for (const track of media.getAudioTracks()) {
      track.addEventListener("ended", () => {
        if (mic.run?.stopped) return;
        mic.run?.stop().then(() => say("error", "The microphone stopped (unplugged or taken away). ",
          "Captions so far are kept; pick a microphone and press Start again."));
      });
    }
    return mic;
  }

  // Where the next stream's second 0 lies in this run's audio, in seconds.
  position() {
    return (this.sent + this.dropped) / this.rate;
  }

  onReady(stream) {
    this.stream = stream;
    this.flush();
  }

  onGone() {
    this.stream = null;
  }

  accept(samples) {
    this.pending.push(samples);
    this.pendingLength += samples.length;
    if (this.pendingLength < this.blockLength) return;
    const block = new Float32Array(this.pendingLength);
    let at = 0;
    for (const piece of this.pending) {
      block.set(piece, at);
      at += piece.length;
    }
    this.pending = [];
    this.pendingLength = 0;
    setLevel(peak(block));
    const pcm = toInt16(block);
    this.backlog.push(pcm);
    this.backlogLength += block.length;
    record(pcm);
    while (this.backlogLength > MAX_BACKLOG_S * this.rate) {
      const old = this.backlog.shift();
      this.backlogLength -= old.length;
      this.dropped += old.length;
    }
    this.flush();
  }

  flush() {
    if (!this.stream?.ready) return;
    for (const block of this.backlog) {
      this.stream.send(block);
      this.sent += block.length;
    }
    this.backlog = [];
    this.backlogLength = 0;
  }

  release() {
    this.node.port.close();
    this.media.getTracks().forEach((t) => t.stop());
    this.context.close();
  }
}

function micError(error) {
  switch (error?.name) {
    case "NotAllowedError":
    case "SecurityError":
      say("error", "Microphone permission was denied. Allow this site to use the microphone ",
        "(the camera/microphone icon in the address bar), then press Start again.");
      break;
    case "NotFoundError":
    case "OverconstrainedError":
      say("error", "No microphone was found. Connect one (or pick another in the list) and press Start again.");
      break;
    case "NotReadableError":
      say("error", "The microphone could not be opened: another application may be using it.");
      break;
    default:
      say("error", `The microphone could not be started: ${error?.message || error}`);
  }
}

async function startMic() {
  if (!micAvailable()) return insecureWarning();
  setState("connecting");
  say("info", "Asking for the microphone…");
  let mic;
  try {
    mic = await Microphone.open($("device").value);
  } catch (error) {
    micError(error);
    setState("idle");
    return;
  }
  listDevices();
  current = new Run(mic);
  await current.connect();
}

async function listDevices() {
  if (!navigator.mediaDevices?.enumerateDevices) return;
  const select = $("device");
  const chosen = select.value;
  const inputs = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === "audioinput");
  const options = [new Option("default microphone", "")];
  inputs.forEach((d, i) => {
    if (d.deviceId && d.deviceId !== "default") options.push(new Option(d.label || `microphone ${i + 1}`, d.deviceId));
  });
  select.replaceChildren(...options);
  if ([...select.options].some((o) => o.value === chosen)) select.value = chosen;
}

// ------------------------------------------------------------------ file

class FileSource {
  constructor(name, samples, rate, fast) {
    this.name = name;
    this.samples = samples; // Float32Array, mono
    this.rate = rate;
    this.fast = fast;
    this.committed = 0; // samples up to the last final: where a new stream resumes
    this.released = false;
  }

  static async decode(file, fast) {
    const bytes = await file.arrayBuffer();
    // A WAV is decoded at its own rate (no resampling on the page); anything else at 48 kHz.
    const rate = wavSampleRate(bytes) || 48000;
    const decoded = await new OfflineAudioContext(1, 1, rate).decodeAudioData(bytes);
    const channels = [];
    for (let c = 0; c < decoded.numberOfChannels; c++) channels.push(decoded.getChannelData(c));
    return new FileSource(file.name, mixToMono(channels), decoded.sampleRate, fast);
  }

  position() {
    return this.committed / this.rate;
  }

  onFinal(msg, stream) {
    // stream.origin - run.base: where in the file this stream began, in seconds.
    this.committed = Math.max(this.committed, Math.round((stream.origin - this.run.base + msg.end) * this.rate));
  }

  onGone() {
    this.generation = (this.generation || 0) + 1; // the pump of the lost stream stops
  }

  async onReady(stream) {
    const generation = (this.generation = (this.generation || 0) + 1);
    const block = Math.round(BLOCK_S * this.rate);
    const startAt = performance.now();
    const from = this.committed;
    say("info", `Captioning ${this.name} (${(this.samples.length / this.rate).toFixed(1)} s, `,
      this.fast ? "as fast as the server takes it)…" : "in real time)…");
    for (let at = from; at < this.samples.length; at += block) {
      if (this.released || generation !== this.generation || !stream.ready) return;
      if (this.fast) {
        while (stream.ready && stream.queuedBytes > FAST_HIGH_WATER) await delay(10);
      } else {
        const due = startAt + ((at - from) / this.rate) * 1000;
        if (due > performance.now()) await delay(due - performance.now());
      }
      if (!stream.ready || generation !== this.generation) return;
      const piece = this.samples.subarray(at, Math.min(at + block, this.samples.length));
      setLevel(peak(piece));
      stream.send(toInt16(piece));
    }
    if (this.released) return;
    say("info", `Finishing ${this.name}…`);
    this.committed = this.samples.length;
    await this.run.stop();
    say("info", `Captioned ${this.name}: ${finals.length} caption line${finals.length === 1 ? "" : "s"}.`);
  }

  release() {
    this.released = true;
  }
}

const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function captionFile(file) {
  if (current && document.body.dataset.state !== "idle") return;
  const fast = document.querySelector('input[name="pace"]:checked').value === "fast";
  setState("connecting");
  say("info", `Decoding ${file.name}…`);
  let source;
  try {
    source = await FileSource.decode(file, fast);
  } catch (error) {
    say("error", `Cannot decode ${file.name} as audio: ${error?.message || error}`);
    setState("idle");
    return;
  }
  current = new Run(source);
  await current.connect();
}

// ------------------------------------------------------------------ downloads

const FORMATS = {
  srt: { ext: "srt", type: "application/x-subrip", render: toSrt },
  vtt: { ext: "vtt", type: "text/vtt", render: toVtt },
  txt: { ext: "txt", type: "text/plain", render: toPlainText },
};

function download(kind) {
  const blob = kind === "wav"
    ? new Blob([toWav(recording.blocks, recording.rate)], { type: "audio/wav" })
    : new Blob([FORMATS[kind].render(finals)], { type: `${FORMATS[kind].type};charset=utf-8` });
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = kind === "wav" ? "captions-audio.wav" : `captions.${FORMATS[kind].ext}`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

async function copyText() {
  const text = toPlainText(finals);
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // No clipboard API (insecure context) or no permission: the old way.
    const area = document.createElement("textarea");
    area.value = text;
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  say("info", `Copied ${finals.length} caption line${finals.length === 1 ? "" : "s"} to the clipboard.`);
}

function clearTranscript() {
  finals.length = 0;
  timelineEnd = 0;
  $("finals").replaceChildren();
  $("empty").hidden = false;
  for (const button of document.querySelectorAll(CAPTION_BUTTONS)) button.disabled = true;
}

// ------------------------------------------------------------------ wiring

function insecureWarning() {
  say("error",
    `This page was loaded over plain http from ${location.host}, and browsers allow the microphone only on `,
    "https:// pages or on localhost. Start the server with ", ["--certfile cert.pem --keyfile key.pem"],
    ` and open https://${location.host}/ (or open the page on the server machine as http://localhost). `,
    "Captioning a file works without it.");
}

function wire() {
  $("start").addEventListener("click", startMic);
  $("stop").addEventListener("click", () => current?.stop());
  $("file").addEventListener("change", (event) => {
    const file = event.target.files[0];
    event.target.value = "";
    if (file) captionFile(file);
  });
  for (const button of document.querySelectorAll("[data-download]")) {
    button.addEventListener("click", () => download(button.dataset.download));
  }
  $("copy").addEventListener("click", copyText);
  $("clear").addEventListener("click", clearTranscript);
  $("device").addEventListener("change", async () => {
    if (!(current?.source instanceof Microphone) || document.body.dataset.state === "idle") return;
    await current.stop();
    startMic();
  });
  navigator.mediaDevices?.addEventListener?.("devicechange", listDevices);

  let dragDepth = 0;
  window.addEventListener("dragenter", (event) => {
    event.preventDefault();
    dragDepth++;
    $("drop").hidden = false;
  });
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("dragleave", () => {
    if (--dragDepth <= 0) $("drop").hidden = true;
  });
  window.addEventListener("drop", (event) => {
    event.preventDefault();
    dragDepth = 0;
    $("drop").hidden = true;
    const file = event.dataTransfer?.files?.[0];
    if (file) captionFile(file);
  });

  setState("idle");
  if (!micAvailable()) insecureWarning();
  else listDevices();
}

wire();
