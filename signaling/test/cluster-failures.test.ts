/**
 * Node processes on one real Redis when things go wrong. Moderation reaches a participant on
 * another node (kick with 4003 and a ban every node enforces, mute of its media, setRole), a
 * second session of a user on another node replaces the first with 4009, and a node killed with
 * -9 has its participants that do not come back reported left by a survivor within
 * NODE_TTL_MS + SESSION_RESUME_GRACE_MS while those that reconnect resume. Redis killed and
 * restarted empty, then frozen for 5 s, while chat flows between nodes: no node crashes or
 * fails its liveness, no client reconnects, chat crosses nodes again, and the clients either
 * follow a new epoch (restart) or lose nothing at all (freeze).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { eventually, sleep } from '../../test-support/async.js';
import type { ChildNode } from '../../test-support/child-node.js';
import {
  clientLogMismatch,
  durableSegments,
  logMismatch,
  repeatedOnWire,
  useCluster,
  type RecordedClient,
} from '../../test-support/cluster.js';
import type { RawSocket } from '../../test-support/harness.js';
import { MEDIA_ENV, produceOpus } from '../../test-support/media-flow.js';
import { GENEROUS_LIMITS, range } from '../../test-support/room-helpers.js';
import { consecutiveBreak } from '../../test-support/sockets.js';
import type { RequestError } from '../client/index.js';
import type { EventData, EventName } from '../src/protocol/index.js';

const NODE_TTL_MS = 1500;
const SESSION_RESUME_GRACE_MS = 2000;
/**
 * Time a survivor may take beyond NODE_TTL_MS + SESSION_RESUME_GRACE_MS: the dead node's last
 * heartbeat, the survivor's next sweep (each NODE_TTL_MS / 3) and the publish, on a busy machine.
 */
const REAP_MARGIN_MS = 1500;

/** Waits until a client's application got an `event` whose data matches. */
async function waitForEvent<E extends EventName>(
  c: RecordedClient,
  event: E,
  match: (data: EventData<E>) => boolean = () => true,
  timeoutMs = 5000,
): Promise<EventData<E>> {
  let found: EventData<E> | undefined;
  await eventually(
    () => {
      const hit = c.received.find((r) => r.notification.event === event && match(r.notification.data as EventData<E>));
      found = hit?.notification.data as EventData<E> | undefined;
      return hit !== undefined;
    },
    timeoutMs,
    `${c.userId} to get ${event}`,
  );
  return found as EventData<E>;
}

function eventsOf<E extends EventName>(c: RecordedClient, event: E): EventData<E>[] {
  return c.received.filter((r) => r.notification.event === event).map((r) => r.notification.data as EventData<E>);
}

/** Every node's `/health/live`, polled every 100 ms until stopped: when all answered 200, and what did not. */
function pollLiveness(nodes: readonly ChildNode[]): {
  /** When each round in which every node answered 200 ended. */
  readonly passed: number[];
  stop(): Promise<{ passed: number[]; failures: string[] }>;
} {
  let polling = true;
  const passed: number[] = [];
  const failures: string[] = [];
  const loop = (async () => {
    while (polling) {
      const failed = failures.length;
      await Promise.all(
        nodes.map(async (node, i) => {
          try {
            const response = await fetch(`${node.httpUrl}/health/live`, { signal: AbortSignal.timeout(2000) });
            await response.arrayBuffer();
            if (response.status !== 200) failures.push(`node-${i + 1}: ${response.status}`);
          } catch (error) {
            failures.push(`node-${i + 1}: ${String(error)}`);
          }
        }),
      );
      if (failures.length === failed) passed.push(Date.now());
      await sleep(100);
    }
  })();
  return {
    passed,
    stop: async () => {
      polling = false;
      await loop;
      return { passed, failures };
    },
  };
}

/** One `chat.send` and how it was answered. */
interface ChatAnswer {
  readonly from: string;
  readonly sentAt: number;
  readonly at: number;
  readonly messageId?: string;
  readonly seq?: number;
  readonly code?: string;
  readonly retryAfterMs?: number;
}

