import * as mediasoup from 'mediasoup';
import type { types } from 'mediasoup';
import type { Logger } from 'pino';

import { SfuError } from './errors.js';
import { SafeEmitter } from './safe-emitter.js';

/** An inclusive range of ports. */
export type PortRange = { min: number; max: number };

/** How long to wait before restarting a dead worker. */
export type RestartBackoffOptions = {
  /** First delay after a death, in ms. */
  initialMs: number;
  /** Ceiling of the doubling delay, in ms. */
  maxMs: number;
  /** A worker that ran this long (ms) before dying was stable: its restart starts over at `initialMs`. */
  stableAfterMs: number;
};

/**
 * Whether the pipes between nodes are encrypted (SRTP): `auto` unless the asking node's pipe
 * address is loopback (both ends on one host), `always` (an untrusted network between nodes: the
 * node also refuses to pipe its producers out unencrypted), `never` (a trusted private network).
 */
export type PipeSrtpMode = 'auto' | 'always' | 'never';

/** Options of {@link WorkerPool.create}. */
export type WorkerPoolOptions = {
  /** Number of worker processes (one per core is the usual choice). */
  numWorkers: number;
  /** IP the WebRtcServers, plain and pipe transports listen on. */
  listenIp: string;
  /** Address announced in ICE candidates and plain transport tuples (NAT, containers). */
  announcedAddress?: string;
  /** Address other nodes reach this node's pipes at; default `announcedAddress`, then `listenIp`. */
  pipeAnnouncedAddress?: string;
  /** SRTP on the pipes this node asks other nodes for (see {@link PipeSrtpMode}). Default `auto`. */
  pipeSrtp?: PipeSrtpMode;
  /**
   * Worker `i`'s WebRtcServer listens on UDP and TCP port `rtcBasePort + i`; when that port is
   * taken (another node on the host), on the next free one of `rtcBasePort + i + k × numWorkers`
   * (see {@link rtcPortCandidates}). With 0 each picks a free port in `portRange` (UDP and TCP
   * ports may then differ).
   */
  rtcBasePort: number;
  /** Ports for plain and pipe transports, and for WebRtcServers when `rtcBasePort` is 0. */
  portRange: PortRange;
  restartBackoff: RestartBackoffOptions;
  logger: Logger;
  /** mediasoup-worker binary; default mediasoup's own lookup (`MEDIASOUP_WORKER_BIN`, then its build dir). */
  workerBin?: string;
  /** Log level of the worker processes. Default 'warn'. */
  workerLogLevel?: types.WorkerLogLevel;
};

/** `workerdied` event of {@link WorkerPool}. */
export type PoolWorkerDiedEvent = { workerIndex: number; pid: number; error: Error };

/** `workerrestarted` event of {@link WorkerPool}. */
export type PoolWorkerRestartedEvent = { workerIndex: number; pid: number };

/** Events of {@link WorkerPool}. */
export type WorkerPoolEvents = {
  workerdied: [PoolWorkerDiedEvent];
  workerrestarted: [PoolWorkerRestartedEvent];
};

/**
 * Exponential restart delay: `initialMs`, doubling per consecutive death up to `maxMs`, back to
 * `initialMs` once a worker ran for `stableAfterMs`.
 */
export class RestartBackoff {
  #options: RestartBackoffOptions;
  #nextMs: number;

  constructor(options: RestartBackoffOptions) {
    this.#options = options;
    this.#nextMs = options.initialMs;
  }

  /** Delay before the next start attempt, given how long the dead worker ran (0 for a failed start). */
  next(uptimeMs: number): number {
    if (uptimeMs >= this.#options.stableAfterMs) this.#nextMs = this.#options.initialMs;
    const delayMs = this.#nextMs;
    this.#nextMs = Math.min(delayMs * 2, this.#options.maxMs);
    return delayMs;
  }
}

/**
 * One live worker process of the pool with its WebRtcServer. Counts the routers and consumers
 * (pipe consumers included) created on it, which is the load {@link WorkerPool.pick} balances.
 */
export class PooledWorker {
  /** Position in the pool; a restarted worker keeps its index (and its ports). */
  readonly index: number;
  readonly worker: types.Worker;
  /** The WebRtcServer every WebRTC transport of this worker's routers goes through. */
  readonly webRtcServer: types.WebRtcServer;
  /** UDP port of the WebRtcServer. */
  readonly udpPort: number;
  /** TCP port of the WebRtcServer. */
  readonly tcpPort: number;
  /** `Date.now()` when the worker became ready. */
  readonly startedAt: number;
  #routers = 0;
  #consumers = 0;

