/**
 * `room.history` end to end, on one node and on two nodes sharing a real Redis: a trader who
 * joins late gets the newest chat and alerts with one call, pages back to the oldest retained
 * event, never sees a presence event, and gets exactly the frames earlier participants got.
 * Retention and a Redis restarted empty show in `truncated` and `epoch`; the method's own rate
 * limit and the bound on `limit` hold; the SDK pages and merges history with live events.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from '../../test-support/async.js';
import { startTestNode, type RawSocket, type TestNode } from '../../test-support/harness.js';
import { TestRedis } from '../../test-support/redis.js';
import {
  GENEROUS_LIMITS,
  durable,
  http,
  joinRaw,
  parsePrometheus,
  sampleValue,
  type Message,
} from '../../test-support/room-helpers.js';
import { RoomTimeline, type HistoryPage, type Notification } from '../client/index.js';

const HISTORY_EVENTS = new Set(['chat.message', 'alert.published']);

interface Nodes {
  readonly redis: TestRedis | undefined;
  /** Where the earlier participants are, and where the late joiner joins (the same node alone). */
  readonly first: TestNode;
  readonly second: TestNode;
}

/** For the enclosing describe block: one node alone, or two nodes on a Redis of their own. */
function useNodes(shared: boolean, env: Record<string, string> = {}): () => Nodes {
  let nodes: Nodes | undefined;
  beforeAll(async () => {
    const redis = shared ? await TestRedis.start() : undefined;
    const start = (id: string): Promise<TestNode> =>
      startTestNode({ ...GENEROUS_LIMITS, NODE_ID: id, ...(redis ? { REDIS_URL: redis.url } : {}), ...env });
    const first = await start('history-a');
    nodes = { redis, first, second: redis ? await start('history-b') : first };
  }, 30_000);
  afterAll(async () => {
    await nodes?.first.close();
    if (nodes && nodes.second !== nodes.first) await nodes.second.close();
    await nodes?.redis?.close();
  }, 30_000);
  return () => {
    if (!nodes) throw new Error('the nodes did not start');
    return nodes;
  };
}

/** Sends a request that must succeed; its `data`. */
async function ok(raw: RawSocket, method: string, data: unknown = {}): Promise<Message> {
  const response = await raw.request(method, data);
  expect(response, method).toMatchObject({ ok: true });
  return response.data as Message;
}

/** Every page of the history `data` asks for, newest page first (follows `nextBeforeSeq`). */
async function allPages(raw: RawSocket, data: Record<string, unknown>): Promise<Message[]> {
  const pages: Message[] = [];
  let request = data;
  for (;;) {
    const page = await ok(raw, 'room.history', request);
    pages.push(page);
    if (!page.hasMore) return pages;
    request = { ...data, beforeSeq: page.nextBeforeSeq };
  }
}

function eventsOf(pages: readonly Message[]): Message[] {
  return [...pages].reverse().flatMap((page) => page.events as Message[]);
}

