/**
 * Plain RTP over real UDP sockets for the sfu tests: an opus sender standing in for an encoder
 * (ffmpeg, OBS) and sinks standing in for recording taps.
 */
import dgram from 'node:dgram';
import type { AddressInfo } from 'node:net';

import type { types } from 'mediasoup';
import pino from 'pino';
import { expect } from 'vitest';

import { eventually } from './async.js';
import { OPUS_PAYLOAD_TYPE } from '../sfu/src/media-codecs.js';
import type { MediaService, MediaServiceOptions } from '../sfu/src/media-service.js';
import type { PipeOrigin } from '../sfu/src/media-types.js';

/** Id of the ssrc-audio-level header extension in {@link opusRtpParameters}. */
const AUDIO_LEVEL_EXTENSION_ID = 1;

/** A silent pino logger; `SFU_TEST_LOG=debug` shows the module's logs. */
export const testLogger = pino({ level: process.env['SFU_TEST_LOG'] ?? 'silent' });

/** MediaService options for tests: two workers, loopback, ephemeral ports. */
export function testServiceOptions(overrides: Partial<MediaServiceOptions> = {}): MediaServiceOptions {
  return {
    numWorkers: 2,
    listenIp: '127.0.0.1',
    rtcBasePort: 0,
    plainTransportsEnabled: true,
    logger: testLogger,
    workerRestartBackoff: { initialMs: 200, maxMs: 2000 },
    ...overrides,
  };
}

/** rtpParameters an encoder sending opus with this ssrc declares to `produce`. */
export function opusRtpParameters(ssrc: number): types.RtpParameters {
  return {
    codecs: [{ mimeType: 'audio/opus', payloadType: OPUS_PAYLOAD_TYPE, clockRate: 48000, channels: 2 }],
    encodings: [{ ssrc }],
    headerExtensions: [{ uri: 'urn:ietf:params:rtp-hdrext:ssrc-audio-level', id: AUDIO_LEVEL_EXTENSION_ID }],
  };
}

/** One RTP packet: 20 ms of "opus" with an audio level (0 = loudest, 127 = silence). */
export function opusPacket(sequence: number, ssrc: number, level = 30): Buffer {
  const header = Buffer.alloc(12);
  header[0] = 0x90; // V=2, X=1
  header[1] = OPUS_PAYLOAD_TYPE & 0x7f;
  header.writeUInt16BE(sequence & 0xffff, 2);
  header.writeUInt32BE((sequence * 960) >>> 0, 4);
  header.writeUInt32BE(ssrc >>> 0, 8);
  // One-byte header extension block (RFC 8285) with the audio level, padded to 4 bytes.
  const extension = Buffer.from([0xbe, 0xde, 0x00, 0x01, (AUDIO_LEVEL_EXTENSION_ID << 4) | 0, 0x80 | level, 0, 0]);
  const payload = Buffer.alloc(40, 0);
  payload[0] = 0xfc; // opus TOC: CELT FB 20 ms, one frame
  return Buffer.concat([header, extension, payload]);
}

/** Sends opus RTP packets to a plain transport every 20 ms until stopped. */
export class RtpSender {
  #socket = dgram.createSocket('udp4');
  #timer: NodeJS.Timeout | undefined;
  #sequence = 1;
  #ssrc: number;
  #level: number;
  sent = 0;

  constructor(ssrc: number, level = 30) {
    this.#ssrc = ssrc;
    this.#level = level;
  }

  /** The SSRC of every packet it sends. */
  get ssrc(): number {
    return this.#ssrc;
  }

  /** Starts sending to `ip:port`. */
  start(ip: string, port: number): void {
    this.stop();
    this.#timer = setInterval(() => {
      this.#socket.send(opusPacket(this.#sequence++, this.#ssrc, this.#level), port, ip);
      this.sent += 1;
    }, 20);
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