  constructor(
    index: number,
    worker: types.Worker,
    webRtcServer: types.WebRtcServer,
    ports: { udp: number; tcp: number },
  ) {
    this.index = index;
    this.worker = worker;
    this.webRtcServer = webRtcServer;
    this.udpPort = ports.udp;
    this.tcpPort = ports.tcp;
    this.startedAt = Date.now();
    worker.observer.on('newrouter', (router) => {
      this.#routers += 1;
      router.observer.once('close', () => (this.#routers -= 1));
      router.observer.on('newtransport', (transport) => {
        transport.observer.on('newconsumer', (consumer) => {
          this.#consumers += 1;
          consumer.observer.once('close', () => (this.#consumers -= 1));
        });
      });
    });
  }

  /** Process id of the worker. */
  get pid(): number {
    return this.worker.pid;
  }

  /** Whether the process is running (not closed, not dead). */
  get alive(): boolean {
    return !this.worker.closed;
  }

  /** Routers open on this worker. */
  get routerCount(): number {
    return this.#routers;
  }

  /** Consumers open on this worker, pipe consumers included. */
  get consumerCount(): number {
    return this.#consumers;
  }
}

type Slot = {
  index: number;
  current: PooledWorker | undefined;
  backoff: RestartBackoff;
  restartTimer: NodeJS.Timeout | undefined;
  /** The port its last worker listened on (a restart tries it first). */
  lastPort: number | undefined;
};

/** How many ports a worker tries from `rtcBasePort` upward before it gives up. */
export const RTC_PORT_PROBES = 100;

/**
 * The ports worker `index` of `numWorkers` tries in turn: `preferred` (its previous port) first,
 * then `base + index`, `base + index + numWorkers`, … The workers of one pool never try the
 * same port, so they need not coordinate; the k-th node started on a host ends up on block k.
 */
export function rtcPortCandidates(base: number, index: number, numWorkers: number, preferred?: number): number[] {
  const ports = preferred === undefined ? [] : [preferred];
  for (let k = 0; ports.length < RTC_PORT_PROBES; k += 1) {
    const port = base + index + k * numWorkers;
    if (port > 65_535) break;
    if (port !== preferred) ports.push(port);
  }
  return ports;
}

/** mediasoup's error when a WebRtcServer's UDP or TCP port is in use (`uv_udp_bind() failed … address already in use`). */
function isAddressInUse(error: unknown): boolean {
  return error instanceof Error && /address already in use|EADDRINUSE/i.test(error.message);
}

/**
 * A fixed number of mediasoup workers, each with a WebRtcServer (one UDP and one TCP port per
 * worker). A worker that dies, or closes without the pool asking, is reported (`workerdied`) and
 * started again after a backoff (`workerrestarted`); a failed start is retried with the same backoff.
 *
 * mediasoup's `Worker` closes itself on the process's first SIGTERM or SIGINT; the pool removes
 * those listeners from every worker it starts, so that media lasts until the owner closes the
 * pool (a drain closes it last).
 */
export class WorkerPool extends SafeEmitter<WorkerPoolEvents> {
  #options: WorkerPoolOptions;
  #logger: Logger;
  #slots: Slot[];
  #restarts = 0;
  #closed = false;
  #closing: Promise<void> | undefined;

  /** Starts `numWorkers` workers; rejects (closing those started) when one cannot start. */
  static async create(options: WorkerPoolOptions): Promise<WorkerPool> {
    if (!Number.isInteger(options.numWorkers) || options.numWorkers < 1) {
      throw new TypeError(`numWorkers must be a positive integer, got ${options.numWorkers}`);
    }
    const pool = new WorkerPool(options);
    const results = await Promise.allSettled(pool.#slots.map((slot) => pool.#spawn(slot.index)));
    const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failure) {
      for (const r of results) if (r.status === 'fulfilled') r.value.worker.close();
      throw failure.reason;
    }
    results.forEach((r, index) => {
      if (r.status === 'fulfilled') pool.#adopt(pool.#slots[index]!, r.value);
    });
    return pool;
  }

  private constructor(options: WorkerPoolOptions) {
    super((eventName, error) => options.logger.error({ err: error, eventName }, 'worker pool listener threw'));
    this.#options = options;
    this.#logger = options.logger;
    this.#slots = Array.from({ length: options.numWorkers }, (_, index) => ({
      index,
      current: undefined,
      backoff: new RestartBackoff(options.restartBackoff),
      restartTimer: undefined,
      lastPort: undefined,
    }));
  }

  /** Configured number of workers. */
  get size(): number {
    return this.#slots.length;
  }

  /** Workers running now. */
  get alive(): PooledWorker[] {
    return this.#slots.flatMap((slot) => (slot.current?.alive ? [slot.current] : []));
  }

  /** Successful restarts of dead workers since the pool started. */
  get restarts(): number {
    return this.#restarts;
  }

  /** Whether {@link close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Listen info for plain and pipe transports: the pool's IP, announced address and port range. */
  transportListenInfo(): types.TransportListenInfo {
    return {
      protocol: 'udp',
      ip: this.#options.listenIp,
      ...(this.#options.announcedAddress ? { announcedAddress: this.#options.announcedAddress } : {}),
      portRange: { ...this.#options.portRange },
    };
  }

  /**
   * Listen info for the pipes between this node and other nodes: the pool's IP, announced at the
   * pipe address (`pipeAnnouncedAddress`, else `announcedAddress`), the pool's port range.
   */
  nodePipeListenInfo(): types.TransportListenInfo {
    const announcedAddress = this.#options.pipeAnnouncedAddress ?? this.#options.announcedAddress;
    return {
      protocol: 'udp',
      ip: this.#options.listenIp,
      ...(announcedAddress ? { announcedAddress } : {}),
      portRange: { ...this.#options.portRange },
    };
  }

  /** SRTP on the pipes between this node and others (`RTC_PIPE_SRTP`). */
  nodePipeSrtp(): PipeSrtpMode {
    return this.#options.pipeSrtp ?? 'auto';
  }

  /** Listen info for the pipe transports between this node's routers: loopback, the pool's port range. */
  pipeListenInfo(): types.TransportListenInfo {
    return { protocol: 'udp', ip: '127.0.0.1', portRange: { ...this.#options.portRange } };
  }

  /**
   * The least-loaded live worker (fewest consumers, then fewest routers), preferring workers
   * whose index is not in `avoid`. Throws `SfuError('UNAVAILABLE')` when no worker is alive.
   */
  pick(avoid: ReadonlySet<number> = new Set()): PooledWorker {
    let best: PooledWorker | undefined;
    const key = (w: PooledWorker): number[] => [avoid.has(w.index) ? 1 : 0, w.consumerCount, w.routerCount, w.index];
    for (const candidate of this.alive) {
      if (!best || compareKeys(key(candidate), key(best)) < 0) best = candidate;
    }
    if (!best) throw new SfuError('UNAVAILABLE', 'no live media worker');
    return best;
  }

  /**
   * Closes every worker and cancels pending restarts; resolves once the worker processes exited
   * (or after `timeoutMs`). Safe to call twice.
   */
  close(timeoutMs = 3000): Promise<void> {
    if (this.#closing) return this.#closing;
    this.#closed = true;
    const exits: Promise<void>[] = [];
    for (const slot of this.#slots) {
      if (slot.restartTimer) clearTimeout(slot.restartTimer);
      slot.restartTimer = undefined;
      const worker = slot.current?.worker;
      slot.current = undefined;
      if (!worker) continue;
      if (!worker.subprocessClosed) {
        exits.push(new Promise<void>((resolve) => worker.once('subprocessclose', () => resolve())));
      }
      worker.close();
    }
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeoutMs);
      timer.unref();
    });
    this.#closing = Promise.race([Promise.all(exits).then(() => undefined), timeout]).finally(() =>
      clearTimeout(timer),
    );
    return this.#closing;
  }

  async #spawn(index: number): Promise<PooledWorker> {
    const signalListenersBefore = signalListeners();
    const starting = mediasoup.createWorker({
      logLevel: this.#options.workerLogLevel ?? 'warn',
      ...(this.#options.workerBin ? { workerBin: this.#options.workerBin } : {}),
      appData: { workerIndex: index },
    });
    // The Worker constructor ran synchronously inside createWorker: what it added is exactly what
    // is new since the snapshot, and nothing else ran in between.
    removeSignalListenersAddedSince(signalListenersBefore);
    const worker = await starting;
    try {
      const webRtcServer = await this.#createWebRtcServer(worker, index);
      const dump = await webRtcServer.dump();
      const ports = { udp: dump.udpSockets[0]?.port ?? 0, tcp: dump.tcpServers[0]?.port ?? 0 };
      return new PooledWorker(index, worker, webRtcServer, ports);
    } catch (error) {
      worker.close();
      throw error;
    }
  }

  /** The worker's WebRtcServer on the first free port of {@link rtcPortCandidates} (or in the range with base 0). */
  async #createWebRtcServer(worker: types.Worker, index: number): Promise<types.WebRtcServer> {
    const { listenIp, announcedAddress, rtcBasePort, portRange } = this.#options;
    const base = { ip: listenIp, ...(announcedAddress ? { announcedAddress } : {}) };
    const listen = (where: { port: number } | { portRange: PortRange }): Promise<types.WebRtcServer> =>
      worker.createWebRtcServer({
        listenInfos: [
          { protocol: 'udp', ...base, ...where },
          { protocol: 'tcp', ...base, ...where },
        ],
      });
    if (rtcBasePort === 0) return listen({ portRange: { ...portRange } });
    const candidates = rtcPortCandidates(rtcBasePort, index, this.#slots.length, this.#slots[index]?.lastPort);
    for (const port of candidates) {
      try {
        const server = await listen({ port });
        if (port !== rtcBasePort + index) {
          this.#logger.warn(
            { workerIndex: index, port, wanted: rtcBasePort + index },
            'RTC port taken (another node on this host?): the worker listens on the next free one',
          );
        }
        return server;
      } catch (error) {
        if (!isAddressInUse(error)) throw error;
      }
    }
    throw new Error(
      `no free RTC port for media worker ${index}: tried ${candidates.length} from ${rtcBasePort + index} (every ${this.#slots.length})`,
    );
  }

  #adopt(slot: Slot, pooled: PooledWorker): void {
    slot.current = pooled;
    slot.lastPort = pooled.udpPort;
    pooled.worker.on('died', (error) => this.#onDied(slot, pooled, error));
    // The pool detaches a worker before closing it; a close of the current worker came from elsewhere.
    pooled.worker.observer.once('close', () =>
      this.#onDied(slot, pooled, new Error(`worker ${pooled.pid} closed unexpectedly`)),
    );
    if (!pooled.alive) {
      // Died between its start and now, before anyone listened: treat it like any death.
      this.#onDied(slot, pooled, new Error(`worker ${pooled.pid} died during start-up`));
      return;
    }
    this.#logger.info(
      { workerIndex: slot.index, pid: pooled.pid, udpPort: pooled.udpPort, tcpPort: pooled.tcpPort },
      'media worker ready',
    );
  }

  #onDied(slot: Slot, pooled: PooledWorker, error: Error): void {
    if (slot.current !== pooled) return;
    slot.current = undefined;
    const uptimeMs = Date.now() - pooled.startedAt;
    this.#logger.error({ workerIndex: slot.index, pid: pooled.pid, uptimeMs, err: error }, 'media worker died');
    this.safeEmit('workerdied', { workerIndex: slot.index, pid: pooled.pid, error });
    this.#scheduleRestart(slot, uptimeMs);
  }

