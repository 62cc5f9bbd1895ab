/**
 * Traffic of the Redis servers of a benchmark, from `INFO stats`: bytes Redis wrote to its
 * clients (`total_net_output_bytes`), summed over every server given (the masters of a Cluster).
 * One plain connection per server, opened before the first reading, so connection set-up never
 * lands inside a measured interval; the one `INFO` reply of the interval that Redis counts (the
 * opening reading's, written after its figure was taken) is subtracted. Redis counts a few bytes
 * more per `INFO` than the reply's RESP framing (4 on Redis 7.0); `open` measures that on a quiet
 * server, so open the reader before anything else talks to Redis.
 */
import { Redis } from 'ioredis';

export interface RedisTraffic {
  /** Bytes written to clients (replies, pub/sub messages), all servers together, since start. */
  readonly outputBytes: number;
  /** Bytes read from clients, all servers together, since start. */
  readonly inputBytes: number;
  /** Bytes of the `INFO` replies this reading produced (counted by Redis in the next interval). */
  readonly ownReplyBytes: number;
}

export class RedisStatsReader {
  readonly #connections: Redis[];
  /** Per connection: bytes Redis counts for one `INFO stats` beyond its framed reply. */
  #extra: number[];

  private constructor(connections: Redis[]) {
    this.#connections = connections;
    this.#extra = connections.map(() => 0);
  }

  /** Opens one connection to each of `ports` on 127.0.0.1. */
  static async open(ports: readonly number[]): Promise<RedisStatsReader> {
    const connections = ports.map(
      (port) =>
        new Redis({
          host: '127.0.0.1',
          port,
          enableReadyCheck: false,
          maxRetriesPerRequest: 1,
          lazyConnect: true,
        }),
    );
    await Promise.all(connections.map((c) => c.connect()));
    const reader = new RedisStatsReader(connections);
    await reader.#calibrate();
    return reader;
  }

  async read(): Promise<RedisTraffic> {
    const replies = await Promise.all(this.#connections.map((c) => c.info('stats')));
    let outputBytes = 0;
    let inputBytes = 0;
    let ownReplyBytes = 0;
    replies.forEach((reply, i) => {
      outputBytes += field(reply, 'total_net_output_bytes');
      inputBytes += field(reply, 'total_net_input_bytes');
      ownReplyBytes += framed(reply) + (this.#extra[i] ?? 0);
    });
    return { outputBytes, inputBytes, ownReplyBytes };
  }

  /** Back-to-back readings on quiet servers: what one reading costs beyond its framed reply. */
  async #calibrate(): Promise<void> {
    const samples = await Promise.all(
      this.#connections.map(async (c) => {
        let previous = await c.info('stats');
        let least = Number.POSITIVE_INFINITY;
        for (let i = 0; i < 3; i++) {
          const next = await c.info('stats');
          const counted = field(next, 'total_net_output_bytes') - field(previous, 'total_net_output_bytes');
          least = Math.min(least, counted - framed(previous));
          previous = next;
        }
        return Math.max(0, Math.min(least, 64));
      }),
    );
    this.#extra = samples;
  }

  /**
   * Calls per command so far (`INFO commandstats`), all servers together, lower-case names
   * (`evalsha`, `publish`, `spublish`, …). Not part of the byte accounting: read it outside an
   * interval whose bytes count.
   */
  async commandCalls(): Promise<Map<string, number>> {
    const replies = await Promise.all(this.#connections.map((c) => c.info('commandstats')));
    const calls = new Map<string, number>();
    for (const reply of replies) {
      for (const match of reply.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
        const name = match[1] as string;
        calls.set(name, (calls.get(name) ?? 0) + Number(match[2]));
      }
    }
    return calls;
  }

  /** Output bytes between two readings, the earlier reading's own replies left out. */
  static outputBetween(before: RedisTraffic, after: RedisTraffic): number {
    return after.outputBytes - before.outputBytes - before.ownReplyBytes;
  }

  /**
   * Empties every server (`FLUSHALL`): a benchmark that runs several times on one Redis starts
   * each run without the keys (presence, node registry) an earlier one left. Outside any interval.
   */
  async flushAll(): Promise<void> {
    await Promise.all(this.#connections.map((c) => c.flushall()));
  }

  close(): void {
    for (const c of this.#connections) c.disconnect();
  }
}

/** Bytes of `reply` as a RESP bulk string. */
function framed(reply: string): number {
  const length = Buffer.byteLength(reply);
  return `$${length}\r\n`.length + length + 2;
}

function field(info: string, name: string): number {
  const match = new RegExp(`^${name}:(\\d+)`, 'm').exec(info);
  if (!match) throw new Error(`INFO stats has no ${name}`);
  return Number(match[1]);
}
