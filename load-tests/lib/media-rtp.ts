/**
 * Wire format and receiving side of the media capacity benchmark (`load-tests/media-capacity.ts`).
 *
 * Packets are VP8 RTP (the routers' payload type 101) of {@link PACKET_BYTES} bytes: a 12-byte RTP
 * header, a 4-byte VP8 payload descriptor (X=1, I=1, two-byte picture id) that mediasoup parses
 * for key frames, filler, and a 12-byte trailer at the very end: the send time (float64, epoch
 * ms) and the source's packet index (uint32). mediasoup rewrites the RTP header and the picture
 * id, never the end of the payload, so a sink can tell which source packet it got and how late,
 * whatever path it took (straight from the source, or through a producer and consumers).
 *
 * The source sends {@link PACKETS_PER_SECOND} packets a second: 1 Mbit/s of payload, 25 frames of
 * 5 packets each, a key frame every {@link KEY_FRAME_EVERY} frames and on PLI/FIR.
 */
import dgram from 'node:dgram';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';

/** The routers' VP8 payload type (`sfu/src/media-codecs.ts`). */
export const VP8_PAYLOAD_TYPE = 101;
export const PACKETS_PER_SECOND = 125;
export const PACKET_INTERVAL_MS = 1000 / PACKETS_PER_SECOND;
/** RTP payload bytes: 125 pkt/s x 1000 B x 8 = 1 Mbit/s. */
export const PAYLOAD_BYTES = 1000;
export const PACKET_BYTES = 12 + PAYLOAD_BYTES;
export const PACKETS_PER_FRAME = 5;
export const KEY_FRAME_EVERY = 50;
const TRAILER_BYTES = 12;
/** SSRC of the one stream the source sends into the SFU's producer. */
export const SOURCE_SSRC = 0x22220000;
/** SSRC of stream `i` of the direct fan-out baseline. */
export const baselineSsrc = (i: number): number => (0x33330000 + i) >>> 0;

/** rtpParameters of the producer: VP8 with PLI/FIR so that key frame requests reach the source. */
export function vp8RtpParameters(ssrc: number): {
  codecs: {
    mimeType: string;
    payloadType: number;
    clockRate: number;
    rtcpFeedback: { type: string; parameter?: string }[];
  }[];
  encodings: { ssrc: number }[];
} {
  return {
    codecs: [
      {
        mimeType: 'video/VP8',
        payloadType: VP8_PAYLOAD_TYPE,
        clockRate: 90000,
        rtcpFeedback: [{ type: 'nack' }, { type: 'nack', parameter: 'pli' }, { type: 'ccm', parameter: 'fir' }],
      },
    ],
    encodings: [{ ssrc }],
  };
}

/**
 * Packet `index` of the source (SSRC 0: the sender writes each stream's own SSRC at offset 8).
 * Packet `index` belongs to frame `index / 5`; the first packet of a frame carries the VP8 start
 * bit and, on key frames, a payload header with the P bit clear.
 */
export function sourcePacket(index: number, keyFrame: boolean, sentAtMs: number): Buffer {
  const packet = Buffer.alloc(PACKET_BYTES, 0x5a);
  const frame = Math.floor(index / PACKETS_PER_FRAME);
  const inFrame = index % PACKETS_PER_FRAME;
  const last = inFrame === PACKETS_PER_FRAME - 1;
  packet[0] = 0x80; // V=2
  packet[1] = (last ? 0x80 : 0) | VP8_PAYLOAD_TYPE;
  packet.writeUInt16BE(index & 0xffff, 2);
  packet.writeUInt32BE((frame * 3600) >>> 0, 4); // 25 fps at 90 kHz
  packet.writeUInt32BE(0, 8);
  // VP8 payload descriptor (RFC 7741): X, S on a frame's first packet, partition 0; I; M + 15-bit picture id.
  packet[12] = inFrame === 0 ? 0x90 : 0x80;
  packet[13] = 0x80;
  packet[14] = 0x80 | ((frame >> 8) & 0x7f);
  packet[15] = frame & 0xff;
  // VP8 payload header: bit 0 is P, the inverse key frame flag.
  packet[16] = inFrame === 0 && keyFrame ? 0x10 : 0x11;
  packet.writeDoubleBE(sentAtMs, PACKET_BYTES - TRAILER_BYTES);
  packet.writeUInt32BE(index >>> 0, PACKET_BYTES - 4);
  return packet;
}

