/**
 * The frame-once write path against the installed `ws`, with real servers and clients on the
 * loopback: if an upgrade of `ws` changes the internals `prepared-frame.ts` relies on, the first
 * two tests fail (the node would still be correct, on the slower `ws.send` fallback). Also: the
 * bytes on the wire are ws's own framing, a prepared frame keeps its place among `ws.send`
 * messages (also while permessage-deflate compresses one), and its bytes count in
 * `bufferedAmount`, which the slow-consumer bound reads.
 */
import type { AddressInfo } from 'node:net';
import type { Socket } from 'node:net';
import { afterEach, expect, it } from 'vitest';
import { WebSocketServer, type WebSocket, type ServerOptions } from 'ws';
import { eventually } from '../../test-support/async.js';
import { openSocket } from '../../test-support/sockets.js';
import { FRAME_ONCE_AVAILABLE, FrameWriter, PreparedFrame } from '../src/gateway/prepared-frame.js';

interface Pair {
  readonly server: WebSocket;
  readonly client: WebSocket;
  readonly received: string[];
}

const servers: WebSocketServer[] = [];
const clients: WebSocket[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.terminate();
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

/** A ws server on a free loopback port and `count` connected clients recording the text they receive. */
async function connect(count: number, options: ServerOptions = {}, clientDeflate = false): Promise<Pair[]> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, ...options });
  servers.push(wss);
  await new Promise((r) => wss.once('listening', r));
  const { port } = wss.address() as AddressInfo;
  const pairs: Pair[] = [];
  for (let i = 0; i < count; i++) {
    const accepted = new Promise<WebSocket>((r) => wss.once('connection', r));
    const client = await openSocket(`ws://127.0.0.1:${port}/`, { perMessageDeflate: clientDeflate });
    clients.push(client);
    const received: string[] = [];
    client.on('message', (data, isBinary) => {
      expect(isBinary).toBe(false);
      received.push((data as Buffer).toString());
    });
    pairs.push({ server: await accepted, client, received });
  }
  return pairs;
}

it('ws still has the internals the frame-once path uses (Sender.frame, _sender._state/_queue/_socket)', async () => {
  expect(FRAME_ONCE_AVAILABLE, 'ws Sender.frame is missing or frames differently').toBe(true);
  const [pair] = await connect(1);
  expect(
    new FrameWriter(pair!.server).direct,
    "an open, idle ws socket no longer exposes _sender._state === 0 / _queue / _socket (the WebSocket's own): fan-out fell back to ws.send",
  ).toBe(true);
  const frame = new PreparedFrame('{"event":"x"}');
  expect(frame.frame).toEqual(Buffer.from([0x81, 13, ...Buffer.from('{"event":"x"}')]));
});

it('writes one shared frame to every socket, in order with ws.send messages', async () => {
  const pairs = await connect(5);
  const big = JSON.stringify({ event: 'chat.message', data: { text: 'x'.repeat(70_000) } });
  const frames = [new PreparedFrame('{"n":1}'), new PreparedFrame(Buffer.from(big)), new PreparedFrame('{"n":3}')];
  for (const { server } of pairs) {
    const writer = new FrameWriter(server);
    writer.write(frames[0]!);
    server.send('{"n":2}');
    writer.write(frames[1]!);
    writer.write(frames[2]!);
  }
  for (const { received } of pairs) {
    await eventually(() => received.length >= 4, 10_000, 'four messages');
    expect(received).toEqual(['{"n":1}', '{"n":2}', big, '{"n":3}']);
  }
  // Built once: the same buffer went to every socket.
  expect(frames[1]!.frame).toBe(frames[1]!.frame);
  expect(frames[1]!.frame!.length).toBe(Buffer.byteLength(big) + 10);
});

it('falls back to ws.send while permessage-deflate is compressing, so order holds', async () => {
  const [pair] = await connect(1, { perMessageDeflate: { threshold: 0 } }, true);
  const { server, received } = pair!;
  const writer = new FrameWriter(server);
  const compressible = 'a'.repeat(200_000);
  server.send(compressible); // deflated asynchronously: the sender is busy until it is done
  expect(writer.direct).toBe(false);
  writer.write(new PreparedFrame('{"after":true}'));
  await eventually(() => received.length >= 2, 10_000, 'two messages');
  expect(received[0]).toHaveLength(200_000);
  expect(received[1]).toBe('{"after":true}');
  // Idle again: prepared frames go out uncompressed (RSV1 clear), which the client accepts.
  await eventually(() => writer.direct, 10_000, 'the sender to be idle');
  writer.write(new PreparedFrame('{"plain":true}'));
  await eventually(() => received.length >= 3, 10_000, 'three messages');
  expect(received[2]).toBe('{"plain":true}');
});

it('counts prepared bytes in bufferedAmount when the peer stops reading', async () => {
  const [pair] = await connect(1);
  const { server, client } = pair!;
  (client as unknown as { _socket: Socket })._socket.pause();
  const frame = new PreparedFrame(Buffer.alloc(64 * 1024, 0x62));
  const writer = new FrameWriter(server);
  expect(writer.highWaterMark).toBeGreaterThan(0);
  expect(writer.highWaterMark).toBeLessThan(Number.POSITIVE_INFINITY);
  // A write reports whether the socket is still below its high-water mark: the session skips
  // reading the backlog only while it is.
  const below = Array.from({ length: 200 }, () => writer.write(frame));
  expect(below.at(-1)).toBe(false);
  // 12.8 MB cannot all sit in the loopback's socket buffers: the rest is ws's backlog.
  expect(server.bufferedAmount).toBeGreaterThan(4 * 1024 * 1024);
  (client as unknown as { _socket: Socket })._socket.resume();
  await eventually(() => server.bufferedAmount === 0, 20_000, 'the backlog to drain');
});

it('a closed socket gets nothing and nothing throws', async () => {
  const [pair] = await connect(1);
  const { server, client } = pair!;
  const writer = new FrameWriter(server);
  expect(writer.direct).toBe(true);
  const closed = new Promise((r) => server.once('close', r));
  client.close();
  await closed;
  // A connection's writer, made while the socket was open, checks again on every write.
  expect(writer.direct).toBe(false);
  expect(new FrameWriter(server).direct).toBe(false);
  expect(() => writer.write(new PreparedFrame('{"late":true}'))).not.toThrow();
});
