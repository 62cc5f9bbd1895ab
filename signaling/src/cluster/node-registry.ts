/**
 * Node liveness in a cluster. Every node writes a heartbeat every `NODE_TTL_MS / 3` (its info in
 * the hash `{prefix}:{nodes}` and a key with a PX TTL) and keeps an index of the rooms it has
 * members in. Every node also runs a reaper: a node whose heartbeat is older than `NODE_TTL_MS`
 * is dead, and exactly one survivor — the one that takes its lock and a fencing token — gets
 * `nodedead` with the dead node's rooms; it calls `reaped()` when it has dealt with them. A
 * clean `deregister()` is never reaped. Redis being unreachable is reported through `onError`
 * and never stops the registry: it registers again when Redis returns. Design: `docs/cluster.md`.
 */
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { SafeEmitter } from '../../../sfu/src/safe-emitter.js';
import {
  openRedisConnections,
  type RedisClient,
  type RedisConnections,
  type RedisTarget,
} from '../bus/redis-connections.js';
import { BusUnavailableError } from '../bus/room-bus.js';
import {
  BEAT_SCRIPT,
  CLAIM_SCRIPT,
  DEREGISTER_SCRIPT,
  LIST_SCRIPT,
  PRUNE_SCRIPT,
  REAPED_SCRIPT,
  registryKeys,
  type BeatStatus,
  type RegistryKeys,
} from './node-registry-scripts.js';

/** A node's info as its heartbeat writes it. */
export const nodeInfoSchema = z.object({
  nodeId: z.string(),
  /** Random per process start: tells a restarted node with the same id from its predecessor. */
  instanceId: z.string(),
  state: z.enum(['running', 'draining']),
  connections: z.number().int().nonnegative(),
  rooms: z.number().int().nonnegative(),
  startedAt: z.number(),
  /** Redis's time of the last heartbeat (epoch ms). */
  heartbeatAt: z.number(),
  drainDeadline: z.number().optional(),
  version: z.string(),
  /** When a survivor finished reaping the node (epoch ms, Redis's clock). */
  reapedAt: z.number().optional(),
});
export type NodeInfo = z.infer<typeof nodeInfoSchema>;

/** A node as `list()` reports it. */
export type NodeStatus = NodeInfo & {
  /** Its last heartbeat is at most `NODE_TTL_MS` old (on Redis's clock) and it was not reaped. */
  readonly alive: boolean;
};

/** What the node tells its heartbeat about itself. */
export interface NodeLoad {
  readonly state: NodeInfo['state'];
  readonly connections: number;
  readonly drainDeadline?: number;
}

/** A dead node, handed to the one survivor that must deal with it. */
export interface NodeDeadEvent {
  readonly nodeId: string;
  /** The rooms it had members in. */
  readonly rooms: string[];
  /** Grows with every claim: stamp writes made on the dead node's behalf with it; pass it to `reaped()`. */
  readonly fencingToken: number;
  /** Its last heartbeat. */
  readonly info: NodeInfo;
}

export interface NodeRegistryEvents {
  /** This node holds the dead node's lock: deal with its rooms, then call `reaped()`. */
  nodedead: [NodeDeadEvent];
  /**
   * This node's registration had gone from Redis (Redis lost its data, or a survivor reaped this
   * node while it could not reach Redis) and was written again, room index included. A survivor
   * may have treated this node's participants as disconnected: write their presence again.
   */
  reregistered: [];
}

export interface NodeRegistryOptions {
  readonly target: RedisTarget;
  /** No braces. */
  readonly nodeId: string;
  /** `REDIS_KEY_PREFIX`; no braces. */
  readonly keyPrefix: string;
  readonly version: string;
  /** `NODE_TTL_MS`: a node whose last heartbeat is older is dead. Heartbeats every third of it. */
  readonly nodeTtlMs: number;
  /** Read at every heartbeat. */
  readonly load: () => NodeLoad;
  /**
   * How long a survivor holds a dead node before another may claim it again (with a newer
   * token), should it never call `reaped()`. Default: the larger of `nodeTtlMs` and 60 s.
   */
  readonly lockTtlMs?: number;
  /** How long a dead node stays listed after its last heartbeat. Default: the larger of 10 × `nodeTtlMs` and 10 min. */
  readonly deadNodeRetentionMs?: number;
  readonly connectionName?: string;
  /** Failures of the heartbeat and the reaper (the first of each outage), listener errors. */
  readonly onError?: (error: unknown, what: string) => void;
}

/** Another live process registered the same node id. */
export class NodeIdInUseError extends Error {
  constructor(nodeId: string) {
    super(`node id ${nodeId} is in use by another live node`);
    this.name = 'NodeIdInUseError';
  }
}

