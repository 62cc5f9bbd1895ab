/**
 * One room across nodes on one real Redis: three nodes in this process (each with its own bus,
 * registry and RPC connections, as separate processes would have), clients spread over them.
 * Every durable event reaches every client on every node once, in order, gap-free; counts and
 * presence agree everywhere; a session resumes on another node; kick, mute and setRole reach a
 * participant on another node; 4009 and bans hold across nodes; an admin close reaches every
 * node; a Redis restarted empty starts a new epoch that clients follow without reconnecting.
 * A node killed with -9 (a real process) has its participants reported left by a survivor.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from '../../test-support/async.js';
import { useCluster } from '../../test-support/cluster.js';
import { startTestNode, type RawSocket, type TestNode } from '../../test-support/harness.js';
import { TestRedis } from '../../test-support/redis.js';
import {
  GENEROUS_LIMITS,
  durable,
  expectJoinResult,
  expectWireValid,
  http,
  joinRaw,
  joinRecording,
  lastSeqOf,
  range,
  seqs,
  type JoinedRaw,
  type Message,
} from '../../test-support/room-helpers.js';
import { consecutiveBreak } from '../../test-support/sockets.js';
import type { JoinResult } from '../client/index.js';

const ADMIN = { Authorization: 'Bearer admin-token-for-tests-0123456789' };

function dataOf(m: Message): Message {
  return m.data as Message;
}

/** Waits until a socket has received the durable event `seq`. */
async function waitForSeq(raw: RawSocket, seq: number): Promise<void> {
  await raw.waitFor((m) => typeof m.seq === 'number' && m.seq >= seq, 10_000);
}

/** What {@link useNodes} gives a describe block. */
interface InProcessCluster {
  readonly redis: TestRedis;
  readonly nodes: TestNode[];
}

/**
 * For the enclosing describe block: a Redis of its own and nodes of one cluster in this process
 * (ids as given), started before its tests and closed after them.
 */
function useNodes(ids: string[], env: Record<string, string> = {}): () => InProcessCluster {
  let cluster: InProcessCluster | undefined;
  beforeAll(async () => {
    const redis = await TestRedis.start();
    const nodes = await Promise.all(
      ids.map((id) =>
        startTestNode({
          ...GENEROUS_LIMITS,
          REDIS_URL: redis.url,
          NODE_ID: id,
          NODE_TTL_MS: '1000',
          SESSION_RESUME_GRACE_MS: '5000',
          ...env,
        }),
      ),
    );
    cluster = { redis, nodes };
  }, 30_000);
  afterAll(async () => {
    await Promise.all((cluster?.nodes ?? []).map((t) => t.close()));
    await cluster?.redis.close();
  }, 30_000);
  return () => {
    if (!cluster) throw new Error('the nodes did not start');
    return cluster;
  };
}

