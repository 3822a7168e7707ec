// Pure helpers of the captioning page: audio conversion, the send log behind the
// latency figure, caption formats.  No DOM and no network, so each is easy to read
// and to check from a console.

// Float samples in [-1, 1] to int16 as the Python clients convert them (client/websocket.py
// int16_pcm: scale by 32768, round, clip), the exact inverse of decoding a 16-bit file,
// so page and client send the same PCM for the same file.
export function toInt16(samples) {
  const out = new Int16Array(samples.length);
  for (let i = 0; i < samples.length; i++) {
    const x = Math.round(samples[i] * 32768);
    out[i] = x > 32767 ? 32767 : x < -32768 ? -32768 : x;
  }
  return out;
}

// The mean of a list of equal-length channels (Float32Array each).
export function mixToMono(channels) {
  if (channels.length === 1) return channels[0];
  const out = new Float32Array(channels[0].length);
  for (const channel of channels) {
    for (let i = 0; i < out.length; i++) out[i] += channel[i];
  }
  for (let i = 0; i < out.length; i++) out[i] /= channels.length;
  return out;
}

// Peak of a block, for the level meter: 0..1.
export function peak(samples) {
  let max = 0;
  for (let i = 0; i < samples.length; i++) {
    const a = Math.abs(samples[i]);
    if (a > max) max = a;
  }
  return max;
}

// The sample rate in a RIFF/WAVE header, or null for anything else.  Decoding a WAV at
// its own rate sends the server the file's samples as they are, not a resampled copy.
export function wavSampleRate(bytes) {
  const view = new DataView(bytes);
  const tag = (at) => String.fromCharCode(...new Uint8Array(bytes, at, 4));
  if (bytes.byteLength < 12 || tag(0) !== "RIFF" || tag(8) !== "WAVE") return null;
  for (let at = 12; at + 8 <= bytes.byteLength; ) {
    const size = view.getUint32(at + 4, true);
    if (tag(at) === "fmt " && at + 16 <= bytes.byteLength) return view.getUint32(at + 12, true);
    at += 8 + size + (size % 2);
  }
  return null;
}

// When each second of a stream was sent, to turn a result's `end` (stream seconds it
// covers) into latency on the page's clock: now minus when that audio left.
export class SendLog {
  constructor() {
    this.audioS = []; // cumulative seconds after each message
    this.at = []; // performance.now() of each message
  }
  sent(seconds, at) {
    const total = (this.audioS.length ? this.audioS[this.audioS.length - 1] : 0) + seconds;
    this.audioS.push(total);
    this.at.push(at);
  }
  get seconds() {
    return this.audioS.length ? this.audioS[this.audioS.length - 1] : 0;
  }
  // Messages of 0.1 s sent at t=0 and t=100 -> second 0.15 left at t=100.
  sendTimeOf(endS) {
    let lo = 0;
    let hi = this.audioS.length - 1;
    if (hi < 0) return null;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.audioS[mid] < endS - 1e-6) lo = mid + 1;
      else hi = mid;
    }
    return this.at[lo];
  }
}

export function median(values) {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

// A partial as (stable prefix, provisional tail).  The native protocol's stable_text is
// a word prefix of text that no later result of the segment changes.
export function splitPartial(text, stableText) {
  const stable = stableText && text.startsWith(stableText) ? stableText : "";
  return { stable, tail: text.slice(stable.length) };
}

// Seconds between reconnect attempts: 1, 2, 4, ... capped at 30.
export function backoffSeconds(attempt) {
  return Math.min(30, 2 ** Math.max(0, attempt - 1));
}

// 83.456 -> "01:23.4" (the transcript's timestamps).
export function clock(seconds) {
  const tenths = Math.max(0, Math.round(seconds * 10));
  const m = Math.floor(tenths / 600);
  const s = (tenths % 600) / 10;
  return `${String(m).padStart(2, "0")}:${s.toFixed(1).padStart(4, "0")}`;
}

// 3723.4567 -> "01:02:03,457" (SRT) or "01:02:03.457" (WebVTT).
export function cueTime(seconds, separator) {
  const ms = Math.max(0, Math.round(seconds * 1000));
  const pad = (n, w) => String(n).padStart(w, "0");
  const h = Math.floor(ms / 3600000);
  const m = Math.floor(ms / 60000) % 60;
  const s = Math.floor(ms / 1000) % 60;
  return `${pad(h, 2)}:${pad(m, 2)}:${pad(s, 2)}${separator}${pad(ms % 1000, 3)}`;
}

// finals: [{start, end, text}] in page time (seconds since captioning began).
export function toSrt(finals) {
  return finals
    .map((f, i) => `${i + 1}\n${cueTime(f.start, ",")} --> ${cueTime(f.end, ",")}\n${f.text}\n`)
    .join("\n");
}

export function toVtt(finals) {
  const cues = finals.map((f) => `${cueTime(f.start, ".")} --> ${cueTime(f.end, ".")}\n${f.text}\n`);
  return ["WEBVTT\n", ...cues].join("\n");
}

export function toPlainText(finals) {
  return finals.map((f) => f.text).join("\n") + (finals.length ? "\n" : "");
}

// Int16Array blocks at `rate` as a 16-bit mono WAV file (an ArrayBuffer).
export function toWav(blocks, rate) {
  const samples = blocks.reduce((n, block) => n + block.length, 0);
  const buffer = new ArrayBuffer(44 + 2 * samples);
  const view = new DataView(buffer);
  const text = (at, s) => [...s].forEach((c, i) => view.setUint8(at + i, c.charCodeAt(0)));
  text(0, "RIFF");
  view.setUint32(4, 36 + 2 * samples, true);
  text(8, "WAVE");
  text(12, "fmt ");
  view.setUint32(16, 16, true); // fmt chunk size
  view.setUint16(20, 1, true); // PCM
  view.setUint16(22, 1, true); // mono
  view.setUint32(24, rate, true);
  view.setUint32(28, 2 * rate, true); // bytes per second
  view.setUint16(32, 2, true); // bytes per frame
  view.setUint16(34, 16, true); // bits per sample
  text(36, "data");
  view.setUint32(40, 2 * samples, true);
  let at = 44;
  for (const block of blocks) {
    new Int16Array(buffer, at, block.length).set(block);
    at += 2 * block.length;
  }
  return buffer;
}
