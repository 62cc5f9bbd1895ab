/**
 * The SDK's reconnect and resume path against a real node that stays up: connections dropped
 * (client side and server side) while another client streams chat; the application sees every
 * durable event exactly once, in order; requests in flight fail with DISCONNECTED; states are
 * observable; 4003 / 4009 stop the client; 4001 renews the token; 429 / 503 Retry-After are
 * honoured.
 */
import { describe, expect, it } from 'vitest';
import type WebSocket from 'ws';
import { eventually, nodePerTest, type TestNode } from '../../test-support/harness.js';
import { RequestError, type ConnectionState, type SocketFactory, type TradingRoomClient } from '../client/index.js';
import { nodeSocketFactory } from '../client/node.js';
import { consecutiveBreak } from '../../test-support/sockets.js';

const RELAXED = {
  RATE_LIMIT_IP_CONNECTIONS: '1000',
  RATE_LIMIT_CHAT_MESSAGES: '10000',
  RATE_LIMIT_CONNECTION_MESSAGES: '10000',
  RATE_LIMIT_USER_MESSAGES: '10000',
  RATE_LIMIT_JOIN_MESSAGES: '1000',
};
const startNode = nodePerTest(RELAXED);

interface Attempt {
  ws: WebSocket;
  url: string;
  at: number;
  refused?: { status: number; retryAfterS: number; at: number };
}

/** A socket factory that records every connection attempt and its refusal, if any. */
function recording(): { factory: SocketFactory; attempts: Attempt[]; current(): WebSocket } {
  const attempts: Attempt[] = [];
  const factory: SocketFactory = (url) => {
    const like = nodeSocketFactory(url);
    const ws = like as unknown as WebSocket;
    const attempt: Attempt = { ws, url, at: Date.now() };
    ws.on('unexpected-response', (_req, res) => {
      attempt.refused = {
        status: res.statusCode ?? 0,
        retryAfterS: Number(res.headers['retry-after']),
        at: Date.now(),
      };
    });
    attempts.push(attempt);
    return like;
  };
  return { factory, attempts, current: () => (attempts.at(-1) as Attempt).ws };
}

/** Records what the application sees. */
function watch(client: TradingRoomClient) {
  const seen = {
    states: [] as ConnectionState[],
    seqs: [] as number[],
    chats: [] as string[],
    resyncs: 0,
    closed: [] as { code: number; reason: string }[],
  };
  client.on('state', (s) => seen.states.push(s));
  client.on('resync', () => seen.resyncs++);
  client.on('closed', (c) => seen.closed.push(c));
  client.on('notification', (n) => {
    const seq = (n as { seq?: number }).seq;
    if (seq !== undefined) seen.seqs.push(seq);
    if (n.event === 'chat.message') seen.chats.push((n.data as { messageId: string }).messageId);
  });
  return seen;
}

function joinCount(states: readonly ConnectionState[]): number {
  return states.filter((s) => s === 'joined').length;
}

function sessionsOf(node: TestNode, userId: string) {
  return [...node.node.rooms.connectedSessions()].filter((s) => s.userId === userId);
}

describe.each([
  { grace: '0', label: 'participant removed at once on disconnect' },
  { grace: '10000', label: 'participant kept during the resume grace' },
])('resume across drops ($label)', ({ grace }) => {
  it(
    'delivers every durable event exactly once, in order, across several reconnects',
    { timeout: 30_000 },
    async () => {
      const node = await startNode({ SESSION_RESUME_GRACE_MS: grace });
      const rec = recording();
      const alice = await node.client('alice', { createSocket: rec.factory });
      const seen = watch(alice);
      const join = await alice.connect();
      const { client: bob } = await node.joined('bob');

      // Bob streams chat; Alice's connection is dropped in three different ways meanwhile.
      const sent: { messageId: string; seq: number }[] = [];
      let streaming = true;
      const stream = (async () => {
        for (let i = 0; streaming || i < 400; i++) {
          sent.push(await bob.request('chat.send', { text: `tick ${i}` }));
          if (i % 4 === 0) await new Promise((r) => setTimeout(r, 1));
        }
      })();
      const drops: (() => void)[] = [
        () => rec.current().terminate(), // the client's TCP connection dies
        () => sessionsOf(node, 'alice').forEach((s) => s.close(1012, 'test: server closes')), // server closes
        () => sessionsOf(node, 'alice').forEach((s) => s.close(1013, 'test: try again later')),
        () => (rec.current() as unknown as { _socket: { destroy(): void } })._socket.destroy(),
      ];
      try {
        for (const drop of [...drops, ...drops]) {
          const before = sent.length;
          await eventually(() => sent.length >= before + 25);
          const joins = joinCount(seen.states);
          drop();
          await eventually(() => joinCount(seen.states) === joins + 1, 5000, 'alice to rejoin');
          expect(alice.joined?.resumed).toBe(true);
        }
      } finally {
        streaming = false;
        await stream;
      }

      const lastSeq = (sent.at(-1) as { seq: number }).seq;
      await eventually(() => alice.lastSeq >= lastSeq, 5000, 'alice to catch up');
      expect(seen.seqs[0]).toBe(join.lastSeq + 1);
      expect(consecutiveBreak(seen.seqs)).toBeUndefined();
      expect(new Set(seen.chats).size).toBe(seen.chats.length);
      expect(seen.chats).toEqual(sent.map((s) => s.messageId));
      expect(seen.resyncs).toBe(0);
      expect(seen.closed).toEqual([]);
      expect(rec.attempts.length).toBe(9);
      expect(seen.states).toEqual([
        'connecting',
        'joined',
        ...Array.from({ length: 8 }, () => ['reconnecting', 'joined']).flat(),
      ]);
      expect(join.participantId).toBe(alice.joined?.participantId);
    },
  );
});