describe('one room on three nodes', { timeout: 30_000 }, () => {
  const cluster = useNodes(['node-a', 'node-b', 'node-c']);
  let nodes: TestNode[] = [];
  let a: TestNode;
  let b: TestNode;
  let c: TestNode;
  let roomCounter = 0;
  const nextRoom = (name = 'room'): string => `${name}-${++roomCounter}`;

  beforeAll(() => {
    nodes = cluster().nodes;
    [a, b, c] = nodes as [TestNode, TestNode, TestNode];
  });

  it('every client on every node sees every durable event once, in the same order, gap-free', async () => {
    const roomId = nextRoom('fanout');
    const clients: JoinedRaw[] = [];
    for (const [i, t] of [a, b, c, a, b, c].entries()) {
      clients.push(await joinRaw(t, `user-${i}`, { roomId, role: i === 0 ? 'presenter' : 'trader' }));
    }
    const first = clients[0] as JoinedRaw;
    const last = clients.at(-1) as JoinedRaw;
    expect(last.join.participantCount).toBe(6);
    expect(last.join.participants.map((p) => p.userId).sort()).toEqual(range(0, 5).map((i) => `user-${i}`));
    expectJoinResult(last.join);
    for (const c of clients) expect(c.join.epoch).toBe(first.join.epoch);

    // Everyone talks at once, from every node.
    const sent = await Promise.all(
      clients.flatMap((c, i) => range(1, 5).map((k) => c.raw.request('chat.send', { text: `${i}:${k}` }))),
    );
    for (const response of sent) expect(response).toMatchObject({ ok: true });
    const lastSeq = Math.max(...sent.map((r) => dataOf(r).seq as number));
    for (const c of clients) await waitForSeq(c.raw, lastSeq);

    // The same frames, byte for byte and in the same order, on every node, from each one's join on.
    const reference = durable(last.raw).map((m) => JSON.stringify(m));
    expect(reference).toHaveLength(30);
    for (const c of clients) {
      const received = durable(c.raw);
      expect(consecutiveBreak(seqs(c.raw)), 'gap-free').toBeUndefined();
      expect(new Set(seqs(c.raw)).size, 'each once').toBe(received.length);
      const since = received.filter((m) => (m.seq as number) > last.join.lastSeq).map((m) => JSON.stringify(m));
      expect(since).toEqual(reference);
      expectWireValid(c.raw.messages);
    }
    // Each chat's seq is the one its sender was answered with.
    const bySeq = new Map(durable(first.raw).map((m) => [m.seq, dataOf(m).messageId]));
    for (const r of sent) expect(bySeq.get(dataOf(r).seq)).toBe(dataOf(r).messageId);
  });

  it('counts and presence agree on every node; /admin/rooms is cluster-wide', async () => {
    const roomId = nextRoom('presence');
    await joinRaw(a, 'p1', { roomId, role: 'presenter' });
    await joinRaw(b, 't1', { roomId });
    await joinRaw(b, 't2', { roomId });
    const late = await joinRaw(c, 'm1', { roomId, role: 'moderator' });
    expect(late.join.participantCount).toBe(4);

    for (const t of nodes) {
      const detail = await http(t, `/admin/rooms/${roomId}`, { headers: ADMIN });
      expect(detail.status).toBe(200);
      expect(detail.json).toMatchObject({
        roomId,
        participants: 4,
        participantsByRole: { presenter: 1, moderator: 1, trader: 2 },
        connected: 4,
        lastSeq: late.join.lastSeq,
        epoch: late.join.epoch,
        nodes: ['node-a', 'node-b', 'node-c'],
      });
      const list = (detail.json as { participantList: { userId: string; nodeId: string }[] }).participantList;
      expect(list.map((p) => `${p.userId}@${p.nodeId}`).sort()).toEqual([
        'm1@node-c',
        'p1@node-a',
        't1@node-b',
        't2@node-b',
      ]);
      const rooms = await http(t, '/admin/rooms', { headers: ADMIN });
      const room = (rooms.json as { rooms: Message[] }).rooms.find((r) => r.roomId === roomId);
      expect(room).toMatchObject({ participants: 4, connected: 4, lastSeq: late.join.lastSeq });
      expect([...(room?.nodes as string[])].sort()).toEqual(['node-a', 'node-b', 'node-c']);
    }
  });

  it('resumes on another node: missed events replayed, same participant, the old socket closed with 4009', async () => {
    const roomId = nextRoom('resume');
    const sender = await joinRaw(a, 'sender', { roomId, role: 'presenter' });
    const observer = await joinRaw(c, 'observer', { roomId });
    const mobile = await joinRaw(a, 'mobile', { roomId });
    const lastSeq = lastSeqOf(mobile.raw, mobile.join);
    const missed = [];
    for (let i = 0; i < 3; i++) missed.push(await sender.raw.request('chat.send', { text: `missed ${i}` }));
    await waitForSeq(observer.raw, lastSeq + 3);

    // The old socket is still open on node a; the session comes back on node b.
    const fresh = await b.raw(await b.token('mobile', { roomId }));
    const response = await fresh.request('room.join', {
      resume: { sessionId: mobile.join.sessionId, lastSeq, epoch: mobile.join.epoch },
    });
    expect(response).toMatchObject({ ok: true, data: { resumed: true, participantId: mobile.join.participantId } });
    expect((await mobile.raw.closed).code).toBe(4009);
    const replayed = fresh.messages.slice(0, fresh.messages.indexOf(response));
    expect(replayed.map((m) => m.seq)).toEqual(range(lastSeq + 1, lastSeq + 3));
    expect(replayed.map((m) => dataOf(m).messageId)).toEqual(missed.map((r) => dataOf(r).messageId));

    const live = await sender.raw.request('chat.send', { text: 'live' });
    await waitForSeq(fresh, dataOf(live).seq as number);
    expect(seqs(fresh)).toEqual(range(lastSeq + 1, lastSeq + 4));
    const detail = await http(c, `/admin/rooms/${roomId}`, { headers: ADMIN });
    const entry = (detail.json as { participantList: Message[] }).participantList.find((p) => p.userId === 'mobile');
    expect(entry).toMatchObject({ participantId: mobile.join.participantId, nodeId: 'node-b' });
    expect(a.node.rooms.summary(roomId)?.participantList.map((p) => p.userId)).toEqual(['sender']);
    // Nobody saw it leave or join again.
    expect(observer.raw.events('participant.left')).toEqual([]);
    const joined = observer.raw.events('participant.joined');
    expect(joined.map((m) => (dataOf(m).participant as Message).userId)).toEqual(['mobile']);
  });

  it('resumes on another node after the socket dropped, within the grace, without a leave', async () => {
    const roomId = nextRoom('drop');
    const sender = await joinRaw(b, 'sender', { roomId, role: 'presenter' });
    const laptop = await joinRaw(a, 'laptop', { roomId });
    const lastSeq = lastSeqOf(laptop.raw, laptop.join);
    laptop.raw.ws.close();
    await laptop.raw.closed;
    await eventually(() => a.node.rooms.summary(roomId)?.connected === 0, 5000, 'disconnect seen');
    const chat = await sender.raw.request('chat.send', { text: 'while away' });

    const back = await c.raw(await c.token('laptop', { roomId }));
    const response = await back.request('room.join', {
      resume: { sessionId: laptop.join.sessionId, lastSeq, epoch: laptop.join.epoch },
    });
    expect(response).toMatchObject({ ok: true, data: { resumed: true, participantId: laptop.join.participantId } });
    expect(back.events('chat.message').map((m) => dataOf(m).messageId)).toEqual([dataOf(chat).messageId]);
    // Handed over, not left: node a forgot it silently, and its grace timer is gone with it.
    expect(a.node.rooms.summary(roomId)?.participants ?? 0).toBe(0);
    expect(sender.raw.events('participant.left')).toEqual([]);
    expect((response.data as JoinResult).participantCount).toBe(2);
  });

  it('a resume naming another epoch joins afresh', async () => {
    const roomId = nextRoom('epoch');
    const first = await joinRaw(a, 'roamer', { roomId });
    first.raw.ws.close();
    await first.raw.closed;
    const again = await b.raw(await b.token('roamer', { roomId }));
    const response = await again.request('room.join', {
      resume: { sessionId: first.join.sessionId, lastSeq: first.join.lastSeq, epoch: 'an-epoch-long-gone' },
    });
    expect(response).toMatchObject({ ok: true, data: { resumed: false, epoch: first.join.epoch } });
    expect((response.data as JoinResult).participantId).not.toBe(first.join.participantId);
  });

  it('a fresh join of the same user on another node replaces the old session: 4009 there, one participant.left', async () => {
    const roomId = nextRoom('replace');
    const observer = await joinRaw(c, 'observer', { roomId, role: 'moderator' });
    const old = await joinRaw(a, 'twin', { roomId });
    const newer = await joinRaw(b, 'twin', { roomId });
    expect((await old.raw.closed).code).toBe(4009);
    expect(newer.join.resumed).toBe(false);
    expect(newer.join.participants.filter((p) => p.userId === 'twin')).toEqual([
      expect.objectContaining({ participantId: newer.join.participantId }),
    ]);
    expect(newer.join.participantCount).toBe(2);
    const left = await observer.raw.waitFor((m) => m.event === 'participant.left');
    expect(left.data).toEqual({ participantId: old.join.participantId, reason: 'replaced' });
    const chat = await newer.raw.request('chat.send', { text: 'the one and only' });
    await waitForSeq(observer.raw, dataOf(chat).seq as number);
    expect(observer.raw.events('participant.left')).toHaveLength(1);
    expect(a.node.rooms.summary(roomId)?.participants ?? 0).toBe(0);
  });

  it('kick, setRole and mute reach a participant on another node; a kicked user cannot rejoin anywhere', async () => {
    const roomId = nextRoom('moderation');
    const moderator = await joinRaw(a, 'mod', { roomId, role: 'moderator' });
    const observer = await joinRaw(c, 'observer', { roomId });
    const target = await joinRaw(b, 'target', { roomId });
    const victim = await joinRaw(b, 'victim', { roomId });

    // setRole: the target's own node applies it; everyone sees it; it takes effect there at once.
    const promoted = await moderator.raw.request('moderation.setRole', {
      participantId: target.join.participantId,
      role: 'presenter',
    });
    expect(promoted).toMatchObject({ ok: true });
    const updated = await observer.raw.waitFor((m) => m.event === 'participant.updated');
    expect(dataOf(updated).participant).toMatchObject({ participantId: target.join.participantId, role: 'presenter' });
    expect(await target.raw.request('alert.publish', { symbol: 'ES', action: 'buy' })).toMatchObject({ ok: true });

    // mute: answered by the target's node (no media here: a no-op that answers {}).
    expect(await moderator.raw.request('moderation.mute', { participantId: target.join.participantId })).toMatchObject({
      ok: true,
      data: {},
    });

    // kick: the victim's node tells it and closes it with 4003; everyone sees it go.
    expect(await moderator.raw.request('moderation.kick', { participantId: victim.join.participantId })).toMatchObject({
      ok: true,
    });
    expect((await victim.raw.closed).code).toBe(4003);
    expect(victim.raw.events('session.kicked')).toHaveLength(1);
    const left = await observer.raw.waitFor((m) => m.event === 'participant.left');
    expect(left.data).toEqual({ participantId: victim.join.participantId, reason: 'kicked' });
    for (const t of nodes) {
      const again = await t.raw(await t.token('victim', { roomId }));
      expect(await again.request('room.join')).toMatchObject({ ok: false, error: { code: 'FORBIDDEN' } });
    }

    // Nobody by that id: NOT_FOUND.
    for (const method of ['moderation.kick', 'moderation.mute'] as const) {
      expect(await moderator.raw.request(method, { participantId: 'nobody' })).toMatchObject({
        ok: false,
        error: { code: 'NOT_FOUND' },
      });
    }
  });

  it("passes the other node's NOT_FOUND through when presence names a participant that node does not hold", async () => {
    const roomId = nextRoom('stale');
    const moderator = await joinRaw(a, 'mod', { roomId, role: 'moderator' });
    await joinRaw(b, 'someone', { roomId });
    const prefix = a.node.config.redisKeyPrefix;
    const client = new Redis(cluster().redis.port, '127.0.0.1');
    try {
      const ghost = {
        participantId: 'ghost',
        userId: 'ghost',
        name: 'ghost',
        role: 'trader',
        joinedAt: 1,
        nodeId: 'node-b',
      };
      await client.hset(`${prefix}:{room:${roomId}}:presence`, 'ghost', JSON.stringify(ghost));
    } finally {
      client.disconnect();
    }
    for (const method of ['moderation.kick', 'moderation.mute'] as const) {
      const response = await moderator.raw.request(method, { participantId: 'ghost' });
      expect(response).toMatchObject({ ok: false, error: { code: 'NOT_FOUND' } });
    }
  });

  it('closing a room from the admin API reaches every node', async () => {
    const roomId = nextRoom('close');
    const members = [
      await joinRaw(a, 'x', { roomId }),
      await joinRaw(b, 'y', { roomId }),
      await joinRaw(c, 'z', { roomId }),
    ];
    const closed = await http(b, `/admin/rooms/${roomId}/close`, { method: 'POST', headers: ADMIN });
    expect(closed).toMatchObject({ status: 200, json: { closed: true } });
    for (const m of members) {
      expect((await m.raw.closed).code).toBe(4003);
      expect(m.raw.events('session.kicked')).toEqual([{ event: 'session.kicked', data: { reason: 'room closed' } }]);
    }
    for (const t of nodes) {
      await eventually(() => t.node.rooms.summary(roomId) === undefined, 5000, 'room gone');
      expect((await http(t, `/admin/rooms/${roomId}`, { headers: ADMIN })).status).toBe(404);
    }
    const again = await joinRaw(c, 'z', { roomId });
    expect(again.join.lastSeq).toBe(1);
    expect(again.join.participantCount).toBe(1);
  });
});

