/**
 * The room-wide list of producers in a cluster: which producers a room has, on which node each
 * is published, its kind, source and whether it is paused. One Redis hash per room
 * (`{prefix}:{room:ID}:producers`, the room's hash tag, so a Redis Cluster keeps it beside the
 * room's other keys), field = producer id, value = JSON. The origin node writes its producers;
 * a removal is a single `HDEL`, so when several survivors clean up after a dead node exactly one
 * of them learns it removed an entry (and announces `producer.removed`).
 */
import { z } from 'zod';
import { openRedisConnections, type RedisClient, type RedisTarget } from '../bus/redis-connections.js';
import { BusUnavailableError } from '../bus/room-bus.js';
import { mediaKindSchema, mediaSourceSchema } from '../protocol/common.js';

export const directoryEntrySchema = z.object({
  producerId: z.string(),
  participantId: z.string(),
  kind: mediaKindSchema,
  source: mediaSourceSchema,
  paused: z.boolean(),
  /** The node the producer is published on (its origin). */
  nodeId: z.string(),
  /** That node's process (its registry `instanceId`): a restarted node's old producers are gone. */
  instanceId: z.string().optional(),
});

/** One producer of a room, as the directory holds it. */
export type DirectoryEntry = z.infer<typeof directoryEntrySchema>;

/** Options of {@link ProducerDirectory}. */
export interface ProducerDirectoryOptions {
  readonly target: RedisTarget;
  /** `REDIS_KEY_PREFIX`. */
  readonly keyPrefix: string;
  readonly connectionName: string;
}

/** How long a directory command may take before it counts as Redis not answering. */
const COMMAND_TIMEOUT_MS = 2000;

export class ProducerDirectory {
  readonly #client: RedisClient;
  readonly #disconnect: () => void;
  readonly #prefix: string;

  constructor(options: ProducerDirectoryOptions) {
    const connections = openRedisConnections(options.target, options.connectionName);
    connections.commands.on('error', () => {}); // failures show as rejected commands
    if (connections.subscriber !== connections.commands) {
      connections.subscriber.on('error', () => {});
      connections.subscriber.disconnect(); // commands only
    }
    this.#client = connections.commands;
    this.#disconnect = () => connections.disconnect();
    this.#prefix = options.keyPrefix;
  }

  /** Adds (or replaces) a producer of the room. */
  async put(roomId: string, entry: DirectoryEntry): Promise<void> {
    await this.#run(() => this.#client.hset(this.#key(roomId), entry.producerId, JSON.stringify(entry)));
  }

  /** Removes a producer; resolves whether this call removed it (false when it was gone already). */
  async remove(roomId: string, producerId: string): Promise<boolean> {
    return (await this.#run(() => this.#client.hdel(this.#key(roomId), producerId))) === 1;
  }

  /** Marks a producer paused or resumed; no-op when it is gone. */
  async setPaused(roomId: string, producerId: string, paused: boolean): Promise<void> {
    const entry = await this.get(roomId, producerId);
    if (entry && entry.paused !== paused) await this.put(roomId, { ...entry, paused });
  }

  /** A producer of the room, undefined when unknown. */
  async get(roomId: string, producerId: string): Promise<DirectoryEntry | undefined> {
    const value = await this.#run(() => this.#client.hget(this.#key(roomId), producerId));
    return value === null ? undefined : parseEntry(value);
  }

  /** Every producer of the room (unreadable entries left out). */
  async list(roomId: string): Promise<DirectoryEntry[]> {
    const values = await this.#run(() => this.#client.hvals(this.#key(roomId)));
    return values.flatMap((value) => parseEntry(value) ?? []);
  }

  /** The ids of the room's producers (entries unreadable or not). */
  async producerIds(roomId: string): Promise<Set<string>> {
    return new Set(await this.#run(() => this.#client.hkeys(this.#key(roomId))));
  }

  close(): void {
    this.#disconnect();
  }

  #key(roomId: string): string {
    return `${this.#prefix}:{room:${roomId}}:producers`;
  }

  async #run<T>(command: () => Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new BusUnavailableError('Redis did not answer')), COMMAND_TIMEOUT_MS);
    });
    try {
      return await Promise.race([command(), timeout]);
    } catch (error) {
      if (error instanceof BusUnavailableError) throw error;
      throw new BusUnavailableError('the producer directory is unavailable', undefined, { cause: error });
    } finally {
      clearTimeout(timer);
    }
  }
}

function parseEntry(value: string): DirectoryEntry | undefined {
  try {
    return directoryEntrySchema.parse(JSON.parse(value));
  } catch {
    return undefined;
  }
}
