/**
 * The Redis key layout of a room and the Lua scripts of the Redis room bus. Every key of a room
 * shares the hash tag `{room:ID}`, so each script touches one slot and runs on a Redis Cluster;
 * the room's pub/sub channel carries the same tag, so `SPUBLISH` inside the script reaches the
 * shard that holds the room. `docs/cluster.md` describes the layout.
 */
import { createHash } from 'node:crypto';
import { Cluster } from 'ioredis';
import type { RedisClient } from './redis-connections.js';

/** The keys and the channel of one room. */
export interface RoomKeys {
  /** Hash `{epoch, seq}`: the epoch of the room's history and its newest `seq`. */
  readonly meta: string;
  /** Stream of durable events, entry id `<seq>-0`, fields `t` (ms), `e` (event), `f` (frame). */
  readonly log: string;
  /** Hash participantId → presence JSON. */
  readonly presence: string;
  /** Hashes of expiring fields (`<expiresAtMs or 0>|<value>`): resume records, bans, roles. */
  readonly sessions: string;
  readonly bans: string;
  readonly roles: string;
  /**
   * Hash bus instance → Redis time (ms) it last confirmed it subscribes to the room: the publish
   * script sends the pub/sub message only when another instance subscribes (the publisher's own
   * instance delivers from the script's answer). Entries older than the key TTL are ignored.
   */
  readonly nodes: string;
  /** The pub/sub channel (a shard channel on a Cluster). */
  readonly channel: string;
  /**
   * Stream of the room's webhook outbox (entries `e`, `p` epoch, `s` seq, `t` ms, `f` frame), read
   * through a consumer group by the backend bridge. Not one of {@link allKeys}: it outlives the
   * room until every entry was delivered.
   */
  readonly webhooks: string;
}

/** `prefix` must not contain braces: the room's `{…}` must be the first, so it is the hash tag. */
export function roomKeys(prefix: string, roomId: string): RoomKeys {
  const base = `${prefix}:{room:${roomId}}`;
  return {
    meta: `${base}:meta`,
    log: `${base}:log`,
    presence: `${base}:presence`,
    sessions: `${base}:sessions`,
    bans: `${base}:bans`,
    roles: `${base}:roles`,
    nodes: `${base}:nodes`,
    channel: `${base}:ch`,
    webhooks: `${base}:webhooks`,
  };
}

/**
 * Every key of a room but `nodes`, in the order the `read`, `check` and `drop` scripts expect them
 * (the first two take `nodes` after them; dropping a room leaves it to expire: it says who
 * subscribes, not what the room holds).
 */
export function allKeys(keys: RoomKeys): string[] {
  return [keys.meta, keys.log, keys.presence, keys.sessions, keys.bans, keys.roles];
}

/** A Lua script run by its SHA, sent in full once per connection that does not know it yet. */
export class LuaScript {
  readonly source: string;
  readonly sha: string;

  constructor(source: string) {
    this.source = source;
    this.sha = createHash('sha1').update(source).digest('hex');
  }

  /**
   * Loads the script on the server (every master of a Cluster), so that the first wave of calls
   * after a (re)connect — one per subscribed room, at once — does not fail `NOSCRIPT` and send the
   * source in full once each.
   */
  async load(client: RedisClient): Promise<void> {
    const servers = client instanceof Cluster ? client.nodes('master') : [client];
    await Promise.all(servers.map((server) => server.script('LOAD', this.source)));
  }

