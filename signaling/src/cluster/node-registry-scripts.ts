/**
 * The Redis key layout and Lua scripts of the node registry. Every key shares the hash tag
 * `{nodes}`, so each script touches one slot and runs on a Redis Cluster too (the registry is a
 * few writes per node per second at most: one slot carries it easily). Ages are measured on
 * Redis's clock, never a node's: a node's heartbeat time is written by the script itself.
 * `docs/cluster.md` describes the layout.
 */
import { LuaScript, NOW_MS } from '../bus/redis-scripts.js';

/** The registry's keys under a prefix (no braces in it). */
export interface RegistryKeys {
  /** Hash nodeId → node info JSON (heartbeatAt last, reapedAt appended once reaped). */
  readonly nodes: string;
  /** Counter of fencing tokens, one INCR per claim of a dead node. */
  readonly fence: string;
  /** The keys of one node. */
  node(nodeId: string): NodeKeys;
}

export interface NodeKeys {
  /** String: the live instance's id, with a PX TTL of `NODE_TTL_MS` from its last heartbeat. */
  readonly alive: string;
  /** Set of the room ids the node has members in. */
  readonly rooms: string;
  /** The reaper's lock on the node once dead: holds the fencing token, PX TTL. */
  readonly lock: string;
}

export function registryKeys(prefix: string): RegistryKeys {
  const base = `${prefix}:{nodes}`;
  return {
    nodes: base,
    fence: `${base}:fence`,
    node: (nodeId) => ({
      alive: `${base}:alive:${nodeId}`,
      rooms: `${base}:rooms:${nodeId}`,
      lock: `${base}:reaper:${nodeId}`,
    }),
  };
}

/** What a heartbeat found: see {@link BEAT_SCRIPT}. */
export type BeatStatus = 'ok' | 'lost' | 'predecessor' | 'taken';

/**
 * Writes one heartbeat. KEYS: nodes, alive. ARGV: node id, instance id, info JSON without its
 * closing brace, TTL ms, first ('1' before the instance is registered). Returns `{status,
 * heartbeatAt}`. While another instance of the node id is registered and not reaped, nothing is
 * written: `predecessor` on a first beat (with that instance's last heartbeat: a live duplicate
 * shows by its heartbeat moving on), `taken` later when that instance is alive. `lost`: the entry
 * had gone or been reaped since the last beat and was written again. Else `ok`.
 */
export const BEAT_SCRIPT = new LuaScript(`${NOW_MS}
local now = now_ms()
local first = ARGV[5] == '1'
local status = 'ok'
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  local info = cjson.decode(old)
  local other = info.instanceId ~= ARGV[2]
  if other and info.reapedAt == nil then
    if first then return {'predecessor', info.heartbeatAt} end
    local holder = redis.call('GET', KEYS[2])
    if holder and holder ~= ARGV[2] then return {'taken', info.heartbeatAt} end
  end
  if not first and (other or info.reapedAt ~= nil) then status = 'lost' end
elseif not first then
  status = 'lost'
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3] .. ',"heartbeatAt":' .. now .. '}')
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[4])
return {status, now}
`);

/** Every entry with Redis's time. KEYS: nodes. Returns `{now, nodeId, info, nodeId, info, …}`. */
export const LIST_SCRIPT = new LuaScript(`${NOW_MS}
local out = redis.call('HGETALL', KEYS[1])
table.insert(out, 1, now_ms())
return out
`);

/**
 * Claims a dead node for this survivor: only when its heartbeat is older than the TTL, its alive
 * key is gone, it is not reaped and nobody holds its lock. KEYS: nodes, alive, lock, fence,
 * rooms. ARGV: node id, TTL ms, lock TTL ms. Returns `{token, info, rooms}` or nil.
 */
export const CLAIM_SCRIPT = new LuaScript(`${NOW_MS}
local stored = redis.call('HGET', KEYS[1], ARGV[1])
if not stored then return false end
local info = cjson.decode(stored)
if info.reapedAt ~= nil then return false end
if redis.call('EXISTS', KEYS[2]) == 1 then return false end
if now_ms() - info.heartbeatAt <= tonumber(ARGV[2]) then return false end
if redis.call('EXISTS', KEYS[3]) == 1 then return false end
local token = redis.call('INCR', KEYS[4])
redis.call('SET', KEYS[3], token, 'NX', 'PX', ARGV[3])
return {token, stored, redis.call('SMEMBERS', KEYS[5])}
`);

/**
 * Ends a claim: refused (0) unless the lock still holds `token`; otherwise drops the lock and
 * the room index and marks the entry reaped (kept for the record until pruned). KEYS: nodes,
 * lock, rooms. ARGV: node id, token.
 */
export const REAPED_SCRIPT = new LuaScript(`${NOW_MS}
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[2], KEYS[3])
local stored = redis.call('HGET', KEYS[1], ARGV[1])
if stored then
  redis.call('HSET', KEYS[1], ARGV[1], string.sub(stored, 1, -2) .. ',"reapedAt":' .. now_ms() .. '}')
end
return 1
`);

/**
 * Forgets a node whose last heartbeat is older than the retention, reaped or not. KEYS: nodes,
 * alive, lock, rooms. ARGV: node id, retention ms. Returns 1 when pruned.
 */
export const PRUNE_SCRIPT = new LuaScript(`${NOW_MS}
local stored = redis.call('HGET', KEYS[1], ARGV[1])
if not stored or redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if now_ms() - cjson.decode(stored).heartbeatAt <= tonumber(ARGV[2]) then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[3], KEYS[4])
return 1
`);

/**
 * Removes an instance's own entries (a clean shutdown: never reaped). KEYS: nodes, alive, rooms.
 * ARGV: node id, instance id. Returns 1 when the entry was this instance's.
 */
export const DEREGISTER_SCRIPT = new LuaScript(`
local stored = redis.call('HGET', KEYS[1], ARGV[1])
if not stored or cjson.decode(stored).instanceId ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
if redis.call('GET', KEYS[2]) == ARGV[2] then redis.call('DEL', KEYS[2]) end
redis.call('DEL', KEYS[3])
return 1
`);