describe('requests while the connection drops', () => {
  it('fail with DISCONNECTED instead of hanging, in flight and while reconnecting', async () => {
    const t = await startNode();
    const rec = recording();
    const alice = await t.client('alice', { createSocket: rec.factory, requestTimeoutMs: 20_000 });
    await alice.connect();
    const started = Date.now();
    const inFlight = [alice.request('chat.send', { text: 'in flight' }), alice.request('ping', {})];
    rec.current().terminate();
    for (const p of inFlight) {
      const error = await p.then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(RequestError);
      expect((error as RequestError).code).toBe('DISCONNECTED');
    }
    expect(Date.now() - started).toBeLessThan(1000);
    // While it reconnects, a new request fails at once too.
    if (alice.state !== 'joined') {
      await expect(alice.request('ping', {})).rejects.toMatchObject({ code: 'DISCONNECTED' });
    }
    await eventually(() => alice.state === 'joined');
    expect((await alice.request('ping', {})).now).toBeGreaterThan(0);
  });
});

describe('close codes that stop the client', () => {
  it('4003: kicked by a moderator, the client stops and does not reconnect', async () => {
    const t = await startNode();
    const rec = recording();
    const alice = await t.client('alice', { createSocket: rec.factory });
    const seen = watch(alice);
    const join = await alice.connect();
    const kicked: string[] = [];
    alice.onEvent('session.kicked', (d) => kicked.push(d.reason));
    const { client: mod } = await t.joined('mod', { role: 'moderator' });
    await mod.request('moderation.kick', { participantId: join.participantId });
    await eventually(() => alice.state === 'closed');
    expect(seen.closed).toEqual([{ code: 4003, reason: expect.any(String) }]);
    expect(kicked).toHaveLength(1);
    // Every reconnect is scheduled through 'reconnecting'; 'closed' is left only by connect().
    expect(seen.states).toEqual(['connecting', 'joined', 'closed']);
    expect(rec.attempts).toHaveLength(1);
    expect(sessionsOf(t, 'alice')).toHaveLength(0);
    await expect(alice.request('ping', {})).rejects.toMatchObject({ code: 'DISCONNECTED' });
  });

  it('4009: replaced by a newer session of the same participant, the client stops', async () => {
    const t = await startNode();
    const rec = recording();
    const first = await t.client('alice', { createSocket: rec.factory });
    const seen = watch(first);
    await first.connect();
    const { client: second } = await t.joined('alice');
    await eventually(() => first.state === 'closed');
    expect(seen.closed).toEqual([{ code: 4009, reason: expect.any(String) }]);
    expect(seen.states).toEqual(['connecting', 'joined', 'closed']);
    expect(rec.attempts).toHaveLength(1);
    expect(second.state).toBe('joined');
    expect((await second.request('ping', {})).now).toBeGreaterThan(0);
  });
});

describe('4001: token expired', () => {
  it('asks onTokenExpired for a fresh token, reconnects with it and resumes', { timeout: 15_000 }, async () => {
    const node = await startNode();
    const rec = recording();
    let renewals = 0;
    let fresh = '';
    const alice = await node.client('alice', {
      createSocket: rec.factory,
      ttlSeconds: 2,
      onTokenExpired: async () => {
        renewals++;
        fresh = await node.token('alice', { ttlSeconds: 600 });
        return fresh;
      },
    });
    const seen = watch(alice);
    const join = await alice.connect();
    const { client: bob } = await node.joined('bob');
    const sent: string[] = [];
    await eventually(() => rec.attempts.length === 2 && alice.state === 'joined', 5000, 'alice to renew and rejoin');
    // Bob chats before and after; nothing is lost.
    for (let i = 0; i < 5; i++) sent.push((await bob.request('chat.send', { text: `after ${i}` })).messageId);
    await eventually(() => seen.chats.length === sent.length);
    expect(renewals).toBe(1);
    expect(rec.attempts[1]?.url).toContain(encodeURIComponent(fresh));
    expect(alice.joined?.resumed).toBe(true);
    expect(alice.joined?.participantId).toBe(join.participantId);
    expect(seen.chats).toEqual(sent);
    expect(seen.states).toEqual(['connecting', 'joined', 'reconnecting', 'joined']);
    expect(consecutiveBreak(seen.seqs)).toBeUndefined();
  });

  it('stops with 4001 when no fresh token can be had', { timeout: 15_000 }, async () => {
    const t = await startNode();
    const alice = await t.client('alice', { ttlSeconds: 1 });
    const seen = watch(alice);
    await alice.connect();
    await eventually(() => alice.state === 'closed', 5000);
    expect(seen.closed[0]?.code).toBe(4001);
  });
});