/** Entries written per SADD when the room index is written again. */
const ROOMS_PER_COMMAND = 1000;

export class NodeRegistry extends SafeEmitter<NodeRegistryEvents> {
  readonly nodeId: string;
  readonly instanceId = randomUUID();
  readonly #connections: RedisConnections;
  readonly #keys: RegistryKeys;
  readonly #ttlMs: number;
  readonly #lockTtlMs: number;
  readonly #retentionMs: number;
  readonly #version: string;
  readonly #load: () => NodeLoad;
  readonly #onError: (error: unknown, what: string) => void;
  readonly #startedAt = Date.now();
  /** The rooms this node has members in, as it knows them; Redis's copy is rewritten from it. */
  readonly #rooms = new Set<string>();
  #registered = false;
  #roomsDirty = false;
  /** The reaper waits a TTL after start and after an outage: live nodes need a beat to show it. */
  #reapNotBefore = 0;
  #lastBeatOkAt = 0;
  /** The last heartbeat of an earlier instance of this node id, seen while waiting for it to be reaped. */
  #predecessorBeatAt: number | undefined;
  #failing = false;
  #beating: Promise<unknown> = Promise.resolve();
  #timer: NodeJS.Timeout | undefined;
  #started: { resolve: () => void; reject: (error: Error) => void } | undefined;
  #looping = false;
  #stopped = false;

