import { createHmac, randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import net from 'node:net';
import { crc32 } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { SfuError } from '../src/errors.js';
import {
  RestartBackoff,
  rtcPortCandidates,
  WorkerPool,
  type PooledWorker,
  type PoolWorkerDiedEvent,
  type PoolWorkerRestartedEvent,
} from '../src/worker-pool.js';
import { loadConfig } from '../../signaling/src/config.js';
import { testLogger, waitFor } from '../../test-support/rtp.js';

/** A pool of `numWorkers` on loopback and ephemeral ports, restarting quickly. */
function createPool(numWorkers: number): Promise<WorkerPool> {
  return WorkerPool.create({
    numWorkers,
    listenIp: '127.0.0.1',
    rtcBasePort: 0,
    portRange: { min: 20000, max: 59999 },
    restartBackoff: { initialMs: 200, maxMs: 2000, stableAfterMs: 60_000 },
    logger: testLogger,
  });
}

describe('RestartBackoff', () => {
  it('doubles up to the ceiling and starts over after a stable run', () => {
    const backoff = new RestartBackoff({ initialMs: 500, maxMs: 30_000, stableAfterMs: 60_000 });
    const delays = Array.from({ length: 8 }, () => backoff.next(1000));
    expect(delays).toEqual([500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000]);
    expect(backoff.next(0)).toBe(30_000); // a failed start is not stable
    expect(backoff.next(60_000)).toBe(500);
    expect(backoff.next(10)).toBe(1000);
  });
});

/** The process's SIGTERM and SIGINT listeners now. */
function signalListeners(): Record<'SIGTERM' | 'SIGINT', NodeJS.SignalsListener[]> {
  return { SIGTERM: process.listeners('SIGTERM'), SIGINT: process.listeners('SIGINT') };
}

describe('WorkerPool', () => {
  let pool: WorkerPool;
  const died: PoolWorkerDiedEvent[] = [];
  const restarted: PoolWorkerRestartedEvent[] = [];
  /** The application's own drain handler, there before the pool starts. */
  const drainOnSignal = (): void => undefined;
  let signalsBefore: ReturnType<typeof signalListeners>;

  beforeAll(async () => {
    process.on('SIGTERM', drainOnSignal);
    process.on('SIGINT', drainOnSignal);
    signalsBefore = signalListeners();
    pool = await createPool(2);
    pool.on('workerdied', (event) => died.push(event));
    pool.on('workerrestarted', (event) => restarted.push(event));
  });

  afterAll(async () => {
    await pool.close();
    process.off('SIGTERM', drainOnSignal);
    process.off('SIGINT', drainOnSignal);
  });

  it('leaves no SIGTERM or SIGINT listener of mediasoup behind, and keeps the process’s own', () => {
    expect(signalListeners()).toEqual(signalsBefore);
    expect(signalsBefore.SIGTERM).toContain(drainOnSignal);
    expect(signalsBefore.SIGINT).toContain(drainOnSignal);
  });

  it('starts the workers, each with a WebRtcServer on its own ephemeral UDP and TCP ports', async () => {
    expect(pool.size).toBe(2);
    const workers = pool.alive;
    expect(workers.map((w) => w.index)).toEqual([0, 1]);
    for (const w of workers) {
      expect(w.udpPort).toBeGreaterThanOrEqual(20000);
      expect(w.tcpPort).toBeGreaterThanOrEqual(20000);
      const dump = await w.webRtcServer.dump();
      expect(dump.udpSockets).toEqual([{ ip: '127.0.0.1', port: w.udpPort }]);
      expect(dump.tcpServers).toEqual([{ ip: '127.0.0.1', port: w.tcpPort }]);
    }
    expect(new Set(workers.map((w) => w.udpPort)).size).toBe(2);
  });

  it('picks the least-loaded worker, and avoids the ones asked to when it can', async () => {
    const first = pool.pick();
    const router = await first.worker.createRouter();
    expect(first.routerCount).toBe(1);
    const second = pool.pick();
    expect(second.index).not.toBe(first.index);
    expect(pool.pick(new Set([second.index])).index).toBe(first.index);
    expect(pool.pick(new Set([0, 1])).index).toBe(second.index); // all avoided: least loaded anyway
    router.close();
    expect(first.routerCount).toBe(0);
  });

  it('restarts a worker that dies, on the same index', async () => {
    const victim = pool.alive[1]!;
    process.kill(victim.pid, 'SIGKILL');
    await waitFor(() => restarted.length === 1, 'the worker restart');

    expect(died).toMatchObject([{ workerIndex: 1, pid: victim.pid }]);
    expect(restarted[0]!.workerIndex).toBe(1);
    expect(restarted[0]!.pid).not.toBe(victim.pid);
    expect(pool.restarts).toBe(1);
    expect(pool.alive.map((w) => w.index)).toEqual([0, 1]);
    expect(victim.alive).toBe(false);
    const router = await pool.alive[1]!.worker.createRouter();
    expect(router.closed).toBe(false);
    router.close();
  });

  it('restarts a worker closed behind its back, like a death, again without signal listeners', async () => {
    const victim = pool.alive[0]!;
    victim.worker.close();
    await waitFor(() => restarted.length === 2, 'the restart of the closed worker');

    expect(died).toHaveLength(2);
    expect(died[1]).toMatchObject({ workerIndex: 0, pid: victim.pid });
    expect(died[1]!.error.message).toMatch(/closed unexpectedly/);
    expect(restarted[1]!.workerIndex).toBe(0);
    expect(restarted[1]!.pid).not.toBe(victim.pid);
    expect(pool.restarts).toBe(2);
    expect(pool.alive.map((w) => w.index)).toEqual([0, 1]);
    const router = await pool.alive[0]!.worker.createRouter();
    expect(router.closed).toBe(false);
    router.close();
    // Both restarted workers (after the death above and after this close) removed theirs too.
    expect(signalListeners()).toEqual(signalsBefore);
  });

  it('reports no worker once closed, and closes twice safely', async () => {
    const other = await createPool(1);
    const worker = other.alive[0]!.worker;
    await Promise.all([other.close(), other.close()]);
    expect(worker.closed).toBe(true);
    expect(worker.subprocessClosed).toBe(true);
    expect(() => other.pick()).toThrow(SfuError);
  });
});

describe('rtcPortCandidates', () => {
  it('steps by the pool size from base + index, previous port first, never past 65535', () => {
    expect(rtcPortCandidates(40_000, 1, 2).slice(0, 4)).toEqual([40_001, 40_003, 40_005, 40_007]);
    expect(rtcPortCandidates(40_000, 1, 2, 40_005).slice(0, 4)).toEqual([40_005, 40_001, 40_003, 40_007]);
    expect(rtcPortCandidates(40_000, 0, 3)).toHaveLength(100);
    expect(rtcPortCandidates(65_530, 0, 4)).toEqual([65_530, 65_534]);
  });
});

/**
 * A STUN Binding Request (RFC 5389) as an ICE agent sends it to a transport of the server:
 * USERNAME `serverUfrag:clientUfrag`, PRIORITY, ICE-CONTROLLING, MESSAGE-INTEGRITY keyed with
 * the transport's ICE password, FINGERPRINT.
 */
function stunBindingRequest(ice: { usernameFragment: string; password: string }): Buffer {
  const attribute = (type: number, value: Buffer): Buffer => {
    const header = Buffer.alloc(4);
    header.writeUInt16BE(type, 0);
    header.writeUInt16BE(value.length, 2);
    return Buffer.concat([header, value, Buffer.alloc((4 - (value.length % 4)) % 4)]);
  };
  const header = (bodyLength: number): Buffer => {
    const h = Buffer.alloc(20);
    h.writeUInt16BE(0x0001, 0); // Binding Request
    h.writeUInt16BE(bodyLength, 2);
    h.writeUInt32BE(0x2112a442, 4); // magic cookie
    transactionId.copy(h, 8);
    return h;
  };
  const transactionId = randomBytes(12);
  const priority = Buffer.alloc(4);
  priority.writeUInt32BE(0x6e001eff, 0);
  let body = Buffer.concat([
    attribute(0x0006, Buffer.from(`${ice.usernameFragment}:client`)),
    attribute(0x0024, priority),
    attribute(0x802a, randomBytes(8)),
  ]);
  const integrity = createHmac('sha1', ice.password)
    .update(Buffer.concat([header(body.length + 24), body]))
    .digest();
  body = Buffer.concat([body, attribute(0x0008, integrity)]);
  const fingerprint = Buffer.alloc(4);
  fingerprint.writeUInt32BE((crc32(Buffer.concat([header(body.length + 8), body])) ^ 0x5354554e) >>> 0, 0);
  body = Buffer.concat([body, attribute(0x8028, fingerprint)]);
  return Buffer.concat([header(body.length), body]);
}

/** The STUN message type of the first answer to `request` on UDP `port` of loopback. */
async function stunOverUdp(port: number, request: Buffer): Promise<number> {
  const socket = dgram.createSocket('udp4');
  try {
    const answer = new Promise<Buffer>((resolve) => socket.once('message', resolve));
    socket.send(request, port, '127.0.0.1');
    return (await answer).readUInt16BE(0);
  } finally {
    socket.close();
  }
}

/** The same over TCP, framed as ICE-TCP frames it (RFC 4571: a 2-byte length before each packet). */
async function stunOverTcp(port: number, request: Buffer): Promise<number> {
  const socket = net.connect(port, '127.0.0.1');
  try {
    const answer = new Promise<Buffer>((resolve, reject) => {
      socket.once('data', resolve);
      socket.once('error', reject);
    });
    const length = Buffer.alloc(2);
    length.writeUInt16BE(request.length, 0);
    socket.write(Buffer.concat([length, request]));
    return (await answer).readUInt16BE(2);
  } finally {
    socket.destroy();
  }
}

describe('two nodes on one host', () => {
  const pools: WorkerPool[] = [];

  afterAll(async () => {
    await Promise.all(pools.map((pool) => pool.close()));
  });

  /** A pool as a node builds it from the default configuration (RTC_BASE_PORT 40000). */
  function nodePool(): Promise<WorkerPool> {
    const media = loadConfig({}).media;
    return WorkerPool.create({
      numWorkers: 2,
      listenIp: media.listenIp,
      rtcBasePort: media.rtcBasePort,
      portRange: { min: 10_000, max: 59_999 },
      restartBackoff: { initialMs: 200, maxMs: 2000, stableAfterMs: 60_000 },
      logger: testLogger,
    });
  }

  /** Answers a STUN check on the worker's UDP and TCP port through a WebRTC transport of its server. */
  async function expectWorking(worker: PooledWorker): Promise<void> {
    const router = await worker.worker.createRouter({ mediaCodecs: [] });
    try {
      const transport = await router.createWebRtcTransport({ webRtcServer: worker.webRtcServer, enableTcp: true });
      expect(transport.iceCandidates.map((c) => [c.protocol, c.port]).sort()).toEqual([
        ['tcp', worker.tcpPort],
        ['udp', worker.udpPort],
      ]);
      const request = stunBindingRequest(transport.iceParameters);
      expect(await stunOverUdp(worker.udpPort, request)).toBe(0x0101); // Binding Success Response
      expect(await stunOverTcp(worker.tcpPort, request)).toBe(0x0101);
    } finally {
      router.close();
    }
  }

  it('both start on the same RTC_BASE_PORT, on distinct ports, with working WebRtcServers', async () => {
    const base = loadConfig({}).media.rtcBasePort;
    pools.push(...(await Promise.all([nodePool(), nodePool()])));
    const workers = pools.flatMap((pool) => pool.alive);
    expect(workers).toHaveLength(4);
    const ports = workers.map((w) => w.udpPort);
    expect(new Set(ports).size).toBe(4);
    for (const w of workers) {
      expect(w.tcpPort).toBe(w.udpPort);
      expect(w.udpPort).toBeGreaterThanOrEqual(base);
      expect((w.udpPort - base) % 2).toBe(w.index); // base + index + k × workers
    }
    for (const w of workers) await expectWorking(w);
  });

  it('a worker restarted while its port is taken moves on to a free one', async () => {
    const pool = pools[0] as WorkerPool;
    const victim = pool.alive[0] as PooledWorker;
    const restarted = new Promise<void>((resolve) => pool.once('workerrestarted', () => resolve()));
    const squatter = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => {
      process.kill(victim.pid, 'SIGKILL');
      // Take the dead worker's UDP port as soon as it is free, before the restart (200 ms later).
      const grab = (): void => {
        squatter.once('error', () => setTimeout(grab, 10));
        squatter.bind(victim.udpPort, '127.0.0.1', () => resolve());
      };
      grab();
    });
    try {
      await restarted;
      const replacement = pool.alive.find((w) => w.index === 0) as PooledWorker;
      expect(replacement.udpPort).not.toBe(victim.udpPort);
      expect((replacement.udpPort - victim.udpPort) % 2).toBe(0);
      await expectWorking(replacement);
    } finally {
      squatter.close();
    }
  });
});