describe.each([
  ['one node', false],
  ['two nodes on a real Redis', true],
])('room history: %s', { timeout: 60_000 }, (_name, shared) => {
  const nodes = useNodes(shared);

  it('serves a late joiner the newest chat and alerts, pages back to the oldest, exactly as delivered', async () => {
    const { first, second } = nodes();
    const roomId = 'catch-up';
    const alice = await joinRaw(first, 'alice', { roomId, role: 'presenter' });
    const bob = await joinRaw(second, 'bob', { roomId });
    let alerts = 0;
    for (let chats = 0; chats < 150; chats++) {
      await ok(chats % 2 ? bob.raw : alice.raw, 'chat.send', { text: `chat ${chats}` });
      if (chats % 30 === 15) await joinRaw(first, `guest-${chats}`, { roomId }); // presence in the log
      if (chats % 7 === 6 && alerts < 20) {
        await ok(alice.raw, 'alert.publish', { symbol: 'BTC', action: 'buy', note: `alert ${alerts++}` });
      }
    }
    while (alerts < 20) await ok(alice.raw, 'alert.publish', { symbol: 'ETH', action: 'sell', note: `${alerts++}` });
    const last = await ok(alice.raw, 'chat.send', { text: 'last' });
    await bob.raw.waitFor((m) => m.seq === last.seq, 10_000);
    // What the earlier participant received live: presence events among them.
    const delivered = durable(bob.raw);
    expect(delivered.some((m) => m.event === 'participant.joined')).toBe(true);
    const wanted = delivered.filter((m) => HISTORY_EVENTS.has(m.event as string));
    expect(wanted).toHaveLength(171);

    const carol = await joinRaw(second, 'carol', { roomId });
    const newest = await ok(carol.raw, 'room.history', { kinds: ['chat', 'alert'], limit: 50 });
    expect(newest).toMatchObject({ hasMore: true, truncated: false, epoch: carol.join.epoch });
    expect(newest.events).toEqual(wanted.slice(-50));

    const onlyAlerts = await ok(carol.raw, 'room.history', { kinds: ['alert'] });
    expect(onlyAlerts.events).toEqual(wanted.filter((m) => m.event === 'alert.published'));
    expect(onlyAlerts).toMatchObject({ hasMore: false, truncated: false });

    const chatPages = await allPages(carol.raw, { kinds: ['chat'], limit: 40 });
    expect(chatPages).toHaveLength(4);
    expect(eventsOf(chatPages)).toEqual(wanted.filter((m) => m.event === 'chat.message'));

    const everything = eventsOf(await allPages(carol.raw, { limit: 100 }));
    expect(everything).toEqual(wanted);
    expect(everything[0]).toMatchObject({ seq: wanted[0]?.seq, data: { text: 'chat 0' } });
    expect(everything.filter((m) => !HISTORY_EVENTS.has(m.event as string))).toEqual([]);

    const older = await ok(carol.raw, 'room.history', { beforeSeq: wanted[10]?.seq, limit: 5 });
    expect(older.events).toEqual(wanted.slice(5, 10));

    const samples = parsePrometheus((await http(second, '/metrics')).text).samples;
    expect(sampleValue(samples, 'trading_room_history_requests_total', { outcome: 'ok' })).toBeGreaterThanOrEqual(9);
    expect(sampleValue(samples, 'trading_room_history_events_served_total')).toBeGreaterThanOrEqual(
      50 + 20 + 151 + 171 + 5,
    );
  });

  it('the SDK pages through history and merges it with live events without duplicates', async () => {
    const { first, second } = nodes();
    const roomId = 'sdk-merge';
    const alice = await joinRaw(first, 'alice', { roomId, role: 'presenter' });
    for (let i = 0; i < 30; i++) await ok(alice.raw, 'chat.send', { text: `before ${i}` });
    await ok(alice.raw, 'alert.publish', { symbol: 'SPY', action: 'watch' });

    const { client } = await second.joined('dave', { roomId });
    const timeline = new RoomTimeline();
    client.on('notification', (n: Notification) => timeline.addLive(n, client.epoch ?? ''));
    const live = await ok(alice.raw, 'chat.send', { text: 'live' });
    await eventually(() => client.lastSeq >= (live.seq as number), 10_000, 'the live chat');

    const pages: HistoryPage[] = [];
    for await (const page of client.historyPages({ limit: 10 })) {
      pages.push(page);
      timeline.addHistory(page);
    }
    expect(pages).toHaveLength(4);
    const entries = timeline.entries();
    expect(entries.map((e) => e.seq)).toEqual([...new Set(entries.map((e) => e.seq))]);
    expect(entries).toHaveLength(32);
    expect(entries.at(-1)).toMatchObject({ earlier: false, notification: { data: { text: 'live' } } });
    expect(entries.filter((e) => e.earlier)).toHaveLength(31);
    expect(entries[0]?.notification).toMatchObject({ event: 'chat.message', data: { text: 'before 0' } });
  });

  it('bounds an answer to 256 KiB of frames and leaves the rest to the next page', async () => {
    const { first, second } = nodes();
    const roomId = 'big-chat';
    const alice = await joinRaw(first, 'alice', { roomId });
    for (let i = 0; i < 60; i++) await ok(alice.raw, 'chat.send', { text: `${i} ${'€'.repeat(1990)}` });
    const { raw } = await joinRaw(second, 'gina', { roomId });
    const response = await raw.request('room.history', { limit: 100 });
    const page = response.data as Message;
    const events = page.events as Message[];
    expect(events.length).toBeGreaterThan(30);
    expect(events.length).toBeLessThan(60);
    const frames = events.map((m) => Buffer.byteLength(JSON.stringify(m)));
    expect(frames.reduce((sum, n) => sum + n, 0)).toBeLessThanOrEqual(256 * 1024);
    expect(page).toMatchObject({ hasMore: true, nextBeforeSeq: events[0]?.seq });
    expect((events.at(-1)?.data as Message).text).toMatch(/^59 /);
    const rest = eventsOf(await allPages(raw, { limit: 100, beforeSeq: page.nextBeforeSeq }));
    expect([...rest, ...events].map((m) => Number(((m.data as Message).text as string).split(' ')[0]))).toEqual(
      Array.from({ length: 60 }, (_, i) => i),
    );
  });

  it('refuses a limit above 100 or below 1 with BAD_REQUEST', async () => {
    const { second } = nodes();
    const { raw } = await joinRaw(second, 'erin', { roomId: 'bounds' });
    for (const limit of [101, 0]) {
      expect(await raw.request('room.history', { limit })).toMatchObject({ ok: false, error: { code: 'BAD_REQUEST' } });
    }
  });

  it('holds its own rate limit: 10 requests a minute per user, then RATE_LIMITED with retryAfterMs', async () => {
    const { first, second } = nodes();
    const frank = await joinRaw(first, 'frank', { roomId: 'limits' });
    const again = await joinRaw(second, 'frank', { roomId: 'limits-2' });
    for (let i = 0; i < 10; i++) await ok(i % 2 ? again.raw : frank.raw, 'room.history', {});
    const refused = await frank.raw.request('room.history', {});
    expect(refused).toMatchObject({ ok: false, error: { code: 'RATE_LIMITED' } });
    expect((refused.error as Message).retryAfterMs).toBeGreaterThan(0);
    // Chat is not counted against it.
    await ok(frank.raw, 'chat.send', { text: 'still here' });
  });
});