describe('a large room on two nodes', { timeout: 30_000 }, () => {
  const cluster = useNodes(['large-a', 'large-b'], {
    LARGE_ROOM_THRESHOLD: '3',
    PARTICIPANT_COUNT_INTERVAL_MS: '200',
    SESSION_RESUME_GRACE_MS: '0',
  });

  it('each node sends the cluster-wide participant.count to its own sockets, once per change', async () => {
    const [a, b] = cluster().nodes as [TestNode, TestNode];
    const roomId = 'large';
    const counts = (raw: RawSocket): number[] => raw.events('participant.count').map((m) => dataOf(m).count as number);
    const onA = [
      await joinRaw(a, 't0', { roomId }),
      await joinRaw(a, 't1', { roomId }),
      await joinRaw(a, 't2', { roomId }),
    ];
    // Above the threshold from here: traders' joins on node b are not events, node a learns the count.
    const onB = [await joinRaw(b, 't3', { roomId }), await joinRaw(b, 't4', { roomId })];
    expect((onB[1] as JoinedRaw).join.participantCount).toBe(5);
    for (const c of [...onA, ...onB])
      await c.raw.waitFor((m) => m.event === 'participant.count' && dataOf(m).count === 5);

    const stay = [...onA, onB[0] as JoinedRaw];
    const before = stay.map((c) => counts(c.raw).length);
    (onB[1] as JoinedRaw).raw.ws.close();
    for (const [i, c] of stay.entries()) {
      await eventually(() => counts(c.raw).slice(before[i]).includes(4), 5000, 'the count after the leave');
    }
    for (const c of stay) {
      const seen = counts(c.raw);
      // Only changes (one node's count, not one per node), ending with the exact count.
      for (let i = 1; i < seen.length; i++) expect(seen[i], JSON.stringify(seen)).not.toBe(seen[i - 1]);
      expect(seen.at(-1)).toBe(4);
    }
    // The traders above the threshold never became durable events.
    expect(durable((onA[0] as JoinedRaw).raw, 'participant.joined')).toHaveLength(2);
  });
});