  #scheduleRestart(slot: Slot, uptimeMs: number): void {
    if (this.#closed) return;
    const delayMs = slot.backoff.next(uptimeMs);
    this.#logger.info({ workerIndex: slot.index, delayMs }, 'media worker restart scheduled');
    slot.restartTimer = setTimeout(() => void this.#restart(slot), delayMs);
    slot.restartTimer.unref();
  }

  async #restart(slot: Slot): Promise<void> {
    slot.restartTimer = undefined;
    if (this.#closed) return;
    let pooled: PooledWorker;
    try {
      pooled = await this.#spawn(slot.index);
    } catch (error) {
      this.#logger.error({ workerIndex: slot.index, err: error }, 'media worker restart failed');
      this.#scheduleRestart(slot, 0);
      return;
    }
    if (this.#closed) {
      pooled.worker.close();
      return;
    }
    this.#restarts += 1;
    this.#adopt(slot, pooled);
    this.safeEmit('workerrestarted', { workerIndex: slot.index, pid: pooled.pid });
  }
}

/** Signals on which mediasoup's `Worker` closes itself (`process.once`) unless its listeners are removed. */
const WORKER_SIGNALS = ['SIGTERM', 'SIGINT'] as const;

type SignalListeners = Record<(typeof WORKER_SIGNALS)[number], NodeJS.SignalsListener[]>;

function signalListeners(): SignalListeners {
  return { SIGTERM: process.listeners('SIGTERM'), SIGINT: process.listeners('SIGINT') };
}

/** Removes the SIGTERM and SIGINT listeners added since `before`, and only those. */
function removeSignalListenersAddedSince(before: SignalListeners): void {
  for (const signal of WORKER_SIGNALS) {
    for (const listener of process.listeners(signal)) {
      if (!before[signal].includes(listener)) process.removeListener(signal, listener);
    }
  }
}

function compareKeys(a: number[], b: number[]): number {
  for (let i = 0; i < a.length; i += 1) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}