  constructor(options: NodeRegistryOptions) {
    super((eventName, error) => this.#onError(error, `a ${eventName} listener`));
    if (/[{}]/.test(options.keyPrefix)) throw new RangeError('the Redis key prefix must not contain braces');
    if (/[{}]/.test(options.nodeId)) throw new RangeError('the node id must not contain braces');
    this.nodeId = options.nodeId;
    this.#keys = registryKeys(options.keyPrefix);
    this.#ttlMs = options.nodeTtlMs;
    this.#lockTtlMs = options.lockTtlMs ?? Math.max(options.nodeTtlMs, 60_000);
    this.#retentionMs = options.deadNodeRetentionMs ?? Math.max(10 * options.nodeTtlMs, 10 * 60_000);
    if (this.#retentionMs <= this.#ttlMs) throw new RangeError('deadNodeRetentionMs must exceed nodeTtlMs');
    this.#version = options.version;
    this.#load = options.load;
    this.#onError = options.onError ?? (() => {});
    this.#connections = openRedisConnections(options.target, options.connectionName ?? 'trading-room-registry');
    const { commands, subscriber } = this.#connections;
    commands.on('error', () => {}); // failures surface as failed heartbeats
    // The registry only sends commands: the subscriber connection is not needed.
    if (subscriber !== commands) {
      subscriber.on('error', () => {});
      subscriber.disconnect();
    }
  }

  /**
   * Registers this node and starts the heartbeat and the reaper. Resolves on the first heartbeat
   * written (it waits for Redis, and for an earlier instance of this node id to be reaped);
   * rejects with {@link NodeIdInUseError} when another live node has this id.
   */
  async start(): Promise<void> {
    if (this.#looping || this.#stopped) throw new Error('the node registry was started already');
    this.#looping = true;
    this.#reapNotBefore = Date.now() + this.#ttlMs;
    const started = new Promise<void>((resolve, reject) => {
      this.#started = { resolve, reject };
    });
    const { commands } = this.#connections;
    if (commands.status === 'ready') void this.#tick();
    else commands.once('ready', () => void this.#tick());
    await started;
  }

  /** Writes a heartbeat now (after a change of state, say); the loop keeps its own pace. */
  async heartbeat(): Promise<void> {
    await this.#nextBeat();
  }

  /**
   * Every node known to Redis, the dead ones included until a while after their last heartbeat.
   * Rejects with {@link BusUnavailableError} when Redis cannot be reached.
   */
  async list(): Promise<NodeStatus[]> {
    const { now, nodes } = await this.#read();
    return nodes.map((info) => ({ ...info, alive: this.#isAlive(info, now) }));
  }

  /** Adds a room to this node's room index. Never rejects: a failed write is repaired at the next heartbeat. */
  async trackRoom(roomId: string): Promise<void> {
    if (this.#rooms.has(roomId)) return;
    this.#rooms.add(roomId);
    await this.#writeRooms((client, key) => client.sadd(key, roomId));
  }

  /** Removes a room from this node's room index. Never rejects, like {@link trackRoom}. */
  async untrackRoom(roomId: string): Promise<void> {
    if (!this.#rooms.delete(roomId)) return;
    await this.#writeRooms((client, key) => client.srem(key, roomId));
  }

  /**
   * Runs one reaper pass now (the loop runs one after each heartbeat): claims every dead node
   * nobody holds and emits `nodedead` for each; prunes nodes dead for longer than the retention.
   * Resolves the events emitted. Claims nothing without a `nodedead` listener.
   */
  async sweep(): Promise<NodeDeadEvent[]> {
    const { now, nodes } = await this.#read();
    const claimed: NodeDeadEvent[] = [];
    for (const info of nodes) {
      if (this.#isAlive(info, now) || this.#isSelf(info)) continue;
      const keys = this.#keys.node(info.nodeId);
      if (now - info.heartbeatAt > this.#retentionMs) {
        await this.#command(() =>
          PRUNE_SCRIPT.run(
            this.#commands,
            [this.#keys.nodes, keys.alive, keys.lock, keys.rooms],
            [info.nodeId, this.#retentionMs],
          ),
        );
        continue;
      }
      if (info.reapedAt !== undefined || Date.now() < this.#reapNotBefore) continue;
      if (this.listenerCount('nodedead') === 0 || this.#stopped) continue;
      const claim = (await this.#command(() =>
        CLAIM_SCRIPT.run(
          this.#commands,
          [this.#keys.nodes, keys.alive, keys.lock, this.#keys.fence, keys.rooms],
          [info.nodeId, this.#ttlMs, this.#lockTtlMs],
        ),
      )) as [number, string, string[]] | null;
      if (!claim) continue;
      const [fencingToken, stored, rooms] = claim;
      const event: NodeDeadEvent = {
        nodeId: info.nodeId,
        rooms: [...rooms].sort(),
        fencingToken,
        info: nodeInfoSchema.parse(JSON.parse(stored)),
      };
      claimed.push(event);
      this.safeEmit('nodedead', event);
    }
    return claimed;
  }

  /**
   * Ends the claim of `nodedead`: the dead node's room index and lock go, its entry is marked
   * reaped. Resolves false (and changes nothing) when the token is stale: the lock expired and
   * another survivor may have claimed the node since.
   */
  async reaped(nodeId: string, fencingToken: number): Promise<boolean> {
    const keys = this.#keys.node(nodeId);
    const done = await this.#command(() =>
      REAPED_SCRIPT.run(this.#commands, [this.#keys.nodes, keys.lock, keys.rooms], [nodeId, fencingToken]),
    );
    return done === 1;
  }

  /**
   * Stops heartbeating without a word to Redis, as a crash would: survivors reap this node once
   * its heartbeat is older than the TTL. Safe to call twice.
   */
  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#looping = false;
    clearTimeout(this.#timer);
    this.#started?.reject(new BusUnavailableError('the node registry was stopped'));
    this.#started = undefined;
    this.#connections.disconnect();
  }

  /** Removes this node from Redis (a clean shutdown: never reaped), then stops. */
  async deregister(): Promise<void> {
    if (this.#stopped) return;
    this.#looping = false;
    clearTimeout(this.#timer);
    await this.#beating.catch(() => {}); // a heartbeat in flight must not write the entry again after
    try {
      const keys = this.#keys.node(this.nodeId);
      await this.#command(() =>
        DEREGISTER_SCRIPT.run(
          this.#commands,
          [this.#keys.nodes, keys.alive, keys.rooms],
          [this.nodeId, this.instanceId],
        ),
      );
    } finally {
      this.stop();
    }
  }

  /** Heartbeats run one at a time, in call order. */
  #nextBeat(): Promise<BeatStatus> {
    const beat = this.#beating.catch(() => {}).then(() => this.#beat());
    this.#beating = beat;
    return beat;
  }

  get #commands(): RedisClient {
    return this.#connections.commands;
  }

  /** One round of the loop: a heartbeat, then (when it was written) a reaper pass. */
  async #tick(): Promise<void> {
    this.#timer = undefined;
    let status: BeatStatus | undefined;
    try {
      status = await this.#nextBeat();
    } catch (error) {
      this.#report(error, 'the node heartbeat');
    }
    if (status !== undefined && status !== 'taken') {
      try {
        await this.sweep();
      } catch (error) {
        this.#report(error, 'the node reaper');
      }
    }
    if (!this.#looping) return;
    this.#timer = setTimeout(() => void this.#tick(), Math.max(1, Math.floor(this.#ttlMs / 3)));
    this.#timer.unref();
  }

  async #beat(): Promise<BeatStatus> {
    if (!this.#looping) throw new BusUnavailableError('the node registry is not running');
    const load = this.#load();
    const info: Omit<NodeInfo, 'heartbeatAt' | 'reapedAt'> = {
      nodeId: this.nodeId,
      instanceId: this.instanceId,
      state: load.state,
      connections: load.connections,
      rooms: this.#rooms.size,
      startedAt: this.#startedAt,
      version: this.#version,
      drainDeadline: load.drainDeadline,
    };
    // The script appends `,"heartbeatAt":<Redis time>}`.
    const prefix = JSON.stringify(info).slice(0, -1);
    const keys = this.#keys.node(this.nodeId);
    const [reported, heartbeatAt] = (await this.#command(() =>
      BEAT_SCRIPT.run(
        this.#commands,
        [this.#keys.nodes, keys.alive],
        [this.nodeId, this.instanceId, prefix, this.#ttlMs, this.#registered ? '0' : '1'],
      ),
    )) as [BeatStatus, number];
    const now = Date.now();
    if (this.#lastBeatOkAt > 0 && now - this.#lastBeatOkAt > this.#ttlMs) this.#reapNotBefore = now + this.#ttlMs;
    this.#lastBeatOkAt = now;
    this.#failing = false;
    let status = reported;
    if (status === 'predecessor') {
      // The earlier instance must stay silent for a TTL to be dead; a heartbeat means a duplicate.
      if (this.#predecessorBeatAt !== undefined && heartbeatAt !== this.#predecessorBeatAt) status = 'taken';
      this.#predecessorBeatAt ??= heartbeatAt;
    }
    if (status === 'taken') {
      const error = new NodeIdInUseError(this.nodeId);
      if (this.#started) this.#started.reject(error);
      else this.#onError(error, 'the node heartbeat');
      this.#started = undefined;
      if (!this.#registered) this.stop();
      return status;
    }
    if (status === 'predecessor') return status;
    if (!this.#registered || status === 'lost' || this.#roomsDirty) await this.#rewriteRooms();
    if (status === 'lost') this.#reapNotBefore = now + this.#ttlMs;
    const first = !this.#registered;
    this.#registered = true;
    if (first) {
      this.#started?.resolve();
      this.#started = undefined;
    } else if (status === 'lost') {
      this.safeEmit('reregistered');
    }
    return status;
  }

  /** Writes the whole room index again from this node's own set. */
  async #rewriteRooms(): Promise<void> {
    this.#roomsDirty = false;
    const key = this.#keys.node(this.nodeId).rooms;
    const transaction = this.#commands.multi().del(key);
    const rooms = [...this.#rooms];
    for (let i = 0; i < rooms.length; i += ROOMS_PER_COMMAND)
      transaction.sadd(key, ...rooms.slice(i, i + ROOMS_PER_COMMAND));
    try {
      await this.#command(() => transaction.exec());
    } catch (error) {
      this.#roomsDirty = true;
      throw error;
    }
  }

  async #writeRooms(write: (client: RedisClient, key: string) => Promise<unknown>): Promise<void> {
    // Before registration the set is written whole by the first heartbeat (an earlier instance
    // of this id may still own the key until it is reaped).
    if (!this.#registered || this.#stopped) return;
    try {
      await this.#command(() => write(this.#commands, this.#keys.node(this.nodeId).rooms));
    } catch (error) {
      this.#roomsDirty = true;
      this.#report(error, 'the node room index');
    }
  }

  async #read(): Promise<{ now: number; nodes: NodeInfo[] }> {
    const reply = (await this.#command(() => LIST_SCRIPT.run(this.#commands, [this.#keys.nodes], []))) as [
      number,
      ...string[],
    ];
    const [now, ...fields] = reply;
    const nodes: NodeInfo[] = [];
    for (let i = 1; i < fields.length; i += 2) {
      try {
        nodes.push(nodeInfoSchema.parse(JSON.parse(fields[i] as string)));
      } catch (error) {
        this.#onError(error, `reading the entry of node ${fields[i - 1]}`);
      }
    }
    return { now, nodes };
  }

  #isAlive(info: NodeInfo, now: number): boolean {
    return info.reapedAt === undefined && now - info.heartbeatAt <= this.#ttlMs;
  }

  #isSelf(info: NodeInfo): boolean {
    return info.nodeId === this.nodeId && info.instanceId === this.instanceId;
  }

  /** Reports the first failure of an outage; the next successful heartbeat ends the outage. */
  #report(error: unknown, what: string): void {
    if (this.#failing || this.#stopped) return;
    this.#failing = true;
    this.#onError(error, what);
  }

  async #command<T>(run: () => Promise<T>): Promise<T> {
    if (this.#stopped) throw new BusUnavailableError('the node registry is stopped');
    try {
      return await run();
    } catch (error) {
      throw new BusUnavailableError('Redis did not answer', 1000, { cause: error });
    }
  }
}