/** Whether a datagram is RTCP carrying a PLI or a FIR (possibly inside a compound packet). */
export function isKeyFrameRequest(message: Buffer): boolean {
  let offset = 0;
  while (offset + 4 <= message.length) {
    const packetType = message[offset + 1] ?? 0;
    const format = (message[offset] ?? 0) & 0x1f;
    if (packetType === 206 && (format === 1 || format === 4)) return true;
    offset += (message.readUInt16BE(offset + 2) + 1) * 4;
  }
  return false;
}

/** Late threshold: a packet later than this after it was sent counts as lost (a jitter buffer would drop it). */
export const LATE_MS = 250;
const DELAY_BUCKETS = 2001; // 1 ms buckets, last one is ">= 2 s"

export type SinkResult = {
  streams: number;
  /** Packets per stream inside the window. */
  windowPackets: number;
  expected: number;
  onTime: number;
  late: number;
  /** 1 - onTime / expected. */
  loss: number;
  /** Streams that got nothing at all in the window (e.g. never saw a key frame). */
  silentStreams: number;
  /** Smallest and largest on-time share of one stream. */
  worstStream: number;
  bestStream: number;
  delayMs: { p50: number; p99: number; max: number };
  /** Datagrams that were not ours (RTCP, unknown SSRC). */
  otherDatagrams: number;
};

/**
 * The load generator's receiving side: a pool of UDP sockets on 127.0.0.1. Streams are spread
 * over the sockets (stream `i` to socket `i % size`), and told apart by SSRC. Counting is by the
 * source's packet index, so a window is exact whatever the latency: packets with an index in
 * `[lo, hi)` that arrive within {@link LATE_MS} of being sent are delivered, later ones are late.
 */
export class SinkPool {
  readonly sockets: dgram.Socket[] = [];
  /** Effective receive buffer of each socket (the kernel doubles what was asked, up to rmem_max). */
  recvBufferBytes = 0;
  #streamOf = new Map<number, number>();
  #total = new Uint32Array(0);
  #onTime = new Uint32Array(0);
  #late = new Uint32Array(0);
  #delays = new Uint32Array(DELAY_BUCKETS);
  #lo = Number.MAX_SAFE_INTEGER;
  #hi = Number.MAX_SAFE_INTEGER;
  #other = 0;