describe('Redis restarted empty while chat flows', { timeout: 60_000 }, () => {
  const cluster = useNodes(['restart-a', 'restart-b']);

  it('clients get room.resync and continue under the new epoch without reconnecting; no seq reused', async () => {
    const { redis, nodes } = cluster();
    const [a, b] = nodes as [TestNode, TestNode];
    const roomId = 'restart';
    const alice = await joinRecording(a, 'alice', { roomId, role: 'presenter' });
    const states: string[] = [];
    const resyncs: unknown[] = [];
    alice.client.on('state', (s) => states.push(s));
    alice.client.on('resync', (_join, cause) => resyncs.push(cause));
    const bob = await joinRaw(b, 'bob', { roomId });
    const carol = await joinRaw(a, 'carol', { roomId });
    const oldEpoch = alice.join.epoch;

    // Chat flows from both nodes the whole time; answers are kept.
    const answers: { ok: boolean; code?: string; messageId?: string }[] = [];
    let flowing = true;
    const flow = (async () => {
      for (let i = 0; flowing; i++) {
        const response = await (i % 2 ? bob.raw : carol.raw).request('chat.send', { text: `tick ${i}` });
        const error = response.error as Message | undefined;
        answers.push({
          ok: response.ok === true,
          code: error?.code as string,
          messageId: dataOf(response)?.messageId as string,
        });
        await new Promise((r) => setTimeout(r, 20));
      }
    })();

    await eventually(() => answers.filter((x) => x.ok).length >= 5, 5000, 'chat before');
    await redis.stop();
    await eventually(() => answers.some((x) => x.code === 'UNAVAILABLE'), 10_000, 'UNAVAILABLE while Redis is down');
    for (const t of nodes) expect((await http(t, '/health/live')).status).toBe(200);
    const refusedAt = answers.length;
    await redis.resume(); // empty: no persistence
    await eventually(() => answers.slice(refusedAt).filter((x) => x.ok).length >= 5, 20_000, 'chat after');
    flowing = false;
    await flow;
    for (const t of nodes) expect((await http(t, '/health/live')).status).toBe(200);

    // Every client was told, and is on the new epoch.
    for (const raw of [bob.raw, carol.raw]) {
      const resync = await raw.waitFor((m) => m.event === 'room.resync', 10_000);
      expect(dataOf(resync).epoch).not.toBe(oldEpoch);
    }
    const newEpoch = dataOf(bob.raw.events('room.resync')[0] as Message).epoch as string;
    await eventually(() => resyncs.length > 0, 5000, 'the SDK resync');
    expect(resyncs[0]).toMatchObject({ reason: 'epoch-changed', epoch: newEpoch });
    expect(alice.client.epoch).toBe(newEpoch);

    // Every chat answered after the restart reaches every client, under the new numbering.
    const sentAfter = answers
      .slice(refusedAt)
      .filter((x) => x.ok)
      .map((x) => x.messageId);
    const lastChat = await carol.raw.request('chat.send', { text: 'last' });
    const lastSeq = dataOf(lastChat).seq as number;
    for (const raw of [bob.raw, carol.raw])
      await raw.waitFor((m) => m.seq === lastSeq && m.event === 'chat.message', 10_000);
    // Presence written back after the restart may still add participant.joined events after it.
    await eventually(() => alice.client.lastSeq >= lastSeq, 10_000, 'the SDK caught up');
    const epochsOf = (messages: Message[]): Message[][] => {
      const segments: Message[][] = [[]];
      for (const m of messages) {
        if (m.event === 'room.resync') segments.push([]);
        else if (typeof m.seq === 'number') segments.at(-1)?.push(m);
      }
      return segments;
    };
    const segmentsOf = [bob.raw.messages, carol.raw.messages, alice.notifications as unknown as Message[]].map(
      epochsOf,
    );
    for (const segments of segmentsOf) {
      expect(segments).toHaveLength(2);
      for (const segment of segments) {
        expect(consecutiveBreak(segment.map((m) => m.seq as number)), 'no gap, no seq twice').toBeUndefined();
      }
      const chats = (segments[1] as Message[])
        .filter((m) => m.event === 'chat.message')
        .map((m) => dataOf(m).messageId);
      for (const id of sentAfter) expect(chats).toContain(id);
    }
    // Within the new epoch each seq is one event, the same on every client.
    const reference = new Map((segmentsOf[0]?.[1] ?? []).map((m) => [m.seq, JSON.stringify(m)]));
    for (const segments of segmentsOf.slice(1)) {
      for (const m of segments[1] as Message[]) {
        if (reference.has(m.seq)) expect(JSON.stringify(m)).toBe(reference.get(m.seq));
      }
    }

    // No reconnect: the raw sockets stayed open, the SDK stayed joined.
    for (const raw of [bob.raw, carol.raw]) expect(raw.ws.readyState).toBe(raw.ws.OPEN);
    expect(states).toEqual([]);
    // Presence was written back: a newcomer sees everyone, under the new epoch.
    const dave = await joinRaw(b, 'dave', { roomId });
    expect(dave.join.epoch).toBe(newEpoch);
    expect(dave.join.participants.map((p) => p.userId).sort()).toEqual(['alice', 'bob', 'carol', 'dave']);
  });
});

