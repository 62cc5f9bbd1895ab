/**
 * Artillery processor for trading-room: each virtual user mints its own access token from the
 * deployment's signing secret (HS256, the contract's claims: sub, room, role, exp), opens the
 * WebSocket, joins its room, chats (traders) or publishes alerts (presenters) at a pace inside
 * the default rate limits, counts what it receives, and reconnects when the node drains
 * (`server.draining`, or a 1001/1012/1013 close) — the way the SDK does.
 *
 * Environment (read when a virtual user starts):
 *   TRADING_ROOM_JWT_SECRET   the deployment's SIGNING secret (required; never logged)
 *   TRADING_ROOM_ROOMS        rooms to spread users over (default 10); room ids `load-<n>`
 *   TRADING_ROOM_SESSION_SECONDS  how long each user stays (default 60)
 *   TRADING_ROOM_WS_PATH      WebSocket path (default /ws)
 *
 * Metrics (Artillery counters/histograms): trading_room.joined, trading_room.join_ms,
 * trading_room.chat_sent, trading_room.alert_sent, trading_room.rate_limited,
 * trading_room.messages_received, trading_room.drain_notices, trading_room.reconnects,
 * trading_room.upgrade_refused_<status>, trading_room.errors.
 *
 * The deployment's per-IP upgrade limit (RATE_LIMIT_IP_CONNECTIONS, 20 a minute by default)
 * applies to the load generator like any client: raise it for the test, or run generators from
 * several addresses, or `upgrade_refused_429` measures the limit instead of the deployment.
 *
 * Plain CommonJS with Node built-ins and `ws` only, so Artillery loads it as is.
 */
/* global require, module */
'use strict';

// CommonJS on purpose: Artillery `require()`s its processor.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { createHmac, randomUUID } = require('node:crypto');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const WebSocket = require('ws');

const RECONNECT_CLOSE_CODES = new Set([1001, 1012, 1013]);

/** Backoff before reconnect attempt `attempt` (1, 2, …): 0.5 s doubling, at most 10 s. */
function backoffMs(attempt) {
  return Math.min(500 * 2 ** (attempt - 1), 10_000);
}

function base64url(value) {
  return Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
}

/** An HS256 access token with the contract's claims. */
function signToken(secret, { userId, roomId, role, ttlSeconds = 3600 }) {
  const now = Math.floor(Date.now() / 1000);
  const header = base64url({ alg: 'HS256', typ: 'JWT' });
  const payload = base64url({ sub: userId, room: roomId, role, iat: now, exp: now + ttlSeconds });
  const signature = createHmac('sha256', secret).update(`${header}.${payload}`).digest('base64url');
  return `${header}.${payload}.${signature}`;
}

function setting(context, name, fallback) {
  const fromVars = context.vars[name];
  if (fromVars !== undefined && fromVars !== '') return fromVars;
  const fromEnv = process.env[name];
  return fromEnv !== undefined && fromEnv !== '' ? fromEnv : fallback;
}

/** Artillery step: picks a user, room and role and mints its token into `context.vars`. */
function mintToken(context, events, done) {
  const secret = setting(context, 'TRADING_ROOM_JWT_SECRET', undefined);
  if (!secret) return done(new Error('TRADING_ROOM_JWT_SECRET is not set: the signing secret of the deployment'));
  const rooms = Number(setting(context, 'TRADING_ROOM_ROOMS', 10));
  const roomId = `load-${Math.floor(Math.random() * rooms)}`;
  const role = context.vars.role === 'presenter' ? 'presenter' : 'trader';
  const userId = `load-${role}-${randomUUID()}`;
  context.vars.userId = userId;
  context.vars.roomId = roomId;
  context.vars.role = role;
  context.vars.token = signToken(secret, { userId, roomId, role });
  return done();
}

function wsUrl(context) {
  const target = String(context.vars.target || context.vars.$target || '').replace(/^http/, 'ws');
  const path = setting(context, 'TRADING_ROOM_WS_PATH', '/ws');
  return `${target.replace(/\/$/, '')}${path}?token=${encodeURIComponent(context.vars.token)}`;
}

/**
 * Artillery step: one user's session for TRADING_ROOM_SESSION_SECONDS — connect, join, chat or
 * alert, reconnect on drain — then close. Calls `done` once, with an error only when the first
 * join fails.
 */
