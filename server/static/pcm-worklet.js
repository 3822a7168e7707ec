// Audio thread: copy each 128-frame render quantum and hand it to the page.
// Nothing else happens here (no resampling, no conversion, no buffering), so the
// audio thread never waits on the page or the network.
class PcmTap extends AudioWorkletProcessor {
  process(inputs) {
    const channels = inputs[0];
    if (channels && channels.length > 0) {
      const copies = channels.map((channel) => channel.slice());
      this.port.postMessage(copies, copies.map((copy) => copy.buffer));
    }
    return true;
  }
}

registerProcessor("pcm-tap", PcmTap);