describe('a node killed with -9', { timeout: 60_000 }, () => {
  const NODE_TTL_MS = 1500;
  const GRACE_MS = 2000;
  const cluster = useCluster({
    nodes: 3,
    nodeTtlMs: NODE_TTL_MS,
    env: { ...GENEROUS_LIMITS, SESSION_RESUME_GRACE_MS: String(GRACE_MS) },
  });

  async function joinOn(index: number, userId: string, roomId: string): Promise<JoinedRaw> {
    const raw = await cluster().raw(index, await cluster().token(userId, { roomId }));
    const response = await raw.request('room.join');
    expect(response).toMatchObject({ ok: true });
    return { raw, join: response.data as JoinResult };
  }

  it('a survivor reports its participants left after NODE_TTL_MS + grace; one that reconnects resumes', async () => {
    const roomId = 'crash';
    const observer = await joinOn(0, 'observer', roomId);
    const doomed = [await joinOn(2, 'doomed-1', roomId), await joinOn(2, 'doomed-2', roomId)];
    const mover = await cluster().joined('mover', { node: 2, roomId });
    const resyncs: unknown[] = [];
    mover.client.on('resync', (_join, cause) => resyncs.push(cause));
    await observer.raw.waitFor(
      (m) => m.event === 'participant.joined' && (dataOf(m).participant as Message).userId === 'mover',
    );

    const killedAt = Date.now();
    await cluster().kill(2);
    // The SDK client comes back through the balancer on another node and resumes there.
    await eventually(() => mover.client.state === 'joined' && mover.client.joined !== mover.join, 10_000, 'the resume');
    expect(mover.client.joined).toMatchObject({ resumed: true, participantId: mover.join.participantId });

    const doomedIds = doomed.map((d) => d.join.participantId).sort();
    await eventually(
      () => observer.raw.events('participant.left').length >= doomedIds.length,
      NODE_TTL_MS + GRACE_MS + 10_000,
      'the survivor reaping the dead node',
    );
    const elapsedMs = Date.now() - killedAt;
    expect(elapsedMs, 'not before the grace').toBeGreaterThanOrEqual(GRACE_MS);
    const chat = await observer.raw.request('chat.send', { text: 'after the crash' });
    await waitForSeq(observer.raw, dataOf(chat).seq as number);
    await eventually(() => mover.client.lastSeq === dataOf(chat).seq, 5000, 'the chat at the mover');
    const left = observer.raw.events('participant.left');
    expect(left.map((m) => dataOf(m).participantId).sort()).toEqual(doomedIds);
    for (const m of left) expect(dataOf(m).reason).toBe('disconnected');
    expect(resyncs).toEqual([]);
  });
});