/** Each sender chats in a loop (one request at a time, 30 ms apart) until stopped. */
function chatFlow(senders: readonly RecordedClient[]): { readonly answers: ChatAnswer[]; stop(): Promise<void> } {
  const answers: ChatAnswer[] = [];
  let flowing = true;
  const loops = senders.map(async (sender) => {
    for (let i = 0; flowing; i++) {
      const sentAt = Date.now();
      try {
        const { messageId, seq } = await sender.client.request('chat.send', { text: `${sender.userId} ${i}` });
        answers.push({ from: sender.userId, sentAt, at: Date.now(), messageId, seq });
      } catch (error) {
        const { code, retryAfterMs } = error as RequestError;
        answers.push({ from: sender.userId, sentAt, at: Date.now(), code, ...(retryAfterMs ? { retryAfterMs } : {}) });
      }
      await sleep(30);
    }
  });
  return {
    answers,
    stop: async () => {
      flowing = false;
      await Promise.all(loops);
    },
  };
}

/** How many of `from`'s chats sent after `since` were accepted. */
function okSince(answers: readonly ChatAnswer[], from: string, since: number): number {
  return answers.filter((a) => a.from === from && a.sentAt > since && a.messageId !== undefined).length;
}

function messageIdsOf(c: RecordedClient): Set<string> {
  return new Set(eventsOf(c, 'chat.message').map((d) => d.messageId));
}

