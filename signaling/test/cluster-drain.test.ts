/**
 * One room over three node processes on one real Redis, and a node drained under load. Clients
 * spread over the nodes get every durable event once, in order, in the very frames the room's
 * log in Redis holds; counts and presence agree on every node and with Redis; per-user limits
 * count a user's connections on every node together. Then 300 SDK clients on one node ride out
 * its SIGTERM: they move through the load balancer to the other two nodes and resume there
 * while a presenter keeps chatting, none losing or getting twice a durable event.
 */
import { describe, expect, it } from 'vitest';
import { eventually } from '../../test-support/async.js';
import {
  clientLogMismatch,
  repeatedOnWire,
  useCluster,
  type LoggedEvent,
  type RecordedClient,
} from '../../test-support/cluster.js';
import type { RawSocket } from '../../test-support/harness.js';
import { GENEROUS_LIMITS, range } from '../../test-support/room-helpers.js';
import { consecutiveBreak } from '../../test-support/sockets.js';
import type { Participant } from '../src/protocol/common.js';

const NODE_TTL_MS = 1500;
const SESSION_RESUME_GRACE_MS = 2000;
const ADMIN = { admin: true } as const;

/** Expects a client's durable events to be the room's log from its join on, each once, in the log's frames. */
function expectWholeLog(c: RecordedClient, log: readonly LoggedEvent[]): void {
  expect(clientLogMismatch(c, log), `${c.userId} against the log`).toBeUndefined();
  expect(repeatedOnWire(c.frames), `${c.userId}: seqs sent twice`).toEqual([]);
}

/** Who is in the room as a client sees it: its join's participants, then every joined/left event. */
function membersSeenBy(c: RecordedClient): string[] {
  const members = new Set(c.join.participants.map((p) => p.participantId));
  for (const { notification } of c.received) {
    if (notification.event === 'participant.joined') {
      members.add((notification.data as { participant: Participant }).participant.participantId);
    } else if (notification.event === 'participant.left') {
      members.delete((notification.data as { participantId: string }).participantId);
    }
  }
  return [...members].sort();
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}

