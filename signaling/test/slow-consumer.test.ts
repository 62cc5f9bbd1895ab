/**
 * Slow-consumer detection with real sockets: a client that stops reading (its TCP socket
 * paused) lets the node's send backlog grow past SLOW_CONSUMER_MAX_BUFFERED_BYTES; after
 * SLOW_CONSUMER_GRACE_MS it is closed with 1013, while a client that reads keeps receiving
 * every message promptly.
 */
import type { Socket } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type WebSocket from 'ws';
import { eventually, startTestNode, type TestNode } from '../../test-support/harness.js';
import type { TradingRoomClient } from '../client/index.js';
import { consecutiveBreak, deferred, openSocket } from '../../test-support/sockets.js';

let t: TestNode;
beforeAll(async () => {
  t = await startTestNode({
    SLOW_CONSUMER_MAX_BUFFERED_BYTES: String(256 * 1024),
    SLOW_CONSUMER_GRACE_MS: '200',
    RATE_LIMITS_ENABLED: 'false',
  });
});
afterAll(async () => {
  await t?.close();
});

async function slowConsumersClosed(): Promise<number> {
  const text = await (await fetch(`${t.httpUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('trading_room_slow_consumers_closed_total'));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

it('closes a client that stops reading with 1013; a reading client is not held back', { timeout: 60_000 }, async () => {
  // The slow one: joined, then its socket stops reading.
  const slow: WebSocket = await openSocket(`${t.wsUrl}?token=${await t.token('slow')}`);
  const slowJoined = deferred();
  slow.once('message', () => slowJoined.resolve());
  slow.send(JSON.stringify({ id: 1, method: 'room.join', data: {} }));
  await slowJoined.promise;
  const slowClosed = new Promise<number>((resolve) => slow.once('close', (code) => resolve(code)));
  const slowSocket = (slow as unknown as { _socket: Socket })._socket;
  slowSocket.pause();

  // The reader: an SDK client that records when each chat message arrives.
  const { client: reader, join } = await t.joined('reader');
  const arrivals = new Map<string, number>();
  const seqs: number[] = [];
  reader.on('notification', (n) => {
    const seq = (n as { seq?: number }).seq;
    if (seq !== undefined) seqs.push(seq);
    if (n.event === 'chat.message') arrivals.set((n.data as { text: string }).text.slice(0, 12), Date.now());
  });

  // Drive traffic: 2000-character messages, 16 in flight, until the node drops the slow one.
  const { client: sender } = await t.joined('sender');
  const sentAt = new Map<string, number>();
  const body = 'x'.repeat(1988);
  const before = await slowConsumersClosed();
  let n = 0;
  let stop = false;
  const drive = async (worker: TradingRoomClient): Promise<void> => {
    while (!stop && n < 50_000) {
      const key = `m${String(n++).padStart(11, '0')}`;
      sentAt.set(key, Date.now());
      await worker.request('chat.send', { text: key + body });
    }
  };
  const drivers = Promise.all(Array.from({ length: 16 }, () => drive(sender)));
  await eventually(async () => (await slowConsumersClosed()) > before, 30_000, 'the slow consumer to be closed');
  stop = true;
  await drivers;

  // Let the slow client read again: it finds the 1013 close frame behind its backlog.
  slowSocket.resume();
  expect(await slowClosed).toBe(1013);

  // The reader got every message, in order, without delay.
  const lastSeq = Math.max(...seqs, 0);
  await eventually(() => arrivals.size === sentAt.size, 10_000, 'the reader to get every message');
  expect(seqs[0]).toBe(join.lastSeq + 1);
  expect(consecutiveBreak(seqs)).toBeUndefined();
  const delays = [...sentAt].map(([key, at]) => (arrivals.get(key) as number) - at);
  delays.sort((a, b) => a - b);
  const p99 = delays[Math.floor(delays.length * 0.99)] as number;
  expect(sentAt.size).toBeGreaterThan(100);
  expect(p99).toBeLessThan(500);
  expect(delays.at(-1)).toBeLessThan(2000);
  expect(lastSeq).toBeGreaterThan(0);
  expect(reader.state).toBe('joined');
});
