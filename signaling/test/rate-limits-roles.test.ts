/**
 * Per-role chat limits on a real node: `RATE_LIMIT_CHAT_<ROLE>_MESSAGES` gives one role its own
 * `chat.send` budget (a talkative presenter) while every other role keeps
 * `RATE_LIMIT_CHAT_MESSAGES`, so raising the presenter's chat does not let a trader's flood
 * through to the room. Bad values are a ConfigError naming the variable.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { ConfigError } from '../src/errors.js';
import { startTestNode, type RawSocket, type TestNode } from '../../test-support/harness.js';

let t: TestNode;
beforeAll(async () => {
  t = await startTestNode({
    RATE_LIMIT_CONNECTION_MESSAGES: '1000',
    RATE_LIMIT_USER_MESSAGES: '1000',
    RATE_LIMIT_CHAT_MESSAGES: '3',
    RATE_LIMIT_CHAT_WINDOW_MS: '60000',
    RATE_LIMIT_CHAT_PRESENTER_MESSAGES: '40',
  });
});
afterAll(async () => {
  await t?.close();
});

async function joined(userId: string, role: 'trader' | 'presenter' | 'moderator'): Promise<RawSocket> {
  const raw = await t.raw(await t.token(userId, { role }));
  const join = await raw.request('room.join', {});
  expect(join.ok, JSON.stringify(join)).toBe(true);
  return raw;
}

/** Sends `count` chats one after the other; the answers' error codes (`ok` for accepted ones). */
async function chats(raw: RawSocket, count: number): Promise<string[]> {
  const codes: string[] = [];
  for (let i = 0; i < count; i++) {
    const answer = await raw.request('chat.send', { text: `m${i}` });
    codes.push(answer.ok ? 'ok' : ((answer.error as { code: string }).code ?? 'error'));
  }
  return codes;
}

it('a presenter chats on its own budget; traders and moderators keep the global one', async () => {
  const presenter = await joined('presenter-1', 'presenter');
  const trader = await joined('trader-1', 'trader');
  const moderator = await joined('moderator-1', 'moderator');
  expect(await chats(presenter, 20)).toEqual(Array(20).fill('ok'));
  expect(await chats(trader, 5)).toEqual(['ok', 'ok', 'ok', 'RATE_LIMITED', 'RATE_LIMITED']);
  expect(await chats(moderator, 4)).toEqual(['ok', 'ok', 'ok', 'RATE_LIMITED']);
  // The presenter's budget is its own, not shared with the global limiter's key.
  expect(await chats(presenter, 20)).toEqual(Array(20).fill('ok'));
  expect(await chats(presenter, 1)).toEqual(['RATE_LIMITED']);
});

it('reads the per-role variables with the chat window, and rejects bad ones by name', () => {
  const config = loadConfig({ RATE_LIMIT_CHAT_TRADER_MESSAGES: '2', RATE_LIMIT_CHAT_WINDOW_MS: '7000' });
  expect(config.rateLimits.chatByRole).toEqual({ trader: { points: 2, durationMs: 7000 } });
  expect(loadConfig({}).rateLimits.chatByRole).toBeUndefined();
  expect(() => loadConfig({ RATE_LIMIT_CHAT_MODERATOR_MESSAGES: '0' })).toThrow(ConfigError);
  expect(() => loadConfig({ RATE_LIMIT_CHAT_MODERATOR_MESSAGES: 'lots' })).toThrow(
    /RATE_LIMIT_CHAT_MODERATOR_MESSAGES/,
  );
});
