/**
 * Sentry with `SENTRY_DSN` pointing at an ingest server in the test. A real fault breaks a
 * handler — the room's head in Redis is overwritten with a value of the wrong type, so publishing
 * the chat fails with WRONGTYPE — and the INTERNAL answer arrives as an event tagged with the
 * method, room and user, carrying the release, the environment and the client's trace id. The
 * token (sent in the `Authorization` header) and the chat text appear nowhere in its bytes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, startTestNode, type TestNode } from '../../test-support/harness.js';
import { useTestRedis } from '../../test-support/redis.js';
import { GENEROUS_LIMITS } from '../../test-support/room-helpers.js';
import { breakRoomHead, SentryReceiver, tracedChat } from '../../test-support/tracing.js';
import { scrubBreadcrumb, scrubEvent } from '../src/telemetry/sentry.js';

const CHAT_TEXT = 'sell everything at 17:42 — do not share';

describe('Sentry error reports', () => {
  const redis = useTestRedis();
  let sentry: SentryReceiver;
  let t: TestNode;

  beforeAll(async () => {
    sentry = await SentryReceiver.start();
    t = await startTestNode({
      ...GENEROUS_LIMITS,
      REDIS_URL: redis.server().url,
      REDIS_KEY_PREFIX: 'sentry',
      NODE_ID: 'sentry-node',
      SENTRY_DSN: sentry.dsn,
      SENTRY_ENVIRONMENT: 'staging',
    });
  });

  afterAll(async () => {
    await t?.close();
    await sentry?.close();
  });

  it('reports an INTERNAL failure with tags, release, environment and trace id, and nothing secret', async () => {
    const token = await t.token('trader-7', { roomId: 'broken-room' });
    const raw = await t.raw(undefined, { Authorization: `Bearer ${token}` });
    expect(await raw.request('room.join', {})).toMatchObject({ ok: true });
    // The fault: the room's head is no longer a hash.
    await breakRoomHead(redis.client(), 'sentry', 'broken-room');

    const { answer, trace: client } = await tracedChat(raw, 100, CHAT_TEXT);
    expect(answer).toMatchObject({ ok: false, error: { code: 'INTERNAL' } });

    await eventually(() => sentry.events().length > 0, 15_000, 'an event at the Sentry server');
    const reports = sentry.events();
    expect(reports).toHaveLength(1);
    const { event, raw: bytes } = reports[0] as (typeof reports)[number];
    expect(event.tags).toMatchObject({ method: 'chat.send', roomId: 'broken-room', userId: 'trader-7' });
    expect(event.release).toMatch(/^trading-room-signaling@\d+\.\d+\.\d+/);
    expect(event.environment).toBe('staging');
    expect(event.server_name).toBe('sentry-node');
    expect((event.contexts as { trace: { trace_id: string } }).trace.trace_id).toBe(client.traceId);
    const text = bytes.toString('utf8');
    expect(text).toContain('WRONGTYPE');
    expect(text).not.toContain(token);
    expect(text).not.toContain(token.split('.')[2]);
    expect(text).not.toContain(CHAT_TEXT);
    expect(text).not.toContain('do not share');
  });

  it('scrubs tokens, Authorization and cookie headers, query strings and bodies from events and breadcrumbs', () => {
    const jwt = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.c2lnbmF0dXJl';
    const event = scrubEvent({
      type: undefined,
      message: `upgrade of ws://node:8080/ws?token=${jwt} failed with Bearer abc.def`,
      request: {
        url: `https://node/ws?token=${jwt}`,
        query_string: `token=${jwt}`,
        cookies: { session: 'c' },
        data: { text: 'hello' },
        headers: { Authorization: `Bearer ${jwt}`, 'User-Agent': 'test' },
      },
      extra: { body: 'a message body', note: 'an alert note', nested: { token: jwt, kept: 'fine' } },
    });
    const text = JSON.stringify(event);
    for (const secret of [jwt, 'abc.def', 'hello', 'a message body', 'an alert note', 'session']) {
      expect(text).not.toContain(secret);
    }
    expect(text).toContain('fine');
    expect(event.request?.url).toBe('https://node/ws');
    const crumb = scrubBreadcrumb({
      category: 'http',
      message: `GET http://backend/rooms?access_token=${jwt}`,
      data: { url: `http://backend/rooms?x=1`, body: 'b' },
    });
    expect(JSON.stringify(crumb)).not.toMatch(/access_token|x=1|"b"/);
  });
});
