/**
 * The RTP source of the media capacity benchmark, a child process of `load-tests/media-capacity.ts`
 * (forked with `--import tsx`, driven over IPC, exits when its parent goes away).
 *
 * Packet `index` is due at `start + index * 8 ms` (125 pkt/s, 1 Mbit/s, see `media-rtp.ts`); the
 * pacing loop sends every packet that is due, catching up when it falls behind, and records how
 * far behind it ever was. Each packet goes to every current stream:
 *
 * - `sfu`: one stream into a producer's comedia plain transport (the SFU fans out); PLI/FIR coming
 *   back on that socket make the next frame a key frame.
 * - `fanout`: N streams straight to the load generator's sinks, each with its own SSRC, stream `i`
 *   over a socket connected to sink `i % sinks` — the no-SFU baseline, same sinks, same spread.
 *
 * Sockets are `connect`ed so that a send does no address lookup.
 */
import dgram from 'node:dgram';

import {
  isKeyFrameRequest,
  KEY_FRAME_EVERY,
  PACKET_INTERVAL_MS,
  PACKETS_PER_FRAME,
  sourcePacket,
} from './media-rtp.js';

export type SourceRequest =
  | { type: 'init'; sinkPorts: number[] }
  | { type: 'fanout'; ssrcs: number[] }
  | { type: 'sfu'; ip: string; port: number; ssrc: number }
  | { type: 'stop' }
  | { type: 'mark'; id: number };

export type SourceReply =
  | { type: 'ready' }
  | { type: 'sinks'; sinks: number }
  | { type: 'streams'; streams: number }
  | {
      type: 'mark';
      id: number;
      /** Index of the next packet to send. */
      next: number;
      /** Index of the packet due now (by the clock). */
      due: number;
      datagramsSent: number;
      sendErrors: number;
      keyFrames: number;
      keyFrameRequests: number;
      /** Worst lateness of the pacing loop since the last mark, ms. */
      maxLagMs: number;
    };

type Stream = { socket: dgram.Socket; ssrc: number };

const send = (reply: SourceReply): void => {
  process.send?.(reply);
};

let sinkSockets: dgram.Socket[] = [];
let sfuSocket: dgram.Socket | undefined;
let streams: Stream[] = [];
const startedAt = Date.now();
let next = 0;
let datagramsSent = 0;
let sendErrors = 0;
let keyFrames = 0;
let keyFrameRequests = 0;
let keyFrameWanted = true;
let maxLagMs = 0;

const onSendError = (error: Error | null): void => {
  if (error) sendErrors++;
};

async function connected(port: number, ip = '127.0.0.1'): Promise<dgram.Socket> {
  const socket = dgram.createSocket('udp4');
  socket.on('error', () => {
    sendErrors++;
  });
  await new Promise<void>((resolve) => socket.connect(port, ip, resolve));
  return socket;
}

function pace(): void {
  const now = Date.now();
  const due = Math.floor((now - startedAt) / PACKET_INTERVAL_MS);
  if (next <= due) maxLagMs = Math.max(maxLagMs, now - (startedAt + next * PACKET_INTERVAL_MS));
  while (next <= due) {
    const index = next++;
    if (streams.length === 0) continue;
    const firstOfFrame = index % PACKETS_PER_FRAME === 0;
    let key = false;
    if (firstOfFrame && (keyFrameWanted || (index / PACKETS_PER_FRAME) % KEY_FRAME_EVERY === 0)) {
      key = true;
      keyFrameWanted = false;
      keyFrames++;
    }
    const template = sourcePacket(index, key, startedAt + index * PACKET_INTERVAL_MS);
    for (const stream of streams) {
      const packet = Buffer.allocUnsafe(template.length);
      template.copy(packet);
      packet.writeUInt32BE(stream.ssrc, 8);
      stream.socket.send(packet, onSendError);
      datagramsSent++;
    }
  }
}

function closeSfuSocket(): void {
  sfuSocket?.close();
  sfuSocket = undefined;
}

process.on('message', (raw) => {
  void (async () => {
    const request = raw as SourceRequest;
    switch (request.type) {
      case 'init':
        sinkSockets = await Promise.all(request.sinkPorts.map((port) => connected(port)));
        send({ type: 'sinks', sinks: sinkSockets.length });
        return;
      case 'fanout':
        closeSfuSocket();
        streams = request.ssrcs.map((ssrc, i) => ({ socket: sinkSockets[i % sinkSockets.length]!, ssrc }));
        send({ type: 'streams', streams: streams.length });
        return;
      case 'sfu': {
        closeSfuSocket();
        const socket = await connected(request.port, request.ip);
        socket.on('message', (message) => {
          if (isKeyFrameRequest(message)) {
            keyFrameRequests++;
            keyFrameWanted = true;
          }
        });
        sfuSocket = socket;
        keyFrameWanted = true;
        streams = [{ socket, ssrc: request.ssrc }];
        send({ type: 'streams', streams: 1 });
        return;
      }
      case 'stop':
        streams = [];
        closeSfuSocket();
        send({ type: 'streams', streams: 0 });
        return;
      case 'mark':
        send({
          type: 'mark',
          id: request.id,
          next,
          due: Math.floor((Date.now() - startedAt) / PACKET_INTERVAL_MS),
          datagramsSent,
          sendErrors,
          keyFrames,
          keyFrameRequests,
          maxLagMs,
        });
        maxLagMs = 0;
        return;
    }
  })();
});

process.on('disconnect', () => process.exit(0));
setInterval(pace, 2);
send({ type: 'ready' });