describe('one room over three node processes', { timeout: 60_000 }, () => {
  const USER_MESSAGES = 40;
  const CHAT_MESSAGES = 10;
  const cluster = useCluster({
    nodes: 3,
    nodeTtlMs: NODE_TTL_MS,
    env: {
      ...GENEROUS_LIMITS,
      SESSION_RESUME_GRACE_MS: String(SESSION_RESUME_GRACE_MS),
      RATE_LIMIT_USER_MESSAGES: String(USER_MESSAGES),
      RATE_LIMIT_USER_WINDOW_MS: '60000',
      RATE_LIMIT_CHAT_MESSAGES: String(CHAT_MESSAGES),
      RATE_LIMIT_CHAT_WINDOW_MS: '60000',
    },
  });

  it('every client on every node gets every durable event once, in the order and frames of the log in Redis', async () => {
    const roomId = 'spread';
    const clients: RecordedClient[] = [];
    for (const i of range(0, 8)) {
      const role = i === 0 ? 'presenter' : 'trader';
      clients.push(await cluster().recorded(`spread-${i}`, { node: i % 3, roomId, role }));
    }
    const presenter = clients[0] as RecordedClient;
    expect(new Set(clients.map((c) => c.join.epoch)).size).toBe(1);

    // Everyone talks at once, from every node; the presenter publishes alerts too.
    const chats = clients.flatMap((c, i) =>
      range(1, 5).map(async (k) => ({ ...(await c.client.request('chat.send', { text: `${i}:${k}` })), kind: 'chat' })),
    );
    const alerts = range(1, 3).map(async (k) => {
      const answer = await presenter.client.request('alert.publish', { symbol: 'ES', action: 'buy', price: 5000 + k });
      return { messageId: answer.alertId, seq: answer.seq, kind: 'alert' };
    });
    const answers = await Promise.all([...chats, ...alerts]);
    const lastSeq = Math.max(...answers.map((a) => a.seq));
    for (const c of clients) await eventually(() => c.client.lastSeq >= lastSeq, 10_000, `${c.userId} to catch up`);

    const log = await cluster().roomLog(roomId);
    expect(log[0]?.seq).toBe(1);
    expect(consecutiveBreak(log.map((e) => e.seq)), 'the log is gap-free').toBeUndefined();
    expect(log.at(-1)?.seq).toBe(lastSeq);
    for (const c of clients) expectWholeLog(c, log);
    // Each answer's seq is its own event in the log.
    const bySeq = new Map(log.map((e) => [e.seq, JSON.parse(e.frame) as { data: Record<string, unknown> }]));
    for (const a of answers) {
      const data = bySeq.get(a.seq)?.data;
      expect(a.kind === 'chat' ? data?.messageId : data?.alertId).toBe(a.messageId);
    }
  });

  it('counts and presence agree on every node and with Redis, before and after a leave', async () => {
    const roomId = 'presence';
    const placement = [
      { node: 0, role: 'presenter' },
      { node: 0, role: 'trader' },
      { node: 1, role: 'moderator' },
      { node: 1, role: 'trader' },
      { node: 2, role: 'trader' },
      { node: 2, role: 'trader' },
    ] as const;
    const clients: RecordedClient[] = [];
    const nodeOf = new Map<RecordedClient, string>();
    for (const [i, { node, role }] of placement.entries()) {
      const client = await cluster().recorded(`member-${i}`, { node, roomId, role });
      clients.push(client);
      nodeOf.set(client, `node-${node + 1}`);
    }
    expect(clients.at(-1)?.join.participantCount).toBe(placement.length);

    /** Every node's `/admin/rooms/:roomId`, Redis's presence and every client's view name the same members. */
    const expectAgreement = async (members: RecordedClient[]): Promise<void> => {
      const expected = members.map((c) => `${c.userId}@${nodeOf.get(c)}`).sort();
      const presence = await cluster().presence(roomId);
      expect([...presence.values()].map((p) => `${p.userId}@${p.nodeId}`).sort()).toEqual(expected);
      for (const [index, node] of cluster().nodes.entries()) {
        const response = await node.http(`/admin/rooms/${roomId}`, ADMIN);
        expect(response.status).toBe(200);
        const detail = (await response.json()) as {
          participants: number;
          connected: number;
          participantList: { userId: string; nodeId: string }[];
        };
        expect(detail, `node-${index + 1}`).toMatchObject({ participants: members.length, connected: members.length });
        expect(detail.participantList.map((p) => `${p.userId}@${p.nodeId}`).sort(), `node-${index + 1}`).toEqual(
          expected,
        );
      }
      const ids = [...presence.keys()].sort();
      for (const c of members) {
        await eventually(
          () => JSON.stringify(membersSeenBy(c)) === JSON.stringify(ids),
          5000,
          `${c.userId} to see everyone`,
        );
      }
    };
    await expectAgreement(clients);

    const leaver = clients[3] as RecordedClient;
    await leaver.client.request('room.leave', {});
    leaver.client.close();
    const stay = clients.filter((c) => c !== leaver);
    for (const c of stay) {
      await eventually(
        () => c.received.some((r) => r.notification.event === 'participant.left'),
        5000,
        `${c.userId} to see the leave`,
      );
      const left = c.received
        .filter((r) => r.notification.event === 'participant.left')
        .map((r) => r.notification.data);
      expect(left).toEqual([{ participantId: leaver.join.participantId, reason: 'left' }]);
    }
    await expectAgreement(stay);
  });

  it('limits a user by the sum of its messages on every node', async () => {
    /** Two connections of one user, on nodes 1 and 2 (in two rooms: in one, the second would replace the first). */
    const connectionsOf = async (userId: string): Promise<RawSocket[]> =>
      Promise.all(
        [0, 1].map(async (node) => {
          const raw = await cluster().raw(node, await cluster().token(userId, { roomId: `limits-${node}` }));
          expect(await raw.request('room.join', {})).toMatchObject({ ok: true });
          return raw;
        }),
      );
    const outcomes = async (requests: Promise<Record<string, unknown>>[]): Promise<{ ok: number; limited: number }> => {
      const responses = await Promise.all(requests);
      for (const r of responses.filter((r) => r.ok !== true)) {
        expect(r.error).toMatchObject({ code: 'RATE_LIMITED', retryAfterMs: expect.any(Number) });
      }
      const ok = responses.filter((r) => r.ok === true).length;
      return { ok, limited: responses.length - ok };
    };

    // chat.send per user: 8 on each node, CHAT_MESSAGES in all.
    const chatty = await connectionsOf('chatty');
    const chats = await outcomes(
      chatty.flatMap((raw, node) => range(1, 8).map((k) => raw.request('chat.send', { text: `${node}:${k}` }))),
    );
    expect(chats).toEqual({ ok: CHAT_MESSAGES, limited: 16 - CHAT_MESSAGES });

    // Every message of a user: its two joins and 25 pings on each node, USER_MESSAGES in all.
    const pinger = await connectionsOf('pinger');
    const pings = await outcomes(pinger.flatMap((raw) => range(1, 25).map(() => raw.request('ping', {}))));
    expect(pings).toEqual({ ok: USER_MESSAGES - 2, limited: 50 - (USER_MESSAGES - 2) });
  });
});

