/**
 * A flooder in a room of 50: it writes thousands of chat messages as fast as its socket takes
 * them, is limited and then closed with 1008, while every normal participant sees no error and
 * every durable event (all chat included) exactly once, in order, with consecutive `seq`.
 * Default limits (the contract's numbers), except the per-IP one: every test client comes
 * from 127.0.0.1.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import type WebSocket from 'ws';
import { startTestNode, eventually, type TestNode } from '../../test-support/harness.js';
import type { ConnectionState, TradingRoomClient } from '../client/index.js';
import { consecutiveBreak, openSocket } from '../../test-support/sockets.js';

const PARTICIPANTS = 50;
const MESSAGES_EACH = 3;

let t: TestNode;
beforeAll(async () => {
  t = await startTestNode({ RATE_LIMIT_IP_CONNECTIONS: '500' });
});
afterAll(async () => {
  await t?.close();
});

interface Watched {
  client: TradingRoomClient;
  userId: string;
  joinLastSeq: number;
  seqs: number[];
  chats: { seq: number; messageId: string; text: string }[];
  states: ConnectionState[];
  errors: unknown[];
}

it('limits and then closes the flooder; the other 50 see every message in order', { timeout: 60_000 }, async () => {
  const watched: Watched[] = [];
  for (let batch = 0; batch < PARTICIPANTS; batch += 10) {
    const joined = await Promise.all(
      Array.from({ length: Math.min(10, PARTICIPANTS - batch) }, async (_, k) => {
        const userId = `normal-${batch + k}`;
        const client = await t.client(userId);
        const w: Watched = { client, userId, joinLastSeq: 0, seqs: [], chats: [], states: [], errors: [] };
        client.on('state', (s) => w.states.push(s));
        client.on('notification', (n) => {
          const seq = (n as { seq?: number }).seq;
          if (seq !== undefined) w.seqs.push(seq);
          if (n.event === 'chat.message' && seq !== undefined) {
            const d = n.data as { messageId: string; text: string };
            w.chats.push({ seq, messageId: d.messageId, text: d.text });
          }
        });
        w.joinLastSeq = (await client.connect()).lastSeq;
        return w;
      }),
    );
    watched.push(...joined);
  }

  // The flooder joins, then writes as fast as its socket drains.
  const flooder = await openSocket(`${t.wsUrl}?token=${await t.token('flooder')}`);
  const answers: Record<string, unknown>[] = [];
  flooder.on('message', (data) => answers.push(JSON.parse(data.toString()) as Record<string, unknown>));
  const flooderClosed = new Promise<{ code: number; at: number }>((resolve) =>
    flooder.once('close', (code) => resolve({ code, at: Date.now() })),
  );
  flooder.send(JSON.stringify({ id: 'join', method: 'room.join', data: {} }));
  await eventually(() => answers.some((a) => a.id === 'join'));
  expect(answers.find((a) => a.id === 'join')?.ok).toBe(true);

  // The room chats at a human pace; the flood starts once the conversation is going.
  const sent: { messageId: string; seq: number; at: number }[] = [];
  const conversation = Promise.all(
    watched.map(async (w, i) => {
      for (let m = 0; m < MESSAGES_EACH; m++) {
        await new Promise((r) => setTimeout(r, 100 + ((i * 37 + m * 101) % 500)));
        try {
          const result = await w.client.request('chat.send', { text: `${w.userId} #${m}` });
          sent.push({ ...result, at: Date.now() });
        } catch (error) {
          w.errors.push(error);
        }
      }
    }),
  );
  await eventually(() => sent.length >= 10);

  let written = 0;
  const floodStarted = Date.now();
  const flood = (async () => {
    while (flooder.readyState === flooder.OPEN && written < 20_000) {
      await new Promise<void>((resolve) => {
        for (let i = 0; i < 200; i++) {
          const last = i === 199;
          sendQuietly(
            flooder,
            JSON.stringify({ id: written++, method: 'chat.send', data: { text: `spam ${written}` } }),
            last ? resolve : undefined,
          );
        }
      });
    }
  })();
  await conversation;

  const closed = await flooderClosed;
  await flood;
  expect(closed.code).toBe(1008);
  expect(closed.at - floodStarted).toBeLessThan(10_000);
  // The normal conversation went on during the flood.
  expect(sent.filter((x) => x.at >= floodStarted && x.at <= closed.at).length).toBeGreaterThan(0);
  expect(written).toBeGreaterThanOrEqual(1000);
  const flooderOk = answers.filter((a) => a.ok === true && a.id !== 'join');
  const flooderLimited = answers.filter((a) => (a.error as { code?: string } | undefined)?.code === 'RATE_LIMITED');
  expect(flooderOk.length).toBe(5); // chat.send: 5 per 5 s
  expect(flooderLimited.length).toBeGreaterThan(100);
  for (const a of flooderLimited) expect((a.error as { retryAfterMs: number }).retryAfterMs).toBeGreaterThan(0);
  const otherErrors = answers.filter((a) => a.ok === false && (a.error as { code: string }).code !== 'RATE_LIMITED');
  expect(otherErrors).toEqual([]);

  // Everyone else: no errors, never disconnected, every chat message once and in order.
  for (const w of watched) expect(w.errors).toEqual([]);
  expect(sent).toHaveLength(PARTICIPANTS * MESSAGES_EACH);
  const accepted = [
    ...sent.map(({ messageId, seq }) => ({ messageId, seq })),
    ...flooderOk.map((a) => a.data as { messageId: string; seq: number }),
  ].sort((a, b) => a.seq - b.seq);
  const finalSeq = Math.max(...accepted.map((a) => a.seq));
  await eventually(
    () => watched.every((w) => w.client.lastSeq >= finalSeq),
    10_000,
    'every client to see the last chat',
  );
  for (const w of watched) {
    expect(w.states, w.userId).toEqual(['connecting', 'joined']);
    expect(w.seqs[0], w.userId).toBe(w.joinLastSeq + 1);
    expect(consecutiveBreak(w.seqs), w.userId).toBeUndefined();
    const mine = w.chats.filter((c) => c.seq <= finalSeq).map((c) => c.messageId);
    expect(mine, w.userId).toEqual(accepted.map((a) => a.messageId));
  }
});

function sendQuietly(ws: WebSocket, frame: string, done?: () => void): void {
  if (ws.readyState !== ws.OPEN) {
    done?.();
    return;
  }
  ws.send(frame, () => done?.());
}