describe('moderation and a crash across three node processes', { timeout: 60_000 }, () => {
  const cluster = useCluster({
    nodes: 3,
    nodeTtlMs: NODE_TTL_MS,
    env: {
      ...MEDIA_ENV,
      MEDIASOUP_NUM_WORKERS: '1',
      SESSION_RESUME_GRACE_MS: String(SESSION_RESUME_GRACE_MS),
    },
  });

  /** A raw socket straight to node `index`, joined to `roomId`. */
  async function joinRaw(
    index: number,
    userId: string,
    roomId: string,
  ): Promise<{ raw: RawSocket; participantId: string }> {
    const raw = await cluster().raw(index, await cluster().token(userId, { roomId }));
    const response = await raw.request('room.join', {});
    expect(response, `join of ${userId}`).toMatchObject({ ok: true });
    return { raw, participantId: (response.data as { participantId: string }).participantId };
  }

  it('kick, mute and setRole reach a participant on another node; the kicked user cannot rejoin through a third', async () => {
    const roomId = 'moderation';
    const moderator = await cluster().recorded('moderator', { node: 0, roomId, role: 'moderator' });
    const speaker = await cluster().recorded('speaker', { node: 1, roomId, role: 'presenter' });
    const victim = await cluster().recorded('victim', { node: 1, roomId });
    const riser = await cluster().recorded('riser', { node: 2, roomId });
    const observer = await cluster().recorded('observer', { node: 2, roomId });
    expect(observer.join.participantCount).toBe(5);

    // mute: the speaker's producer lives on node-2; the moderator's node-1 has it paused there.
    const transport = await speaker.client.request('sfu.createPlainTransport', { direction: 'send', comedia: true });
    const { producerId } = await produceOpus(speaker, transport.transportId, 0x1234);
    await waitForEvent(observer, 'producer.added', (d) => d.producerId === producerId);
    expect(await moderator.client.request('moderation.mute', { participantId: speaker.join.participantId })).toEqual(
      {},
    );
    for (const c of [moderator, speaker, observer]) {
      await waitForEvent(c, 'producer.paused', (d) => d.producerId === producerId);
    }

    // setRole: the trader on node-3 becomes a presenter, and may publish alerts at once.
    await expect(riser.client.request('alert.publish', { symbol: 'ES', action: 'buy' })).rejects.toMatchObject({
      code: 'FORBIDDEN',
    });
    expect(
      await moderator.client.request('moderation.setRole', {
        participantId: riser.join.participantId,
        role: 'presenter',
      }),
    ).toEqual({});
    for (const c of [riser, observer, speaker]) {
      await waitForEvent(
        c,
        'participant.updated',
        (d) => d.participant.participantId === riser.join.participantId && d.participant.role === 'presenter',
      );
    }
    const alert = await riser.client.request('alert.publish', { symbol: 'ES', action: 'buy' });
    await waitForEvent(moderator, 'alert.published', (d) => d.alertId === alert.alertId);

    // kick: node-2 tells the victim and closes it with 4003; everyone sees it go.
    expect(await moderator.client.request('moderation.kick', { participantId: victim.join.participantId })).toEqual({});
    expect((await victim.closed).code).toBe(4003);
    expect(eventsOf(victim, 'session.kicked')).toHaveLength(1);
    for (const c of [moderator, observer, speaker]) {
      const left = await waitForEvent(c, 'participant.left', (d) => d.participantId === victim.join.participantId);
      expect(left.reason).toBe('kicked');
    }
    // Barred on every node: through node-3 (neither the kicker's nor its own) and node-1.
    for (const node of [2, 0]) {
      const raw = await cluster().raw(node, await cluster().token('victim', { roomId }));
      expect(await raw.request('room.join', {}), `rejoin through node-${node + 1}`).toMatchObject({
        ok: false,
        error: { code: 'FORBIDDEN' },
      });
    }
    const presence = await cluster().presence(roomId);
    expect([...presence.values()].map((p) => p.userId).sort()).toEqual(['moderator', 'observer', 'riser', 'speaker']);
  });

  it('a join of the same user on another node replaces the session there with 4009, one participant.left', async () => {
    const roomId = 'replace';
    const observer = await cluster().recorded('observer', { node: 2, roomId });
    const old = await cluster().recorded('twin', { node: 0, roomId });
    const newer = await cluster().recorded('twin', { node: 1, roomId });
    expect((await old.closed).code).toBe(4009);
    expect(newer.join.resumed).toBe(false);
    expect(newer.join.participants.filter((p) => p.userId === 'twin').map((p) => p.participantId)).toEqual([
      newer.join.participantId,
    ]);
    expect(newer.join.participantCount).toBe(2);
    const left = await waitForEvent(observer, 'participant.left', (d) => d.participantId === old.join.participantId);
    expect(left.reason).toBe('replaced');

    const chat = await newer.client.request('chat.send', { text: 'the one and only' });
    await eventually(() => observer.client.lastSeq >= chat.seq, 5000, 'the chat at the observer');
    expect(eventsOf(observer, 'participant.left')).toHaveLength(1);
    const presence = [...(await cluster().presence(roomId)).values()];
    expect(presence.map((p) => `${p.userId}@${p.nodeId}`).sort()).toEqual(['observer@node-3', 'twin@node-2']);
  });

  it('kill -9 of a node: who does not come back is reported left by a survivor in time; who does resumes, nothing lost', async () => {
    const roomId = 'crash';
    const observer = await cluster().recorded('observer', { node: 0, roomId });
    const presenter = await cluster().recorded('presenter', { node: 1, roomId, role: 'presenter' });
    const doomed = [];
    for (const i of range(1, 3)) doomed.push(await joinRaw(2, `doomed-${i}`, roomId));
    const movers: RecordedClient[] = [];
    for (const i of range(1, 3)) movers.push(await cluster().recorded(`mover-${i}`, { node: 2, roomId }));
    await eventually(() => observer.client.lastSeq >= (movers.at(-1)?.join.lastSeq ?? 0), 5000, 'the joins');
    const flow = chatFlow([presenter]);
    await eventually(() => okSince(flow.answers, 'presenter', 0) >= 3, 5000, 'chat before the crash');

    const killedAt = Date.now();
    await cluster().kill(2);
    // Through the load balancer, the SDK clients come back on node-1 or node-2 and resume there.
    const resumed = (c: RecordedClient): boolean => c.client.state === 'joined' && c.client.joined !== c.join;
    await eventually(() => movers.every(resumed), 10_000, 'the movers to resume');
    for (const m of movers) {
      expect(m.client.joined, m.userId).toMatchObject({ resumed: true, participantId: m.join.participantId });
    }

    const doomedIds = doomed.map((d) => d.participantId);
    const leftIds = (): string[] => eventsOf(observer, 'participant.left').map((d) => d.participantId);
    await eventually(
      () => doomedIds.every((id) => leftIds().includes(id)),
      NODE_TTL_MS + SESSION_RESUME_GRACE_MS + 10_000,
      'a survivor to report the dead node’s participants left',
    );
    const reportedAfterMs = Date.now() - killedAt;
    console.log(
      `kill -9: its participants reported left ${reportedAfterMs} ms after the kill ` +
        `(NODE_TTL_MS ${NODE_TTL_MS} + grace ${SESSION_RESUME_GRACE_MS} + margin ${REAP_MARGIN_MS})`,
    );
    expect(reportedAfterMs, 'reported within NODE_TTL_MS + grace').toBeLessThanOrEqual(
      NODE_TTL_MS + SESSION_RESUME_GRACE_MS + REAP_MARGIN_MS,
    );
    expect(reportedAfterMs, 'not before the resume grace').toBeGreaterThanOrEqual(SESSION_RESUME_GRACE_MS);
    await flow.stop();

    const marker = await presenter.client.request('chat.send', { text: 'after the crash' });
    const everyone = [observer, presenter, ...movers];
    for (const c of everyone) await eventually(() => c.client.lastSeq >= marker.seq, 5000, `${c.userId} caught up`);
    const log = await cluster().roomLog(roomId);
    for (const c of everyone) {
      expect(clientLogMismatch(c, log), `${c.userId} against the log`).toBeUndefined();
      expect(repeatedOnWire(c.frames), c.userId).toEqual([]);
      expect(c.resyncs, c.userId).toEqual([]);
    }
    const sentIds = flow.answers.flatMap((a) => (a.messageId ? [a.messageId] : []));
    for (const m of movers)
      for (const id of sentIds) expect(messageIdsOf(m).has(id), `${m.userId} got ${id}`).toBe(true);
    expect(flow.answers.filter((a) => a.code !== undefined)).toEqual([]);

    // Each participant of the dead node left once, as disconnected; the movers never left.
    const left = log
      .filter((e) => e.event === 'participant.left')
      .map((e) => (JSON.parse(e.frame) as { data: EventData<'participant.left'> }).data);
    expect(left.map((d) => d.participantId).sort()).toEqual([...doomedIds].sort());
    for (const d of left) expect(d.reason).toBe('disconnected');
    const presence = [...(await cluster().presence(roomId)).values()];
    expect(presence.map((p) => p.userId).sort()).toEqual(['mover-1', 'mover-2', 'mover-3', 'observer', 'presenter']);
    expect(presence.filter((p) => p.nodeId === 'node-3')).toEqual([]);
  });
});