describe('a node drained under load', { timeout: 90_000 }, () => {
  const CLIENTS = 300;
  const DRAIN_TIMEOUT_MS = 6000;
  const cluster = useCluster({
    nodes: 3,
    nodeTtlMs: NODE_TTL_MS,
    env: {
      ...GENEROUS_LIMITS,
      DRAIN_TIMEOUT_MS: String(DRAIN_TIMEOUT_MS),
      SESSION_RESUME_GRACE_MS: String(SESSION_RESUME_GRACE_MS),
    },
  });

  it(`${CLIENTS} clients of a drained node resume on the other two: nothing lost, nothing twice, chat flows`, async () => {
    const roomId = 'drain';
    const presenter = await cluster().recorded('presenter', { node: 1, roomId, role: 'presenter' });
    const observer = await cluster().recorded('observer', { node: 2, roomId });
    const drained: RecordedClient[] = [];
    for (let first = 0; first < CLIENTS; first += 25) {
      const batch = range(first, Math.min(CLIENTS, first + 25) - 1);
      drained.push(...(await Promise.all(batch.map((i) => cluster().recorded(`trader-${i}`, { node: 0, roomId })))));
    }
    expect((await cluster().presence(roomId)).size).toBe(CLIENTS + 2);

    // The presenter on node-2 keeps publishing, chat and alerts in turn, through the migration.
    const sent: { kind: 'chat' | 'alert'; id: string; seq: number; at: number }[] = [];
    const failures: string[] = [];
    let flowing = true;
    const flow = (async () => {
      for (let i = 0; flowing; i++) {
        try {
          if (i % 2 === 0) {
            const { messageId, seq } = await presenter.client.request('chat.send', { text: `during ${i}` });
            sent.push({ kind: 'chat', id: messageId, seq, at: Date.now() });
          } else {
            const { alertId, seq } = await presenter.client.request('alert.publish', { symbol: 'NQ', action: 'sell' });
            sent.push({ kind: 'alert', id: alertId, seq, at: Date.now() });
          }
        } catch (error) {
          failures.push(String(error));
        }
        await new Promise((resolve) => setTimeout(resolve, 40));
      }
    })();
    await eventually(() => sent.length >= 5, 5000, 'the presenter publishing');

    const drainAt = Date.now();
    const exited = cluster().drain(0, 30_000);
    const resumed = (c: RecordedClient): boolean => c.client.state === 'joined' && c.client.joined !== c.join;
    await eventually(() => drained.every(resumed), 30_000, 'every client of node-1 to resume elsewhere');
    const lastResumedAt = Math.max(...drained.map((c) => c.states.at(-1)?.at ?? 0));
    const exit = await exited;
    expect(exit, 'node-1 exits 0 after its drain').toMatchObject({ code: 0, signal: null });
    const sentAfter = sent.length;
    await eventually(() => sent.length >= sentAfter + 4, 5000, 'the presenter publishing after the migration');
    flowing = false;
    await flow;
    expect(failures).toEqual([]);

    const marker = await presenter.client.request('chat.send', { text: 'after the drain' });
    for (const c of [presenter, observer, ...drained]) {
      await eventually(() => c.client.lastSeq >= marker.seq, 10_000, `${c.userId} to get the last chat`);
    }

    const log = await cluster().roomLog(roomId);
    expect(log.at(-1)?.seq).toBe(marker.seq);
    const duringMigration = sent.filter((s) => s.at > drainAt && s.at <= lastResumedAt);
    expect(duringMigration.length, 'chat and alerts sent while the clients moved').toBeGreaterThan(0);
    const reconnectMs: number[] = [];
    for (const c of drained) {
      expect(c.client.joined, c.userId).toMatchObject({ resumed: true, participantId: c.join.participantId });
      expect(c.resyncs, c.userId).toEqual([]);
      expect(c.client.state).toBe('joined');
      expectWholeLog(c, log);
      const ids = new Set(
        c.received.map((r) => {
          const data = r.notification.data as { messageId?: string; alertId?: string };
          return data.messageId ?? data.alertId;
        }),
      );
      for (const s of sent) expect(ids.has(s.id), `${c.userId} got ${s.kind} ${s.seq}`).toBe(true);
      const away = c.states.findIndex((s) => s.state === 'reconnecting');
      const back = c.states.findIndex((s, i) => i > away && s.state === 'joined');
      reconnectMs.push((c.states[back]?.at ?? NaN) - (c.states[away]?.at ?? NaN));
    }
    for (const c of [presenter, observer]) {
      expectWholeLog(c, log);
      expect(c.states, `${c.userId} stayed connected`).toEqual([]);
    }

    // They are spread over the two other nodes.
    const presence = [...(await cluster().presence(roomId)).values()];
    expect(presence).toHaveLength(CLIENTS + 2);
    const drainedIds = new Set(drained.map((c) => c.join.participantId));
    const byNode = new Map<string, number>();
    for (const p of presence.filter((p) => drainedIds.has(p.participantId))) {
      byNode.set(p.nodeId, (byNode.get(p.nodeId) ?? 0) + 1);
    }
    expect([...byNode.keys()].sort()).toEqual(['node-2', 'node-3']);
    const flickers = log.filter(
      (e) =>
        e.event === 'participant.left' &&
        drainedIds.has((JSON.parse(e.frame) as { data: { participantId: string } }).data.participantId),
    ).length;

    reconnectMs.sort((a, b) => a - b);
    console.log(
      `drain of ${CLIENTS} clients: reconnecting → joined p50 ${percentile(reconnectMs, 50)} ms, ` +
        `p95 ${percentile(reconnectMs, 95)} ms, max ${reconnectMs.at(-1)} ms; last resumed ` +
        `${lastResumedAt - drainAt} ms after SIGTERM; now on node-2: ${byNode.get('node-2')}, ` +
        `node-3: ${byNode.get('node-3')}; ${duringMigration.length} chat/alerts sent during the move; ` +
        `${flickers} participant.left for moved participants`,
    );
  });
});
