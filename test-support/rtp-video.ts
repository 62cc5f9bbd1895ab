/**
 * Plain-RTP video for tests that follow key-frame requests: a VP8 "encoder" that sends a key
 * frame when it starts and whenever it is asked (RTCP PLI or FIR), counting the requests, and a
 * tap that counts the RTP it receives and can ask for a key frame itself (RTCP PLI back to the
 * transport it consumes from). The frames are tiny and not decodable; the SFU only reads their
 * VP8 payload descriptor and key-frame bit.
 */
import dgram from 'node:dgram';
import type { AddressInfo } from 'node:net';
import type { types } from 'mediasoup';

/** Payload type the tests' VP8 senders declare (any works on a plain transport; this is the routers'). */
const VP8_PAYLOAD_TYPE = 101;

/**
 * rtpParameters of a VP8 plain-RTP producer with `ssrc`, answering key-frame requests (PLI, FIR);
 * with several SSRCs, simulcast: one encoding each, lowest first.
 */
export function vp8RtpParameters(ssrc: number | readonly number[]): types.RtpParameters {
  const ssrcs = typeof ssrc === 'number' ? [ssrc] : ssrc;
  return {
    codecs: [
      {
        mimeType: 'video/VP8',
        payloadType: VP8_PAYLOAD_TYPE,
        clockRate: 90000,
        rtcpFeedback: [
          { type: 'nack', parameter: 'pli' },
          { type: 'ccm', parameter: 'fir' },
        ],
      },
    ],
    encodings: ssrcs.map((s) => ({ ssrc: s, ...(ssrcs.length > 1 ? { scalabilityMode: 'L1T1' } : {}) })),
  };
}

/** One VP8 RTP packet holding a whole (tiny) frame; a key frame when `keyFrame`. */
function vp8Packet(sequence: number, ssrc: number, pictureId: number, keyFrame: boolean): Buffer {
  const header = Buffer.alloc(12);
  header[0] = 0x80; // V=2
  header[1] = 0x80 | VP8_PAYLOAD_TYPE; // marker: the frame ends here
  header.writeUInt16BE(sequence & 0xffff, 2);
  header.writeUInt32BE((pictureId * 3000) >>> 0, 4);
  header.writeUInt32BE(ssrc >>> 0, 8);
  // Payload descriptor (RFC 7741): X=1, S=1, PID=0; I, L, T present; 15-bit picture id, TL0PICIDX, TID 0 with Y.
  const descriptor = Buffer.from([
    0x90,
    0xe0,
    0x80 | ((pictureId >> 8) & 0x7f),
    pictureId & 0xff,
    pictureId & 0xff,
    0x20,
  ]);
  // Frame tag: P bit 0 on a key frame, then the key frame's start code and a 640×480 size.
  const frame = keyFrame
    ? Buffer.from([0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01, ...new Array<number>(30).fill(0)])
    : Buffer.from([0x11, 0x02, 0x00, ...new Array<number>(37).fill(0)]);
  return Buffer.concat([header, descriptor, frame]);
}

/** Whether a datagram is RTCP feedback asking for a key frame: PLI (PSFB, FMT 1) or FIR (PSFB, FMT 4). */
function asksKeyFrame(datagram: Buffer): boolean {
  // A compound packet: walk its parts.
  let offset = 0;
  while (offset + 4 <= datagram.length) {
    const first = datagram[offset] ?? 0;
    const packetType = datagram[offset + 1] ?? 0;
    if (packetType === 206 && ((first & 0x1f) === 1 || (first & 0x1f) === 4)) return true;
    offset += (datagram.readUInt16BE(offset + 2) + 1) * 4;
  }
  return false;
}

/**
 * Sends VP8 frames (30 a second, on each of its SSRCs: simulcast when several) to a plain
 * transport; a key frame first and on every request.
 */
export class Vp8Sender {
  readonly ssrc: number;
  readonly ssrcs: readonly number[];
  /** Key-frame requests (PLI or FIR) that reached the sender. */
  keyFrameRequests = 0;
  sent = 0;
  #socket = dgram.createSocket('udp4');
  #timer: NodeJS.Timeout | undefined;
  #sequences: number[];
  #pictureId = 1;
  #keyFrameDue = true;

  constructor(ssrc: number | readonly number[]) {
    this.ssrcs = typeof ssrc === 'number' ? [ssrc] : [...ssrc];
    this.ssrc = this.ssrcs[0] ?? 0;
    this.#sequences = this.ssrcs.map(() => 1);
    this.#socket.on('message', (datagram) => {
      if (!asksKeyFrame(datagram)) return;
      this.keyFrameRequests += 1;
      this.#keyFrameDue = true;
    });
  }

  /** Starts sending to `ip:port` (the comedia transport learns the sender's address from it). */
  start(ip: string, port: number): void {
    this.stop();
    this.#timer = setInterval(() => {
      const keyFrame = this.#keyFrameDue;
      this.#keyFrameDue = false;
      const pictureId = this.#pictureId++ & 0x7fff;
      this.ssrcs.forEach((ssrc, i) => {
        const sequence = this.#sequences[i] ?? 1;
        this.#sequences[i] = sequence + 1;
        this.#socket.send(vp8Packet(sequence, ssrc, pictureId, keyFrame), port, ip);
      });
      this.sent += 1;
    }, 33);
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  close(): void {
    this.stop();
    this.#socket.close();
  }
}

/** A monitoring tap: counts the RTP it receives, and asks the transport it consumes from for a key frame. */
export class VideoTap {
  received = 0;
  #socket = dgram.createSocket('udp4');

  static async open(): Promise<VideoTap> {
    const tap = new VideoTap();
    await new Promise<void>((resolve) => tap.#socket.bind(0, '127.0.0.1', resolve));
    tap.#socket.on('message', (datagram) => {
      const packetType = datagram[1] ?? 0;
      if (datagram.length >= 12 && (packetType < 192 || packetType > 223)) tap.received += 1;
    });
    return tap;
  }

  get port(): number {
    return (this.#socket.address() as AddressInfo).port;
  }

  /** Sends an RTCP PLI about `mediaSsrc` (the consumer's SSRC) to the transport at `ip:port`. */
  requestKeyFrame(ip: string, port: number, mediaSsrc: number): void {
    const pli = Buffer.alloc(12);
    pli[0] = 0x81; // V=2, FMT=1 (PLI)
    pli[1] = 206; // PSFB
    pli.writeUInt16BE(2, 2); // length in 32-bit words minus one
    pli.writeUInt32BE(0x7e57 >>> 0, 4); // sender SSRC
    pli.writeUInt32BE(mediaSsrc >>> 0, 8);
    this.#socket.send(pli, port, ip);
  }

  close(): void {
    this.#socket.close();
  }
}