  static async open(size: number, recvBufferBytes: number): Promise<SinkPool> {
    const pool = new SinkPool();
    for (let i = 0; i < size; i++) {
      const socket = dgram.createSocket({ type: 'udp4', recvBufferSize: recvBufferBytes });
      await new Promise<void>((resolve, reject) => {
        socket.once('error', reject);
        socket.bind(0, '127.0.0.1', () => {
          socket.off('error', reject);
          resolve();
        });
      });
      socket.on('message', (message) => pool.#onMessage(message));
      pool.sockets.push(socket);
    }
    pool.recvBufferBytes = pool.sockets[0]?.getRecvBufferSize() ?? 0;
    return pool;
  }

  get ports(): number[] {
    return this.sockets.map((s) => (s.address() as AddressInfo).port);
  }

  /** Starts counting a new set of streams, identified by their SSRCs; no window yet. */
  reset(ssrcs: readonly number[]): void {
    this.#streamOf = new Map(ssrcs.map((ssrc, i) => [ssrc >>> 0, i]));
    this.#total = new Uint32Array(ssrcs.length);
    this.#onTime = new Uint32Array(ssrcs.length);
    this.#late = new Uint32Array(ssrcs.length);
    this.#delays.fill(0);
    this.#lo = Number.MAX_SAFE_INTEGER;
    this.#hi = Number.MAX_SAFE_INTEGER;
    this.#other = 0;
  }

  /** Streams that received at least one packet so far. */
  streamsStarted(): number {
    let n = 0;
    for (const count of this.#total) if (count > 0) n++;
    return n;
  }

  /** Counts source packets `lo <= index < hi` from now on. */
  setWindow(lo: number, hi: number): void {
    this.#lo = lo;
    this.#hi = hi;
  }

  result(): SinkResult {
    const streams = this.#onTime.length;
    const windowPackets = this.#hi - this.#lo;
    const expected = streams * windowPackets;
    let onTime = 0;
    let late = 0;
    let silent = 0;
    let worst = Number.POSITIVE_INFINITY;
    let best = 0;
    for (let i = 0; i < streams; i++) {
      const got = this.#onTime[i] ?? 0;
      onTime += got;
      late += this.#late[i] ?? 0;
      if (got + (this.#late[i] ?? 0) === 0) silent++;
      worst = Math.min(worst, got / windowPackets);
      best = Math.max(best, got / windowPackets);
    }
    return {
      streams,
      windowPackets,
      expected,
      onTime,
      late,
      loss: expected > 0 ? 1 - onTime / expected : Number.NaN,
      silentStreams: silent,
      worstStream: streams ? worst : Number.NaN,
      bestStream: best,
      delayMs: {
        p50: this.#delayQuantile(0.5),
        p99: this.#delayQuantile(0.99),
        max: this.#delayQuantile(1),
      },
      otherDatagrams: this.#other,
    };
  }

  close(): void {
    for (const socket of this.sockets) socket.close();
  }

  #delayQuantile(q: number): number {
    let total = 0;
    for (const n of this.#delays) total += n;
    if (total === 0) return Number.NaN;
    const rank = Math.max(1, Math.ceil(q * total));
    let seen = 0;
    for (let ms = 0; ms < DELAY_BUCKETS; ms++) {
      seen += this.#delays[ms] ?? 0;
      if (seen >= rank) return ms;
    }
    return DELAY_BUCKETS - 1;
  }

  #onMessage(message: Buffer): void {
    const length = message.length;
    if (length < 12 + TRAILER_BYTES || ((message[1] ?? 0) & 0x7f) !== VP8_PAYLOAD_TYPE) {
      this.#other++;
      return;
    }
    const stream = this.#streamOf.get(message.readUInt32BE(8));
    if (stream === undefined) {
      this.#other++;
      return;
    }
    this.#total[stream]!++;
    const index = message.readUInt32BE(length - 4);
    if (index < this.#lo || index >= this.#hi) return;
    const delay = Date.now() - message.readDoubleBE(length - TRAILER_BYTES);
    this.#delays[Math.min(DELAY_BUCKETS - 1, Math.max(0, Math.round(delay)))]!++;
    if (delay <= LATE_MS) this.#onTime[stream]!++;
    else this.#late[stream]!++;
  }
}

/** UDP counters of the network namespace (`/proc/net/snmp`), all sockets of the machine. */
export type UdpCounters = {
  InDatagrams: number;
  OutDatagrams: number;
  RcvbufErrors: number;
  SndbufErrors: number;
  InErrors: number;
  NoPorts: number;
};

export function udpCounters(): UdpCounters {
  const lines = readFileSync('/proc/net/snmp', 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('Udp:'));
  const names = (lines[0] ?? '').split(/\s+/).slice(1);
  const values = (lines[1] ?? '').split(/\s+/).slice(1).map(Number);
  const get = (name: string): number => values[names.indexOf(name)] ?? 0;
  return {
    InDatagrams: get('InDatagrams'),
    OutDatagrams: get('OutDatagrams'),
    RcvbufErrors: get('RcvbufErrors'),
    SndbufErrors: get('SndbufErrors'),
    InErrors: get('InErrors'),
    NoPorts: get('NoPorts'),
  };
}

export function udpDelta(before: UdpCounters, after: UdpCounters): UdpCounters {
  return {
    InDatagrams: after.InDatagrams - before.InDatagrams,
    OutDatagrams: after.OutDatagrams - before.OutDatagrams,
    RcvbufErrors: after.RcvbufErrors - before.RcvbufErrors,
    SndbufErrors: after.SndbufErrors - before.SndbufErrors,
    InErrors: after.InErrors - before.InErrors,
    NoPorts: after.NoPorts - before.NoPorts,
  };
}

/**
 * Jiffies of the whole machine (`/proc/stat`): busy (user, system, irq, softirq: not idle, iowait
 * or steal), softirq alone, steal (time the hypervisor gave to someone else) and total.
 */
export function machineJiffies(): { busy: number; softirq: number; steal: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = line
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number);
  return {
    busy: user + nice + system + irq + softirq,
    softirq,
    steal,
    total: user + nice + system + idle + iowait + irq + softirq + steal,
  };
}

/**
 * Bytes waiting in the receive queue of each of our UDP sockets on 127.0.0.1 (`/proc/net/udp`
 * `rx_queue`, in skb memory, the same unit as the receive buffer size). A queue near the buffer
 * size means the socket's reader is behind and the kernel is about to drop (RcvbufErrors).
 */
export function udpReceiveQueues(ports: ReadonlySet<number>): Map<number, number> {
  const queues = new Map<number, number>();
  const lines = readFileSync('/proc/net/udp', 'utf8').split('\n');
  for (let i = 1; i < lines.length; i++) {
    const fields = (lines[i] ?? '').trim().split(/\s+/);
    const local = fields[1];
    const queue = fields[4];
    if (!local || !queue || !local.startsWith('0100007F:')) continue;
    const port = parseInt(local.slice(9), 16);
    if (!ports.has(port)) continue;
    queues.set(port, parseInt(queue.split(':')[1] ?? '0', 16));
  }
  return queues;
}
