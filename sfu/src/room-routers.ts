import type { types } from 'mediasoup';

import { SfuError, toSfuError } from './errors.js';
import { mediaCodecs } from './media-codecs.js';
import type { RoomProducer } from './room-producers.js';
import type { RoomScope } from './room-scope.js';
import type { RoomTransport } from './room-transports.js';
import type { PooledWorker, WorkerPool } from './worker-pool.js';

/** One router of a room, on one worker, with the pipes of the room's producers into it. */
export type RoomRouter = {
  readonly router: types.Router;
  readonly pooled: PooledWorker;
  /** Room producer id → id of that producer inside this router (itself, or its pipe producer). */
  readonly localProducerIds: Map<string, string>;
  /** Inverse of `localProducerIds`. */
  readonly originProducerIds: Map<string, string>;
  /** Pipe producers inside this router, by room producer id. */
  readonly pipeProducers: Map<string, types.Producer>;
  /** Pipes being set up into this router, by room producer id. */
  readonly piping: Map<string, Promise<string>>;
  readonly transports: Set<RoomTransport>;
  /** Recv transports being created on this router (counted in its load). */
  reservedRecv: number;
};

/** Why a router of a room goes away. */
export type RouterLossReason = 'worker-died' | 'room-closed';

/** Options of {@link RoomRouters}. */
export type RoomRoutersOptions = {
  scope: RoomScope;
  pool: WorkerPool;
  /** Soft budget of consumers per router before the room grows a router on another worker. */
  consumersPerRouter: number;
  /** The room's producers now: a new router gets a pipe of each, and each viewer will consume each. */
  producers: () => ReadonlyMap<string, RoomProducer>;
  /** A router is going away: close what is on it. Called before the router itself closes. */
  onRouterLost: (router: RoomRouter, reason: RouterLossReason) => void;
  /** The primary router went away while the room stays open. */
  onPrimaryLost: () => void;
};

/**
 * The routers of one room, each on a worker of the pool, and the pipes between them.
 *
 * - The first router (the *primary*) sits on the least-loaded worker.
 * - A recv transport goes to the first router under its consumer budget; when all are at budget
 *   the room grows a router on another worker (one without a router of this room when possible)
 *   and pipes every producer of the room into it (`pipeToRouter`).
 * - A room producer has one id inside each router: its own in its origin router, its pipe
 *   producer's elsewhere ({@link localProducerId}).
 */
export class RoomRouters {
  #options: RoomRoutersOptions;
  #scope: RoomScope;
  #routers: RoomRouter[] = [];
  #growing: Promise<RoomRouter> | undefined;

  constructor(options: RoomRoutersOptions) {
    this.#options = options;
    this.#scope = options.scope;
  }

  /** The routers, primary first. */
  get all(): readonly RoomRouter[] {
    return this.#routers;
  }

  /** Whether `router` is still one of the room's. */
  includes(router: RoomRouter): boolean {
    return this.#routers.includes(router);
  }

  /** The primary router; creates it when the room has none. */
  async primary(): Promise<RoomRouter> {
    return this.#routers[0] ?? (await this.#grow());
  }

