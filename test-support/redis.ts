/**
 * A real Redis for tests: Debian's `redis-server` on free loopback ports, in a temporary
 * directory, without persistence — one server (`TestRedis`), a Sentinel watching it
 * (`startRedisSentinel`) or a 3-master Redis Cluster (`startRedisCluster`). `scripts/test.sh`
 * installs the package.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Cluster, Redis } from 'ioredis';
import { afterAll, beforeAll } from 'vitest';
import type { RedisClient, RedisTarget } from '../signaling/src/bus/redis-connections.js';

export class TestRedis {
  readonly port: number;
  readonly #dir: string;
  #process: ChildProcess | undefined;

  private constructor(port: number, dir: string) {
    this.port = port;
    this.#dir = dir;
  }

  static async start(): Promise<TestRedis> {
    const redis = new TestRedis(await freePort(), mkdtempSync(join(tmpdir(), 'trading-room-redis-')));
    await redis.resume();
    return redis;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Starts (again) on the same port, empty. */
  async resume(): Promise<void> {
    if (this.#process) return;
    this.#process = await startServer(this.port, this.#dir, []);
  }

  /** Stops the server (data is lost: no persistence). */
  async stop(): Promise<void> {
    const child = this.#process;
    this.#process = undefined;
    if (child) await kill(child);
  }

  /** Freezes the server (SIGSTOP): connections stay open, nothing is answered. */
  pause(): void {
    this.#process?.kill('SIGSTOP');
  }

  /** Lets a paused server run again (SIGCONT). */
  unpause(): void {
    this.#process?.kill('SIGCONT');
  }

  async close(): Promise<void> {
    await this.stop();
    rmSync(this.#dir, { recursive: true, force: true });
  }
}

/** A Sentinel on loopback watching one master. */
export interface TestRedisSentinel {
  readonly host: string;
  readonly port: number;
  /** The name the master is known by. */
  readonly name: string;
  close(): Promise<void>;
}

/** Starts `redis-server --sentinel` monitoring `master` as `name`. */
export async function startRedisSentinel(master: TestRedis, name = 'trading-room'): Promise<TestRedisSentinel> {
  const dir = mkdtempSync(join(tmpdir(), 'trading-room-redis-sentinel-'));
  const port = await freePort();
  const config = join(dir, 'sentinel.conf'); // Sentinel rewrites its configuration file
  writeFileSync(config, `sentinel monitor ${name} 127.0.0.1 ${master.port} 1\n`);
  const child = spawn('redis-server', [config, '--sentinel', '--port', String(port), '--bind', '127.0.0.1'], {
    stdio: 'ignore',
  });
  const close = async (): Promise<void> => {
    await kill(child);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitFor(async () => {
      const address = await command(port, ['sentinel', 'get-master-addr-by-name', name]);
      return Array.isArray(address) && address[1] === String(master.port);
    }, 'the Sentinel to know its master');
  } catch (error) {
    await close();
    throw error;
  }
  return { host: '127.0.0.1', port, name, close };
}

/** A Redis Cluster of three masters (no replicas) on loopback. */
export interface TestRedisCluster {
  /** The masters' addresses: seeds for a Cluster client. */
  readonly nodes: readonly { host: string; port: number }[];
  close(): Promise<void>;
}

/** Starts three cluster-enabled servers and joins them with `redis-cli --cluster create`. */
export async function startRedisCluster(): Promise<TestRedisCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'trading-room-redis-cluster-'));
  const children: ChildProcess[] = [];
  const close = async (): Promise<void> => {
    await Promise.all(children.map(kill));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    // Each master needs a port for clients and one for the cluster bus.
    const ports = await freePorts(6);
    const nodes = [0, 1, 2].map((i) => ({ host: '127.0.0.1', port: ports[i] as number }));
    for (const [i, node] of nodes.entries()) {
      const clusterFlags = ['--cluster-enabled', 'yes', '--cluster-port', String(ports[i + 3])];
      const configFlags = ['--cluster-config-file', `nodes-${node.port}.conf`];
      children.push(await startServer(node.port, dir, [...clusterFlags, ...configFlags]));
    }
    const addresses = nodes.map((n) => `${n.host}:${n.port}`);
    await promisify(execFile)('redis-cli', [
      '--cluster',
      'create',
      ...addresses,
      '--cluster-replicas',
      '0',
      '--cluster-yes',
    ]);
    await waitFor(async () => {
      const infos = await Promise.all(nodes.map((n) => command(n.port, ['cluster', 'info'])));
      return infos.every((info) => String(info).includes('cluster_state:ok'));
    }, 'the Redis Cluster to agree');
    return { nodes, close };
  } catch (error) {
    await close();
    throw error;
  }
}

/** Spawns `redis-server` on `port` and resolves once it answers PING. */
async function startServer(port: number, dir: string, extra: string[]): Promise<ChildProcess> {
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, ...extra],
    { stdio: 'ignore' },
  );
  await waitFor(async () => (await command(port, ['ping'])) === 'PONG', `redis-server on port ${port}`);
  return child;
}

/** One command on a short-lived connection; undefined while the server refuses connections. */
async function command(port: number, args: [string, ...string[]]): Promise<unknown> {
  const probe = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  probe.on('error', () => {}); // refused while the server starts; connect() rejects too
  try {
    await probe.connect();
    return await probe.call(...args);
  } catch {
    return undefined;
  } finally {
    probe.disconnect();
  }
}

async function waitFor(ready: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await ready())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

/** `n` distinct free ports. */
async function freePorts(n: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < n) ports.add(await freePort());
  return [...ports];
}

/** A Redis deployment that a describe block's tests run against (see `useTestRedis`). */
export interface RedisUnderTest {
  /** Where the code under test connects. */
  target(): RedisTarget;
  /** A plain client of the deployment, for looking at keys and publishing by hand. */
  client(): RedisClient;
  /** How many connections subscribe to `channel` (sharded ones on a Cluster, where a classic one is an error). */
  subscriptions(channel: string): Promise<number>;
}

/** Starts a single Redis before the enclosing describe block's tests and closes it after them. */
export function useTestRedis(): RedisUnderTest & { server(): TestRedis } {
  let server: TestRedis;
  let client: Redis;
  beforeAll(async () => {
    server = await TestRedis.start();
    client = new Redis(server.url);
    client.on('error', () => {}); // refused while a test stops the server
  });
  afterAll(async () => {
    client.disconnect();
    await server.close();
  });
  return {
    server: () => server,
    target: () => ({ mode: 'single', url: server.url }),
    client: () => client,
    subscriptions: async (channel) => Number(((await client.pubsub('NUMSUB', channel)) as [string, number])[1]),
  };
}

/** Starts a 3-master Redis Cluster before the enclosing describe block's tests and closes it after them. */
export function useTestRedisCluster(): RedisUnderTest {
  let cluster: TestRedisCluster;
  let client: Cluster;
  beforeAll(async () => {
    cluster = await startRedisCluster();
    client = new Cluster(cluster.nodes.map((n) => ({ ...n })));
  });
  afterAll(async () => {
    client.disconnect();
    await cluster.close();
  });
  return {
    target: () => ({ mode: 'cluster', nodes: cluster.nodes }),
    client: () => client,
    subscriptions: async (channel) => {
      let total = 0;
      for (const node of client.nodes('master')) {
        const classic = (await node.pubsub('NUMSUB', channel)) as [string, number];
        if (Number(classic[1]) !== 0) throw new Error(`${channel} has a classic subscriber on a Cluster`);
        total += Number(((await node.pubsub('SHARDNUMSUB', channel)) as [string, number])[1]);
      }
      return total;
    },
  };
}
