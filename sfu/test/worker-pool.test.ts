import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { SfuError } from '../src/errors.js';
import {
  RestartBackoff,
  WorkerPool,
  type PoolWorkerDiedEvent,
  type PoolWorkerRestartedEvent,
} from '../src/worker-pool.js';
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
