/**
 * Dead-peer detection with real sockets: the node pings every HEARTBEAT_INTERVAL_MS and
 * terminates a peer that missed two pongs in a row; a peer that answers stays, and its
 * participant leaves the room for everyone else when it is terminated.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type WebSocket from 'ws';
import { startTestNode, type TestNode } from '../../test-support/harness.js';
import { deferred, openSocket } from '../../test-support/sockets.js';

const INTERVAL_MS = 200;

let t: TestNode;
beforeAll(async () => {
  t = await startTestNode({ HEARTBEAT_INTERVAL_MS: String(INTERVAL_MS), RATE_LIMIT_IP_CONNECTIONS: '1000' });
});
afterAll(async () => {
  await t?.close();
});

interface Peer {
  ws: WebSocket;
  pings: number[];
  closed: Promise<{ code: number; at: number }>;
  request(method: string, data?: unknown): Promise<Record<string, unknown>>;
  events: Record<string, unknown>[];
}

async function peer(userId: string, autoPong: boolean): Promise<Peer> {
  const ws = await openSocket(`${t.wsUrl}?token=${await t.token(userId)}`, { autoPong });
  const pings: number[] = [];
  const events: Record<string, unknown>[] = [];
  const pending = new Map<number, (m: Record<string, unknown>) => void>();
  let nextId = 1;
  ws.on('ping', () => pings.push(Date.now()));
  ws.on('message', (data) => {
    const m = JSON.parse(data.toString()) as Record<string, unknown>;
    if (typeof m.id === 'number') pending.get(m.id)?.(m);
    else events.push(m);
  });
  const closed = new Promise<{ code: number; at: number }>((resolve) =>
    ws.once('close', (code) => resolve({ code, at: Date.now() })),
  );
  return {
    ws,
    pings,
    closed,
    events,
    request(method, data = {}) {
      const id = nextId++;
      const answer = deferred<Record<string, unknown>>();
      pending.set(id, answer.resolve);
      ws.send(JSON.stringify({ id, method, data }));
      return answer.promise;
    },
  };
}

describe('heartbeat', () => {
  it('terminates a peer that never answers pings, after two missed pongs', async () => {
    const observer = await peer('observer', true);
    expect((await observer.request('room.join')).ok).toBe(true);
    const healthy = await peer('healthy', true);
    expect((await healthy.request('room.join')).ok).toBe(true);

    const dead = await peer('dead', false);
    const openedAt = Date.now();
    const join = await dead.request('room.join');
    const participantId = (join.data as { participantId: string }).participantId;

    const closed = await dead.closed;
    expect(closed.code).toBe(1006); // terminated: no closing handshake with a dead peer
    expect(dead.pings.length).toBe(2); // pinged twice, no pong, then cut
    const elapsed = closed.at - openedAt;
    expect(elapsed).toBeGreaterThanOrEqual(2 * INTERVAL_MS);
    expect(elapsed).toBeLessThan(4 * INTERVAL_MS + 1000);

    // The room learns it left; the healthy peer was pinged all along and is still served.
    const left = await waitForEvent(
      observer,
      (e) => e.event === 'participant.left' && (e.data as { participantId: string }).participantId === participantId,
    );
    expect((left.data as { reason: string }).reason).toBe('disconnected');
    expect(healthy.pings.length).toBeGreaterThanOrEqual(2);
    expect((await healthy.request('ping')).ok).toBe(true);
    expect(healthy.ws.readyState).toBe(healthy.ws.OPEN);
  });

  it('counts only consecutive misses: a peer that stops answering later is cut two pings after', async () => {
    const flaky = await peer('flaky', false);
    let answered = 0;
    flaky.ws.on('ping', (payload) => {
      if (answered < 3) {
        answered++;
        flaky.ws.pong(payload);
      }
    });
    const closed = await flaky.closed;
    expect(closed.code).toBe(1006);
    expect(answered).toBe(3);
    expect(flaky.pings.length).toBe(5); // three answered, two missed
  });

  it('keeps a peer that answers every ping for many intervals', async () => {
    const steady = await peer('steady', true);
    expect((await steady.request('room.join')).ok).toBe(true);
    while (steady.pings.length < 6) await new Promise((r) => steady.ws.once('ping', r));
    expect(steady.ws.readyState).toBe(steady.ws.OPEN);
    expect((await steady.request('ping')).ok).toBe(true);
  });
});

async function waitForEvent(
  p: Peer,
  match: (e: Record<string, unknown>) => boolean,
  timeoutMs = 5000,
): Promise<Record<string, unknown>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = p.events.find(match);
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`no matching event; got ${JSON.stringify(p.events.slice(-5))}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