/** A UDP socket counting the RTP packets (not RTCP) it receives. */
export class RtpSink {
  #socket = dgram.createSocket('udp4');
  received = 0;
  /** SSRCs seen (a consumer's SSRC is its own, not its producer's). */
  ssrcs = new Set<number>();
  lastSsrc: number | undefined;

  static async open(): Promise<RtpSink> {
    const sink = new RtpSink();
    await new Promise<void>((resolve) => sink.#socket.bind(0, '127.0.0.1', resolve));
    sink.#socket.on('message', (message) => {
      const packetType = message[1] ?? 0;
      if (message.length < 12 || (packetType >= 192 && packetType <= 223)) return; // RTCP
      sink.received += 1;
      sink.lastSsrc = message.readUInt32BE(8);
      sink.ssrcs.add(sink.lastSsrc);
    });
    return sink;
  }

  get port(): number {
    return (this.#socket.address() as AddressInfo).port;
  }

  close(): void {
    this.#socket.close();
  }
}

/** Resolves once `predicate` holds; rejects after `timeoutMs` with `what`. */
export function waitFor(predicate: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  return eventually(predicate, timeoutMs, what);
}

/** Resolves once every sink received `by` more packets than it has now; rejects naming `what` after `timeoutMs`. */
export async function flowsTo(
  sinks: readonly RtpSink[],
  by = 10,
  what = 'RTP at the sinks',
  timeoutMs = 5000,
): Promise<void> {
  const start = sinks.map((s) => s.received);
  await eventually(() => sinks.every((s, i) => s.received >= (start[i] ?? 0) + by), timeoutMs, what);
}

/**
 * Asserts that none of `sinks` gets a packet while `sender` sends `packets` more: the sender is
 * the clock, so "nothing arrived" means packets had every chance to. The packets already in
 * flight when called (the sender's next 3) are let through first.
 */
export async function staysQuiet(sinks: readonly RtpSink[], sender: RtpSender, packets = 15): Promise<void> {
  let from = sender.sent;
  await eventually(() => sender.sent >= from + 3, 5000, 'the sender');
  const start = sinks.map((s) => s.received);
  from = sender.sent;
  await eventually(() => sender.sent >= from + packets, 5000, 'the sender');
  expect(sinks.map((s) => s.received)).toEqual(start);
}

/** A presenter publishing opus over a comedia plain transport fed by an {@link RtpSender}. */
export async function startPlainPublisher(
  media: MediaService,
  roomId: string,
  participantId: string,
  ssrc: number,
  level = 30,
): Promise<{ producerId: string; transportId: string; sender: RtpSender }> {
  const transport = await media.createPlainTransport(roomId, participantId, { direction: 'send', comedia: true });
  const { producerId } = await media.produce(roomId, participantId, {
    transportId: transport.transportId,
    kind: 'audio',
    rtpParameters: opusRtpParameters(ssrc),
    source: 'microphone',
  });
  const sender = new RtpSender(ssrc, level);
  sender.start(transport.ip, transport.port);
  return { producerId, transportId: transport.transportId, sender };
}

/**
 * A viewer consuming a producer on its own plain recv transport connected to an {@link RtpSink};
 * with `origin`, a producer published on another node (piped in from there).
 */
export async function startPlainViewer(
  media: MediaService,
  roomId: string,
  participantId: string,
  producerId: string,
  origin?: PipeOrigin,
): Promise<{ consumerId: string; transportId: string; sink: RtpSink }> {
  const sink = await RtpSink.open();
  const transport = await media.createPlainTransport(roomId, participantId, { direction: 'recv' });
  await media.connectPlainTransport(roomId, participantId, {
    transportId: transport.transportId,
    ip: '127.0.0.1',
    port: sink.port,
  });
  const rtpCapabilities = await media.getRouterRtpCapabilities(roomId);
  const consumer = await media.consume(
    roomId,
    participantId,
    { transportId: transport.transportId, producerId, rtpCapabilities },
    origin,
  );
  await media.resumeConsumer(roomId, participantId, consumer.consumerId);
  return { consumerId: consumer.consumerId, transportId: transport.transportId, sink };
}
