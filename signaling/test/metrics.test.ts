/**
 * The node's Prometheus metrics as scraped from `/metrics`: gauges, counters and the handling
 * histogram move with real traffic, and no label ever carries a room or user id.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestNode, type TestNode } from '../../test-support/harness.js';
import {
  GENEROUS_LIMITS,
  http,
  joinRaw,
  parsePrometheus,
  sampleValue,
  type JoinedRaw,
  type Sample,
} from '../../test-support/room-helpers.js';

const ROOM = 'metrics-room-q7z';
const USERS = ['metrics-user-a9x', 'metrics-user-b9x', 'metrics-user-c9x'];
const CHATS = 4;

describe('/metrics', () => {
  let t: TestNode;
  let clients: JoinedRaw[];
  let samples: Sample[];
  let types: Map<string, string>;
  let contentType: string | null;

  beforeAll(async () => {
    t = await startTestNode({ ...GENEROUS_LIMITS });
    clients = [
      await joinRaw(t, USERS[0] as string, { roomId: ROOM, role: 'presenter' }),
      await joinRaw(t, USERS[1] as string, { roomId: ROOM }),
      await joinRaw(t, USERS[2] as string, { roomId: ROOM }),
    ];
    const [presenter, trader] = clients as [JoinedRaw, JoinedRaw];
    for (let i = 0; i < CHATS; i++) await presenter.raw.request('chat.send', { text: `chat ${i}` });
    await trader.raw.request('alert.publish', { symbol: 'AAPL', action: 'buy' }); // FORBIDDEN
    await trader.raw.request(`${ROOM}.${USERS[1]}`); // UNKNOWN_METHOD, named after ids on purpose
    await trader.raw.request('chat.send', { text: '' }); // BAD_REQUEST
    trader.raw.send('{not json');
    await trader.raw.waitFor((m) => m.id === null);
    await t.raw(`bogus-token-for-${USERS[2]}`).catch(() => undefined); // 401
    const lastSeq = 3 + CHATS;
    for (const c of clients) await c.raw.waitFor((m) => m.seq === lastSeq);

    const response = await http(t, '/metrics');
    expect(response.status).toBe(200);
    contentType = response.headers.get('content-type');
    ({ samples, types } = parsePrometheus(response.text));
  });

  afterAll(async () => {
    await t?.close();
  });

  it('is the Prometheus text format', () => {
    expect(contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(samples.length).toBeGreaterThan(20);
  });

  it('reports connections, rooms and participants', () => {
    expect(types.get('trading_room_connections')).toBe('gauge');
    expect(sampleValue(samples, 'trading_room_connections')).toBe(3);
    expect(sampleValue(samples, 'trading_room_rooms')).toBe(1);
    expect(sampleValue(samples, 'trading_room_participants')).toBe(3);
  });

  it('counts requests by method and outcome', () => {
    const received = (method: string, outcome: string) =>
      sampleValue(samples, 'trading_room_messages_received_total', { method, outcome });
    expect(types.get('trading_room_messages_received_total')).toBe('counter');
    expect(received('chat.send', 'ok')).toBe(CHATS);
    expect(received('room.join', 'ok')).toBe(3);
    expect(received('alert.publish', 'FORBIDDEN')).toBe(1);
    expect(received('unknown', 'UNKNOWN_METHOD')).toBe(1);
    expect(received('chat.send', 'BAD_REQUEST')).toBe(1);
    expect(received('invalid', 'BAD_REQUEST')).toBe(1);
  });

  it('has a handling-time histogram per method', () => {
    const name = 'trading_room_message_handling_seconds';
    expect(types.get(name)).toBe('histogram');
    const buckets = samples.filter((s) => s.name === `${name}_bucket` && s.labels.method === 'chat.send');
    expect(buckets.length).toBeGreaterThan(3);
    const values = buckets.map((b) => b.value);
    expect(values).toEqual([...values].sort((a, b) => a - b)); // cumulative
    expect(buckets.at(-1)?.labels.le).toBe('+Inf');
    // Five chat.send requests: four ok, one refused.
    expect(buckets.at(-1)?.value).toBe(CHATS + 1);
    expect(sampleValue(samples, `${name}_count`, { method: 'chat.send' })).toBe(CHATS + 1);
    expect(sampleValue(samples, `${name}_sum`, { method: 'chat.send' })).toBeGreaterThan(0);
  });

  it('counts durable events and fan-out deliveries', () => {
    expect(sampleValue(samples, 'trading_room_durable_events_published_total')).toBe(3 + CHATS);
    // Joins reach 0, 1 and 2 earlier members; each chat reaches all three.
    expect(sampleValue(samples, 'trading_room_fanout_deliveries_total')).toBe(0 + 1 + 2 + 3 * CHATS);
  });

  it('counts errors by code and refused upgrades by status', () => {
    const errors = (code: string) => sampleValue(samples, 'trading_room_errors_total', { code });
    expect(errors('FORBIDDEN')).toBe(1);
    expect(errors('UNKNOWN_METHOD')).toBe(1);
    expect(errors('BAD_REQUEST')).toBe(2);
    expect(sampleValue(samples, 'trading_room_upgrades_refused_total', { status: '401' })).toBe(1);
  });

  it('reports the drain state', () => {
    expect(sampleValue(samples, 'trading_room_drain_state', { state: 'running' })).toBe(1);
    expect(sampleValue(samples, 'trading_room_drain_state', { state: 'draining' })).toBe(0);
  });

  it('names every metric trading_room_* and labels each with the node', () => {
    for (const s of samples) {
      expect(s.name).toMatch(/^trading_room_/);
      expect(s.labels.node).toBe(t.node.config.nodeId);
    }
  });

  it('never puts a room id or a user id in a label', () => {
    const forbidden = [ROOM, ...USERS, 'metrics-room', 'metrics-user'];
    for (const s of samples) {
      for (const [label, value] of Object.entries(s.labels)) {
        for (const id of forbidden) expect(value, `${s.name}{${label}}`).not.toContain(id);
      }
    }
    const methods = new Set(samples.map((s) => s.labels.method).filter((m) => m !== undefined));
    for (const method of methods) expect(method).toMatch(/^(unknown|invalid|[a-z]+(\.[a-zA-Z]+)?)$/);
  });
});