describe('Redis failing under chat between two node processes', { timeout: 90_000 }, () => {
  const cluster = useCluster({
    nodes: 2,
    nodeTtlMs: NODE_TTL_MS,
    env: { ...GENEROUS_LIMITS, SESSION_RESUME_GRACE_MS: String(SESSION_RESUME_GRACE_MS) },
  });
  let redisPaused = false;
  afterAll(() => {
    if (redisPaused) cluster().redis.unpause();
  });

  /** Four SDK clients of `roomId`, two per node; the second and third chat. */
  async function roomOfFour(roomId: string): Promise<RecordedClient[]> {
    const clients: RecordedClient[] = [];
    for (const [i, node] of [0, 1, 0, 1].entries()) {
      clients.push(
        await cluster().recorded(`${roomId}-${i}`, { node, roomId, role: i === 0 ? 'presenter' : 'trader' }),
      );
    }
    const last = clients.at(-1) as RecordedClient;
    for (const c of clients) await eventually(() => c.client.lastSeq >= last.join.lastSeq, 5000, 'the joins');
    return clients;
  }

  /** Waits until every node's `/health` reports its bus `degraded`, and its liveness still passed after that. */
  async function waitForDegraded(liveness: ReturnType<typeof pollLiveness>): Promise<void> {
    for (const [i, node] of cluster().nodes.entries()) {
      await eventually(
        async () => ((await node.health()).bus as { state?: string } | undefined)?.state === 'degraded',
        10_000,
        `node-${i + 1} to report degraded`,
      );
    }
    const seenAt = Date.now();
    await eventually(() => liveness.passed.some((at) => at > seenAt), 5000, 'liveness while degraded');
  }

  /** No node crashed or failed its liveness; every refusal was UNAVAILABLE with a retry hint. */
  function expectHealthy(liveness: { failures: string[] }, answers: readonly ChatAnswer[]): void {
    expect(liveness.failures, '/health/live').toEqual([]);
    for (const node of cluster().nodes) {
      expect(node.alive).toBe(true);
      expect(node.crashLines()).toEqual([]);
    }
    for (const a of answers.filter((a) => a.code !== undefined)) {
      expect(a).toMatchObject({ code: 'UNAVAILABLE', retryAfterMs: expect.any(Number) });
    }
  }

  it('restarted empty: no crash, live throughout, chat crosses nodes again without reconnects under a new epoch', async () => {
    const roomId = 'restart';
    const clients = await roomOfFour(roomId);
    const [, onB, onA] = clients as [RecordedClient, RecordedClient, RecordedClient, RecordedClient];
    const oldEpoch = onA.join.epoch;
    const liveness = pollLiveness(cluster().nodes);
    const flow = chatFlow([onA, onB]);
    await eventually(() => okSince(flow.answers, onA.userId, 0) >= 3 && okSince(flow.answers, onB.userId, 0) >= 3);

    const stoppedAt = Date.now();
    await cluster().redis.stop();
    await waitForDegraded(liveness);
    // Both nodes refuse durable events rather than number them without Redis.
    for (const sender of [onA, onB]) {
      await eventually(
        () => flow.answers.some((a) => a.from === sender.userId && a.sentAt > stoppedAt && a.code === 'UNAVAILABLE'),
        10_000,
        `${sender.userId}'s node to refuse chat while Redis is down`,
      );
    }
    const restartedAt = Date.now();
    await cluster().redis.resume(); // empty: no persistence
    for (const sender of [onA, onB]) {
      await eventually(
        () => okSince(flow.answers, sender.userId, restartedAt) >= 3,
        20_000,
        `${sender.userId}'s chat accepted again`,
      );
    }
    await flow.stop();
    const newEpoch = await cluster().roomEpoch(roomId);
    expect(newEpoch).toBeDefined();
    expect(newEpoch).not.toBe(oldEpoch);
    const marker = await onB.client.request('chat.send', { text: 'the last word' });
    for (const c of clients) {
      await eventually(
        () => c.client.epoch === newEpoch && c.client.lastSeq >= marker.seq,
        10_000,
        `${c.userId} on the new epoch`,
      );
    }
    expectHealthy(await liveness.stop(), flow.answers);

    const log = await cluster().roomLog(roomId);
    const framesBySeq = new Map<string, string>(); // `${epoch}/${seq}` → frame, over every client
    const acceptedAfter = flow.answers.filter((a) => a.sentAt > restartedAt && a.messageId).map((a) => a.messageId);
    expect(acceptedAfter.length).toBeGreaterThanOrEqual(6);
    for (const c of clients) {
      expect(c.states, `${c.userId} never reconnected`).toEqual([]);
      expect(c.resyncs.length, `${c.userId} resynced`).toBeGreaterThan(0);
      expect(c.resyncs.at(-1)).toMatchObject({ reason: 'epoch-changed', epoch: newEpoch });
      expect(repeatedOnWire(c.frames), c.userId).toEqual([]);
      const segments = durableSegments(c.received);
      for (const [i, segment] of segments.entries()) {
        const epoch = segment.resync?.epoch ?? oldEpoch;
        if (i > 0)
          expect(epoch, 'each resync names another epoch').not.toBe(segments[i - 1]?.resync?.epoch ?? oldEpoch);
        // Within an epoch: strictly one after another, and each seq one event on every client.
        expect(consecutiveBreak(segment.events.map((e) => e.seq as number)), `${c.userId} in ${epoch}`).toBeUndefined();
        for (const e of segment.events) {
          const key = `${epoch}/${e.seq}`;
          expect(framesBySeq.get(key) ?? e.frame, `${key} is one event`).toBe(e.frame);
          framesBySeq.set(key, e.frame);
        }
      }
      // The new epoch's events are the log's, and every chat accepted after the restart is there.
      const current = segments.at(-1);
      expect(current?.resync?.epoch).toBe(newEpoch);
      expect(logMismatch(current?.events ?? [], log, current?.resync?.lastSeq ?? 0), c.userId).toBeUndefined();
      const got = messageIdsOf(c);
      for (const id of acceptedAfter) expect(got.has(id as string), `${c.userId} got ${id}`).toBe(true);
    }
  });

  it('frozen for 5 s: no crash, live throughout, no reconnect, no resync, nothing lost', async () => {
    const roomId = 'freeze';
    const clients = await roomOfFour(roomId);
    const [, onB, onA] = clients as [RecordedClient, RecordedClient, RecordedClient, RecordedClient];
    const epoch = onA.join.epoch;
    const liveness = pollLiveness(cluster().nodes);
    const flow = chatFlow([onA, onB]);
    await eventually(() => okSince(flow.answers, onA.userId, 0) >= 3 && okSince(flow.answers, onB.userId, 0) >= 3);

    const pausedAt = Date.now();
    cluster().redis.pause();
    redisPaused = true;
    await waitForDegraded(liveness);
    await sleep(Math.max(0, pausedAt + 5000 - Date.now())); // the rest of the 5 s freeze
    const unpausedAt = Date.now();
    cluster().redis.unpause();
    redisPaused = false;
    for (const sender of [onA, onB]) {
      await eventually(
        () => okSince(flow.answers, sender.userId, unpausedAt) >= 3,
        15_000,
        `${sender.userId}'s chat accepted again`,
      );
    }
    await flow.stop();
    const marker = await onA.client.request('chat.send', { text: 'the last word' });
    for (const c of clients) await eventually(() => c.client.lastSeq >= marker.seq, 10_000, `${c.userId} caught up`);
    expectHealthy(await liveness.stop(), flow.answers);

    expect(await cluster().roomEpoch(roomId)).toBe(epoch);
    const log = await cluster().roomLog(roomId);
    expect(log.at(-1)?.seq).toBe(marker.seq);
    const accepted = flow.answers.flatMap((a) => (a.messageId ? [a.messageId] : []));
    for (const c of clients) {
      expect(c.states, `${c.userId} never reconnected`).toEqual([]);
      expect(c.resyncs, `${c.userId} never resynced`).toEqual([]);
      expect(eventsOf(c, 'room.resync')).toEqual([]);
      expect(clientLogMismatch(c, log), `${c.userId} against the log`).toBeUndefined();
      expect(repeatedOnWire(c.frames), c.userId).toEqual([]);
      const got = messageIdsOf(c);
      for (const id of accepted) expect(got.has(id), `${c.userId} got ${id}`).toBe(true);
    }
    // Nobody left or joined meanwhile: the freeze outlasted NODE_TTL_MS, yet no node was taken for dead.
    expect(
      log.filter((e) => e.seq > (clients.at(-1)?.join.lastSeq ?? 0) && e.event.startsWith('participant.')),
    ).toEqual([]);
  });
});