  async run(client: RedisClient, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    try {
      return await client.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (error) {
      // NOSCRIPT: this server never ran it (or restarted); nothing ran, so sending it is safe.
      if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error;
      return client.eval(this.source, keys.length, ...keys, ...args);
    }
  }
}

/** Redis's clock in ms: one clock for every node's retention decisions. */
export const NOW_MS = `local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
`;

/** Starts a new epoch: the history of the old one (if any of it is left) is meaningless now. */
const NEW_EPOCH = `local function new_epoch(meta, log, epoch)
  redis.call('DEL', log)
  redis.call('HSET', meta, 'epoch', epoch, 'seq', 0)
  return epoch
end
`;

/**
 * Numbers, logs and publishes one durable event, atomically.
 * KEYS: meta, log, nodes (, webhook outbox). ARGV: channel, candidate epoch, frame prefix, event name, max events,
 * key TTL ms, publish command (`publish` or `spublish`), the publisher's bus instance ('' when it
 * does not subscribe to the room), the message's trace prefix (`t|<trace>|` of a sampled
 * publisher, else ''; the stream entry does not keep it); with the webhook outbox (KEYS[4]), '1'
 * when the event is one webhooks report ('0' otherwise) and the outbox stream's consumer group.
 * Returns `{epoch, seq, published (0/1), outbox entries appended}`. The pub/sub message
 * is `d|<epoch>|<seq>|<frame>` (the event name is the frame's first field, read from there); the
 * frame is the prefix plus `,"seq":N}`, as `completeFrame`. It is sent only when an instance other
 * than the publisher's subscribes (a fresh entry in `nodes`; stale ones are removed).
 */
export const PUBLISH_SCRIPT = new LuaScript(`${NOW_MS}${NEW_EPOCH}
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then epoch = new_epoch(KEYS[1], KEYS[2], ARGV[2]) end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local frame = ARGV[3] .. ',"seq":' .. seq .. '}'
local now = now_ms()
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], seq .. '-0', 't', tostring(now), 'e', ARGV[4], 'f', frame)
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
local others = 0
local stamps = redis.call('HGETALL', KEYS[3])
for i = 1, #stamps, 2 do
  if stamps[i] ~= ARGV[8] then
    if tonumber(stamps[i + 1]) + tonumber(ARGV[6]) > now then others = 1
    else redis.call('HDEL', KEYS[3], stamps[i]) end
  end
end
if others == 1 then redis.call(ARGV[7], ARGV[1], ARGV[9] .. 'd|' .. epoch .. '|' .. seq .. '|' .. frame) end
-- The webhook outbox (KEYS[4], when ARGV[10] is '0' or '1'): an epoch's first event starts the
-- room, and an event webhooks report ('1') is appended, in the same atomic step as its seq.
local outboxed = 0
local outbox = ARGV[10] or ''
if outbox ~= '' and (seq == 1 or outbox == '1') then
  if redis.call('EXISTS', KEYS[4]) == 0 then redis.call('XGROUP', 'CREATE', KEYS[4], ARGV[11], '0', 'MKSTREAM') end
  if seq == 1 then
    redis.call('XADD', KEYS[4], '*', 'e', 'room.started', 'p', epoch, 's', '0', 't', tostring(now))
    outboxed = outboxed + 1
  end
  if outbox == '1' then
    redis.call('XADD', KEYS[4], '*', 'e', ARGV[4], 'p', epoch, 's', tostring(seq), 't', tostring(now), 'f', frame)
    outboxed = outboxed + 1
  end
end
return {epoch, seq, others, outboxed}
`);

export interface PublishRequest {
  readonly keys: RoomKeys;
  /** Used only when the room has no epoch (new room, or Redis lost its history). */
  readonly candidateEpoch: string;
  readonly framePrefix: string;
  readonly event: string;
  readonly maxEvents: number;
  readonly keyTtlMs: number;
  readonly sharded: boolean;
  /** The publisher's bus instance when it subscribes to the room (it delivers from the answer). */
  readonly instance?: string;
  /** The publisher's sampled trace context (48 hex digits), put before the pub/sub message. */
  readonly trace?: string | undefined;
  /** The webhook outbox, when webhooks are on: whether this event is one, and the stream's group. */
  readonly outbox?: { readonly wanted: boolean; readonly group: string } | undefined;
}

/** The keys and arguments of {@link PUBLISH_SCRIPT}. */
export function publishCall(request: PublishRequest): { keys: string[]; args: string[] } {
  return {
    keys: [request.keys.meta, request.keys.log, request.keys.nodes, ...(request.outbox ? [request.keys.webhooks] : [])],
    args: [
      request.keys.channel,
      request.candidateEpoch,
      request.framePrefix,
      request.event,
      String(request.maxEvents),
      String(request.keyTtlMs),
      request.sharded ? 'spublish' : 'publish',
      request.instance ?? '',
      request.trace === undefined ? '' : `t|${request.trace}|`,
      ...(request.outbox ? [request.outbox.wanted ? '1' : '0', request.outbox.group] : []),
    ],
  };
}

/**
 * Reads a room's head and the retained durable events after a seq.
 * KEYS: {@link allKeys}, nodes. ARGV: after seq (-1: the head only), known epoch ('' for any),
 * max events, max age ms, ensure ('1': start an epoch when there is none, restart it when Redis
 * holds fewer events than the caller already saw under it, refresh every key's TTL), candidate
 * epoch, key TTL ms, the caller's bus instance when it subscribes ('': it does not; with ensure,
 * its entry in `nodes` is stamped). Returns `{epoch or nil, lastSeq, complete (0/1), seq, event, frame, seq, …}`:
 * events of the current epoch after `after` (after 0 when the known epoch is another), oldest
 * first; `complete` when they start right after `after`. An event counts as retained while it is
 * among the newest `max events` and younger than `max age`.
 */
export const READ_SCRIPT = new LuaScript(`${NOW_MS}${NEW_EPOCH}
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local last = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
local after = tonumber(ARGV[1])
if ARGV[5] == '1' then
  if epoch and epoch == ARGV[2] and last < after then epoch = false end
  if not epoch then
    epoch = new_epoch(KEYS[1], KEYS[2], ARGV[6])
    last = 0
  end
  if ARGV[8] ~= '' then redis.call('HSET', KEYS[7], ARGV[8], tostring(now_ms())) end
  for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], ARGV[7]) end
end
if not epoch then
  if after <= 0 then return {false, 0, 1} end
  return {false, 0, 0}
end
if ARGV[2] ~= '' and ARGV[2] ~= epoch then after = 0 end
if after < 0 or after == last then return {epoch, last, 1} end
if after > last then return {epoch, last, 0} end
local cutoff = now_ms() - tonumber(ARGV[4])
local start = math.max(after + 1, last - tonumber(ARGV[3]) + 1)
local out = {epoch, last, 0}
local first = nil
for _, entry in ipairs(redis.call('XRANGE', KEYS[2], tostring(start), '+')) do
  local fields = entry[2]
  if first or tonumber(fields[2]) >= cutoff then
    local seq = tonumber(string.match(entry[1], '^(%d+)'))
    first = first or seq
    out[#out + 1] = seq
    out[#out + 1] = fields[4]
    out[#out + 1] = fields[6]
  end
end
if first == after + 1 then out[3] = 1 end
return out
`);

/**
 * The periodic position check of one subscribed room, cheap when nothing is amiss.
 * KEYS: {@link allKeys}, nodes. ARGV: the epoch and `seq` the node delivered, key TTL ms ('0':
 * no refresh due), the caller's bus instance. Returns 1 when the room's head is that position
 * (and, when asked, stamps the instance's entry in `nodes` and refreshes every key's TTL), 0
 * otherwise: the caller then syncs with the read script, which repairs.
 */
export const CHECK_SCRIPT = new LuaScript(`${NOW_MS}
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'seq')
if meta[1] ~= ARGV[1] or tonumber(meta[2] or '0') ~= tonumber(ARGV[2]) then return 0 end
if ARGV[3] ~= '0' then
  redis.call('HSET', KEYS[7], ARGV[4], tostring(now_ms()))
  for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], ARGV[3]) end
end
return 1
`);

/**
 * Forgets a room when nobody is present. KEYS: {@link allKeys} (, webhook outbox). ARGV: (the
 * outbox stream's consumer group). Returns 1 when dropped, 2 when dropped and `room.finished`
 * was appended to the outbox (a room that had an epoch finishes, atomically with its drop).
 */
export const DROP_SCRIPT = new LuaScript(`${NOW_MS}
if redis.call('HLEN', KEYS[3]) > 0 then return 0 end
local dropped = 1
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if KEYS[7] and epoch then
  if redis.call('EXISTS', KEYS[7]) == 0 then redis.call('XGROUP', 'CREATE', KEYS[7], ARGV[1], '0', 'MKSTREAM') end
  redis.call('XADD', KEYS[7], '*', 'e', 'room.finished', 'p', epoch, 's', '0', 't', tostring(now_ms()))
  dropped = 2
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
return dropped
`);

/**
 * Writes one expiring field and removes a few expired ones (a sample, like Redis's own active
 * expiry), keeping the key alive at least `key TTL` and until the field expires.
 * KEYS: hash. ARGV: field, value, expires at ms (0: with the room), key TTL ms.
 */
export const PUT_FIELD_SCRIPT = new LuaScript(`${NOW_MS}
local now = now_ms()
local expires = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3] .. '|' .. ARGV[2])
local sample = redis.call('HRANDFIELD', KEYS[1], 8, 'WITHVALUES')
for i = 1, #sample, 2 do
  local at = tonumber(string.match(sample[i + 1], '^(%d+)|'))
  if at and at > 0 and at <= now then redis.call('HDEL', KEYS[1], sample[i]) end
end
local ttl = math.max(tonumber(ARGV[4]), expires - now)
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], tostring(math.floor(ttl))) end
return 1
`);

/** Reads one expiring field (nil when absent or expired). KEYS: hash. ARGV: field. */
export const GET_FIELD_SCRIPT = new LuaScript(`${NOW_MS}
local stored = redis.call('HGET', KEYS[1], ARGV[1])
if not stored then return false end
local at, value = string.match(stored, '^(%d+)|(.*)$')
at = tonumber(at)
if at > 0 and at <= now_ms() then return false end
return value
`);

/**
 * A page of a room's history: the newest retained entries of the current epoch before a seq whose
 * event name is wanted, walking back with `XREVRANGE` through at most `scan max` entries.
 * KEYS: meta, log. ARGV: before seq (0: from the newest), limit, max events, max age ms, scan
 * max, wanted event names…. Returns `{epoch or nil, hasMore (0/1), next before seq, truncated
 * (0/1), seq, event, frame, seq, …}`, newest first. Retention is the read script's: an entry
 * counts while it is among the newest `max events` and younger than `max age`.
 */
export const HISTORY_SCRIPT = new LuaScript(`${NOW_MS}
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then return {false, 0, 0, 0} end
local last = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
local cutoff = now_ms() - tonumber(ARGV[4])
local lowest = math.max(1, last - tonumber(ARGV[3]) + 1)
local truncated = 0
if lowest > 1 then truncated = 1
elseif last > 0 then
  local first = redis.call('XRANGE', KEYS[2], '1-0', '1-0')
  if #first == 0 or tonumber(first[1][2][2]) < cutoff then truncated = 1 end
end
local wanted = {}
for i = 6, #ARGV do wanted[ARGV[i]] = true end
local limit = tonumber(ARGV[2])
local budget = tonumber(ARGV[5])
local cursor = last
local before = tonumber(ARGV[1])
if before > 0 and before - 1 < cursor then cursor = before - 1 end
local out = {epoch, 0, 0, truncated}
local found = 0
local next_before = 0
local done = false
while not done and cursor >= lowest do
  local batch = redis.call('XREVRANGE', KEYS[2], tostring(cursor), tostring(lowest), 'COUNT', 100)
  if #batch == 0 then break end
  for _, entry in ipairs(batch) do
    local fields = entry[2]
    local seq = tonumber(string.match(entry[1], '^(%d+)'))
    if tonumber(fields[2]) < cutoff then done = true break end
    if budget == 0 or (found == limit and wanted[fields[4]]) then
      out[2] = 1
      done = true
      break
    end
    budget = budget - 1
    if wanted[fields[4]] then
      found = found + 1
      out[#out + 1] = seq
      out[#out + 1] = fields[4]
      out[#out + 1] = fields[6]
    end
    next_before = seq
    cursor = seq - 1
  end
end
out[3] = next_before
return out
`);