describe.each([
  ['one node', false],
  ['two nodes on a real Redis', true],
])('room history past retention: %s', { timeout: 60_000 }, (_name, shared) => {
  const nodes = useNodes(shared, { REPLAY_LOG_MAX_EVENTS: '20' });

  it('says the history is truncated and serves only what the log retains', async () => {
    const { first, second } = nodes();
    const roomId = 'retention';
    const alice = await joinRaw(first, 'alice', { roomId });
    for (let i = 0; i < 30; i++) await ok(alice.raw, 'chat.send', { text: `chat ${i}` });
    const { raw } = await joinRaw(second, 'bob', { roomId });
    const pages = await allPages(raw, { kinds: ['chat'], limit: 5 });
    const served = eventsOf(pages);
    expect(pages.every((page) => page.truncated === true)).toBe(true);
    expect(served.map((m) => (m.data as Message).text)).toEqual(
      Array.from({ length: served.length }, (_, i) => `chat ${30 - served.length + i}`),
    );
    expect(served.length).toBeGreaterThanOrEqual(18);
    expect(served.length).toBeLessThan(20);
  });
});

describe('room history after Redis restarted empty', { timeout: 60_000 }, () => {
  const nodes = useNodes(true);

  it('serves only the new epoch and names it', async () => {
    const { redis, first, second } = nodes();
    const roomId = 'restart';
    const alice = await joinRaw(first, 'alice', { roomId });
    const bob = await joinRaw(second, 'bob', { roomId });
    for (let i = 0; i < 5; i++) await ok(alice.raw, 'chat.send', { text: `old ${i}` });
    await redis?.stop();
    await redis?.resume();
    const resync = await bob.raw.waitFor((m) => m.event === 'room.resync', 20_000);
    const epoch = (resync.data as Message).epoch as string;
    expect(epoch).not.toBe(bob.join.epoch);
    await eventually(
      async () => (await alice.raw.request('chat.send', { text: 'new 0' })).ok === true,
      20_000,
      'chat after the restart',
    );
    await ok(alice.raw, 'chat.send', { text: 'new 1' });

    const page = await ok(bob.raw, 'room.history', {});
    expect(page).toMatchObject({ epoch, hasMore: false, truncated: false });
    expect((page.events as Message[]).map((m) => (m.data as Message).text)).toEqual(['new 0', 'new 1']);
  });
});