describe('a refused join', () => {
  it(
    'RATE_LIMITED on room.join: the client waits retryAfterMs and joins again, it does not give up',
    { timeout: 20_000 },
    async () => {
      const t = await startNode({ RATE_LIMIT_JOIN_MESSAGES: '2', RATE_LIMIT_JOIN_WINDOW_MS: '2000' });
      const rec = recording();
      const alice = await t.client('alice', { createSocket: rec.factory });
      const seen = watch(alice);
      const join = await alice.connect(); // join 1
      const { client: bob } = await t.joined('bob');
      let joins = joinCount(seen.states);
      rec.current().terminate();
      await eventually(() => joinCount(seen.states) === joins + 1); // join 2
      joins = joinCount(seen.states);
      const droppedAt = Date.now();
      rec.current().terminate(); // join 3 is refused until the window passes
      const sent = (await bob.request('chat.send', { text: 'while alice was out' })).messageId;
      await eventually(() => joinCount(seen.states) === joins + 1, 10_000, 'alice to join again');
      expect(seen.closed).toEqual([]);
      expect(Date.now() - droppedAt).toBeGreaterThan(500);
      expect(alice.joined?.resumed).toBe(true);
      expect(alice.joined?.participantId).toBe(join.participantId);
      await eventually(() => seen.chats.includes(sent));
      expect(consecutiveBreak(seen.seqs)).toBeUndefined();
    },
  );
});

describe('Retry-After', () => {
  it('429 on the upgrade: the next attempt waits at least Retry-After', { timeout: 20_000 }, async () => {
    const t = await startNode({ RATE_LIMIT_IP_CONNECTIONS: '4', RATE_LIMIT_IP_WINDOW_MS: '2000' });
    const rec = recording();
    const alice = await t.client('alice', { createSocket: rec.factory });
    const seen = watch(alice);
    await alice.connect(); // attempt 1
    await t.raw(await t.token('bob')).then((bob) => bob.request('room.join', {})); // keeps the room open
    for (let i = 0; i < 2; i++) {
      const joins = joinCount(seen.states);
      rec.current().terminate(); // attempts 2 and 3 succeed
      await eventually(() => joinCount(seen.states) === joins + 1);
    }
    rec.current().terminate(); // the 5th upgrade from this IP is refused with 429 until the window passes
    await eventually(() => rec.attempts.some((a) => a.refused), 5000, 'a refused attempt');
    await eventually(() => alice.state === 'joined', 10_000, 'alice to get back in');
    const refusedIndex = rec.attempts.findIndex((a) => a.refused);
    const refused = rec.attempts[refusedIndex] as Attempt;
    expect(refused.refused?.status).toBe(429);
    expect(refused.refused?.retryAfterS).toBeGreaterThanOrEqual(1);
    const next = rec.attempts[refusedIndex + 1] as Attempt;
    expect(next.at - (refused.refused as { at: number }).at).toBeGreaterThanOrEqual(
      refused.refused!.retryAfterS * 1000 - 20,
    );
    expect(alice.joined?.resumed).toBe(true);
  });

  it('503 while the node drains: the next attempt waits at least Retry-After', { timeout: 20_000 }, async () => {
    const node = await startNode({ DRAIN_TIMEOUT_MS: '2500' });
    const rec = recording();
    const alice = await node.client('alice', { createSocket: rec.factory });
    let draining: { deadline: number; reconnectAfterMs: number; at: number } | undefined;
    alice.onEvent('server.draining', (d) => (draining = { ...d, at: Date.now() }));
    await alice.connect();
    const drained = node.node.drain();
    await eventually(
      () => rec.attempts.length >= 2 && rec.attempts[1]?.refused !== undefined,
      5000,
      'a refused reconnect',
    );
    expect(draining).toBeDefined();
    // It left when told, not before.
    expect(rec.attempts[1]!.at - draining!.at).toBeGreaterThanOrEqual(draining!.reconnectAfterMs - 20);
    const refused = rec.attempts[1]!.refused!;
    expect(refused.status).toBe(503);
    expect(refused.retryAfterS).toBeGreaterThanOrEqual(1);
    await eventually(() => rec.attempts.length >= 3, 10_000, 'the next attempt');
    expect(rec.attempts[2]!.at - refused.at).toBeGreaterThanOrEqual(refused.retryAfterS * 1000 - 20);
    alice.close();
    await drained;
  });
});