function runSession(context, events, done) {
  const seconds = Number(setting(context, 'TRADING_ROOM_SESSION_SECONDS', 60));
  const endAt = Date.now() + seconds * 1000;
  const presenter = context.vars.role === 'presenter';
  let ws;
  let nextId = 1;
  let timer;
  let joinedOnce = false;
  let finished = false;
  const pending = new Map();

  const finish = (error) => {
    if (finished) return;
    finished = true;
    clearInterval(timer);
    if (ws && ws.readyState === WebSocket.OPEN) ws.close(1000);
    done(error);
  };

  const request = (method, data) =>
    new Promise((resolve) => {
      const id = nextId++;
      pending.set(id, resolve);
      ws.send(JSON.stringify({ id, method, data }));
    });

  const send = async () => {
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    const reply = presenter
      ? await request('alert.publish', { symbol: 'BTCUSD', action: 'watch', note: 'load test' })
      : await request('chat.send', { text: `load test ${new Date().toISOString()}` });
    if (reply.ok) events.emit('counter', presenter ? 'trading_room.alert_sent' : 'trading_room.chat_sent', 1);
    else if (reply.error && reply.error.code === 'RATE_LIMITED') events.emit('counter', 'trading_room.rate_limited', 1);
    else events.emit('counter', 'trading_room.errors', 1);
  };

  let attempt = 0;
  const connect = () => {
    attempt++;
    if (finished) return;
    if (Date.now() >= endAt) return finish(joinedOnce ? undefined : new Error('session ended before joining'));
    const started = Date.now();
    ws = new WebSocket(wsUrl(context), { perMessageDeflate: false, handshakeTimeout: 10_000 });
    let reconnectAfterMs = backoffMs(attempt);
    ws.on('message', (raw) => {
      let frame;
      try {
        frame = JSON.parse(raw.toString());
      } catch {
        return;
      }
      if (frame.id !== undefined && pending.has(frame.id)) {
        const resolve = pending.get(frame.id);
        pending.delete(frame.id);
        resolve(frame);
        return;
      }
      if (frame.event === 'server.draining') {
        events.emit('counter', 'trading_room.drain_notices', 1);
        reconnectAfterMs = (frame.data && frame.data.reconnectAfterMs) || 1000;
        ws.close(1000);
        return;
      }
      if (frame.event) events.emit('counter', 'trading_room.messages_received', 1);
    });
    ws.on('error', () => {});
    // A refused upgrade (429 from the per-IP limit, 503 while draining, 401 for a bad token):
    // counted by status, retried after Retry-After (or with a growing backoff).
    ws.on('unexpected-response', (_request, response) => {
      events.emit('counter', `trading_room.upgrade_refused_${response.statusCode}`, 1);
      const retryAfterS = Number(response.headers['retry-after']);
      reconnectAfterMs = Number.isFinite(retryAfterS) && retryAfterS > 0 ? retryAfterS * 1000 : backoffMs(attempt);
      response.resume();
      ws.terminate();
    });
    ws.on('close', (code) => {
      for (const resolve of pending.values()) resolve({ ok: false, error: { code: 'CLOSED' } });
      pending.clear();
      if (finished || Date.now() >= endAt)
        return finish(joinedOnce ? undefined : new Error(`closed ${code} before joining`));
      if (code === 1000 || RECONNECT_CLOSE_CODES.has(code) || code === 1006) {
        events.emit('counter', 'trading_room.reconnects', 1);
        // A fresh token each time: the old one may be close to expiry.
        mintToken(context, events, () => {});
        setTimeout(connect, Math.min(reconnectAfterMs + Math.random() * 500, 30_000));
      } else {
        events.emit('counter', 'trading_room.errors', 1);
        finish(joinedOnce ? undefined : new Error(`closed ${code} before joining`));
      }
    });
    ws.on('open', async () => {
      const reply = await request('room.join', {});
      if (!reply.ok) {
        events.emit('counter', 'trading_room.errors', 1);
        if (!joinedOnce) return finish(new Error(`room.join refused: ${JSON.stringify(reply.error)}`));
        return;
      }
      joinedOnce = true;
      attempt = 1;
      events.emit('counter', 'trading_room.joined', 1);
      events.emit('histogram', 'trading_room.join_ms', Date.now() - started);
      // The first chat or alert goes out on joining; then one every 2 s (chat) or 10 s (alert).
      void send();
    });
  };

  // Traders chat every 2 s (the default limit is 5 per 5 s); presenters alert every 10 s (10 per minute).
  timer = setInterval(
    () => {
      if (Date.now() >= endAt) return finish();
      void send();
    },
    presenter ? 10_000 : 2_000,
  );
  connect();
}

/** Artillery step: this virtual user is a presenter (alerts instead of chat). */
function setPresenter(context, events, done) {
  context.vars.role = 'presenter';
  return done();
}

module.exports = { mintToken, runSession, setPresenter, signToken };