  /**
   * The first router under budget for one more recv transport, growing the room when none is.
   * The router counts the transport in its load until {@link releaseRecv}.
   */
  async reserveRecv(): Promise<RoomRouter> {
    for (;;) {
      this.#scope.assertOpen();
      const perViewer = Math.max(1, this.#options.producers().size);
      const router = this.#routers.find((r) => {
        const load = this.#recvLoad(r, perViewer);
        // An empty router takes a viewer even when one viewer alone exceeds the budget.
        return load === 0 || load + perViewer <= this.#options.consumersPerRouter;
      });
      if (router) {
        router.reservedRecv += 1;
        return router;
      }
      await this.#grow();
    }
  }

  /** Ends a reservation of {@link reserveRecv} (the transport was created, or not). */
  releaseRecv(router: RoomRouter): void {
    router.reservedRecv -= 1;
  }

  /** A producer was created on its transport's router: it is known there by its own id. */
  addOrigin(producer: RoomProducer): void {
    const origin = producer.router;
    origin.localProducerIds.set(producer.id, producer.id);
    origin.originProducerIds.set(producer.id, producer.id);
  }

  /** Pipes a new producer into every other router of the room; failures are logged. */
  async pipeEverywhere(producer: RoomProducer): Promise<void> {
    const origin = producer.router;
    await Promise.allSettled(this.#routers.filter((r) => r !== origin).map((r) => this.localProducerId(producer, r)));
  }

  /** Id of a room producer inside `target`, piping it there first when needed. */
  localProducerId(producer: RoomProducer, target: RoomRouter): Promise<string> {
    const known = target.localProducerIds.get(producer.id);
    if (known !== undefined) return Promise.resolve(known);
    let pending = target.piping.get(producer.id);
    if (!pending) {
      pending = this.#pipe(producer, target).finally(() => target.piping.delete(producer.id));
      target.piping.set(producer.id, pending);
      pending.catch((error: unknown) =>
        this.#scope.logger.warn(
          { roomId: this.#scope.roomId, producerId: producer.id, err: error },
          'pipeToRouter failed',
        ),
      );
    }
    return pending;
  }

  /** A producer closed: forgets its ids and closes its pipe producers in every router. */
  forgetProducer(producer: RoomProducer): void {
    for (const router of this.#routers) {
      const localId = router.localProducerIds.get(producer.id);
      router.localProducerIds.delete(producer.id);
      if (localId !== undefined) router.originProducerIds.delete(localId);
      router.pipeProducers.get(producer.id)?.close();
      router.pipeProducers.delete(producer.id);
    }
  }

  /**
   * Removes a router: what is on it goes first (`onRouterLost`), then the router closes. Losing
   * the primary while the room stays open calls `onPrimaryLost`. No-op for a router already gone.
   */
  remove(router: RoomRouter, reason: RouterLossReason): void {
    const index = this.#routers.indexOf(router);
    if (index < 0) return;
    this.#routers.splice(index, 1);
    this.#options.onRouterLost(router, reason);
    router.router.close();
    if (reason === 'worker-died') {
      this.#scope.logger.warn(
        { roomId: this.#scope.roomId, routerId: router.router.id, workerIndex: router.pooled.index },
        'room router lost with its worker',
      );
    }
    if (index === 0 && !this.#scope.closed) this.#options.onPrimaryLost();
  }

  /** Consumers a router carries or is expected to: each recv transport counts at least `perViewer`. */
  #recvLoad(router: RoomRouter, perViewer: number): number {
    let load = router.reservedRecv * perViewer;
    for (const transport of router.transports) {
      if (transport.direction === 'recv') load += Math.max(transport.consumers.size, perViewer);
    }
    return load;
  }

  /** Adds one router to the room (one creation at a time). */
  #grow(): Promise<RoomRouter> {
    this.#growing ??= this.#createRouter().finally(() => {
      this.#growing = undefined;
    });
    return this.#growing;
  }

  async #createRouter(): Promise<RoomRouter> {
    const { roomId } = this.#scope;
    const pooled = this.#options.pool.pick(new Set(this.#routers.map((r) => r.pooled.index)));
    let router: types.Router;
    try {
      router = await pooled.worker.createRouter({ mediaCodecs: [...mediaCodecs], appData: { roomId } });
    } catch (error) {
      throw toSfuError(error, 'UNAVAILABLE');
    }
    if (this.#scope.closed) {
      router.close();
      throw new SfuError('NOT_FOUND', `room ${roomId} closed`);
    }
    const entry: RoomRouter = {
      router,
      pooled,
      localProducerIds: new Map(),
      originProducerIds: new Map(),
      pipeProducers: new Map(),
      piping: new Map(),
      transports: new Set(),
      reservedRecv: 0,
    };
    this.#routers.push(entry);
    router.on('workerclose', () => this.remove(entry, 'worker-died'));
    this.#scope.logger.info(
      { roomId, routerId: router.id, workerIndex: pooled.index, routers: this.#routers.length },
      'room router created',
    );
    await Promise.allSettled([...this.#options.producers().values()].map((p) => this.localProducerId(p, entry)));
    return entry;
  }

  async #pipe(producer: RoomProducer, target: RoomRouter): Promise<string> {
    const origin = producer.router;
    const { pipeProducer } = await origin.router.pipeToRouter({
      producerId: producer.id,
      router: target.router,
      // A fresh id: with the original one, a second router of the room on the same worker (the
      // origin's, or one already holding a pipe of this producer) would collide in that worker.
      keepId: false,
      listenInfo: this.#options.pool.pipeListenInfo(),
      enableSctp: false,
    });
    if (!pipeProducer) throw new Error('pipeToRouter returned no producer');
    if (producer.closed || !this.#routers.includes(target)) {
      pipeProducer.close();
      throw new SfuError('NOT_FOUND', `producer ${producer.id} closed`);
    }
    target.localProducerIds.set(producer.id, pipeProducer.id);
    target.originProducerIds.set(pipeProducer.id, producer.id);
    target.pipeProducers.set(producer.id, pipeProducer);
    pipeProducer.observer.once('close', () => {
      if (target.pipeProducers.get(producer.id) !== pipeProducer) return;
      target.pipeProducers.delete(producer.id);
      target.localProducerIds.delete(producer.id);
      target.originProducerIds.delete(pipeProducer.id);
    });
    this.#scope.logger.debug(
      { roomId: this.#scope.roomId, producerId: producer.id, from: origin.pooled.index, to: target.pooled.index },
      'producer piped',
    );
    return pipeProducer.id;
  }
}
