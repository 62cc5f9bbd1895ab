/**
 * Media across the nodes of a cluster, seen from one node: the room-wide producer directory
 * (`media-directory.ts`), the pipe requests other nodes send here and the ones this node sends
 * (`media-rpc.ts`), and the nodes that go away — a node whose heartbeat lapsed or that left the
 * cluster takes its pipes with it (the consumers here close with `origin-lost`), and its
 * producers leave the directory with one `producer.removed` each (reason `migrating` when the
 * node was draining, `node-lost` otherwise). At the same pace, the pipes this node holds from
 * other nodes are checked against the directory: a producer that left it closes its pipe here
 * (its consumers close with `producer-closed`) even when the origin's `media.pipeClosed` was lost.
 * Design: `docs/sfu.md` ("Across nodes").
 */
import type { Logger } from 'pino';
import {
  SfuError,
  type MediaService,
  type PipeClosedEvent,
  type PipeEnd,
  type PipeOffer,
  type PipeOrigin,
  type PipePausedEvent,
} from '../../../sfu/src/index.js';
import { RpcNoListenerError, RpcRemoteError, RpcTimeoutError } from '../cluster/cluster-rpc.js';
import type { NodeStatus } from '../cluster/node-registry.js';
import { ProtocolError } from '../errors.js';
import type { EventData } from '../protocol/notifications.js';
import { ProducerDirectory, type DirectoryEntry } from './media-directory.js';
import { mediaRpcParams } from './media-rpc.js';
import type { RoomRpc, RoomRpcMethods } from './room-rpc.js';

/** A producer control another node asks this one (the origin) to carry out. */
export interface RemoteProducerControl {
  readonly roomId: string;
  readonly producerId: string;
  readonly participantId: string;
  readonly action: 'pause' | 'resume' | 'close';
  readonly asModerator: boolean;
}

/** Options of {@link MediaCluster}. */
export interface MediaClusterOptions {
  readonly media: MediaService;
  readonly rpc: RoomRpc;
  /** The node registry: who is alive, and who drains. */
  readonly registry: { list(): Promise<NodeStatus[]> };
  readonly nodeId: string;
  /** This node's process in the registry (`NodeRegistry.instanceId`). */
  readonly instanceId: string;
  readonly directory: ProducerDirectory;
  /** `NODE_TTL_MS`: the nodes are looked at every third of it. */
  readonly nodeTtlMs: number;
  /** Announces a durable room event (a dead node's `producer.removed`). */
  readonly publishRemoved: (roomId: string, data: EventData<'producer.removed'>) => Promise<unknown>;
  /** Carries out a control of a producer of this node asked by another node. */
  readonly control: (control: RemoteProducerControl) => Promise<void>;
  readonly log: Logger;
}

/** How long a pipe request waits for the origin. */
const PIPE_TIMEOUT_MS = 5000;

export class MediaCluster {
  readonly nodeId: string;
  readonly #options: MediaClusterOptions;
  readonly #media: MediaService;
  readonly #rpc: RoomRpc;
  readonly #directory: ProducerDirectory;
  readonly #log: Logger;
  /** The cluster's nodes at the last look, by id (undefined before the first). */
  #nodes: Map<string, NodeStatus> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #looking: Promise<boolean> | undefined;
  #watching: Promise<void> | undefined;
  readonly #stops: (() => void)[] = [];

  constructor(options: MediaClusterOptions) {
    this.#options = options;
    this.nodeId = options.nodeId;
    this.#media = options.media;
    this.#rpc = options.rpc;
    this.#directory = options.directory;
    this.#log = options.log;
  }

  /** Answers the media RPC methods, relays the pipes' events to the nodes at their other end, watches the nodes. */
  start(): void {
    const rpc = this.#rpc;
    const p = mediaRpcParams;
    const sfu = this.#media;
    this.#stops.push(
      rpc.handle(
        'media.pipe',
        ({ roomId, producerId, end }, { callerNodeId }) =>
          asProtocol(() => sfu.pipeOut(roomId, producerId, callerNodeId, end)),
        { params: p['media.pipe'] },
      ),
      rpc.handle(
        'media.unpipe',
        ({ roomId, producerId }, { callerNodeId }) => {
          sfu.closePipeOut(roomId, producerId, callerNodeId);
          return {};
        },
        { params: p['media.unpipe'] },
      ),
      rpc.handle(
        'media.pipeClosed',
        ({ roomId, producerId }) => {
          sfu.closePipeIn(roomId, producerId, 'origin-closed');
          return {};
        },
        { params: p['media.pipeClosed'] },
      ),
      rpc.handle(
        'media.pipePaused',
        async ({ roomId, producerId, paused }) => {
          await asProtocol(() => sfu.setPipeInPaused(roomId, producerId, paused));
          return {};
        },
        { params: p['media.pipePaused'] },
      ),
      rpc.handle(
        'media.controlProducer',
        async (control) => {
          await this.#options.control(control);
          return {};
        },
        { params: p['media.controlProducer'] },
      ),
    );
    const onPaused = ({ roomId, producerId, nodeId, paused }: PipePausedEvent): void =>
      this.#tell(nodeId, 'media.pipePaused', { roomId, producerId, paused });
    const onClosed = (event: PipeClosedEvent): void => this.#pipeClosed(event);
    sfu.on('pipepaused', onPaused);
    sfu.on('pipeclosed', onClosed);
    this.#stops.push(() => {
      sfu.off('pipepaused', onPaused);
      sfu.off('pipeclosed', onClosed);
    });
    this.#timer = setInterval(() => void this.#watch(), Math.max(100, Math.floor(this.#options.nodeTtlMs / 3)));
    this.#timer.unref();
    void this.#watch();
  }

  /** Stops answering and watching; closes the directory's connection. Safe to call twice. */
  close(): void {
    clearInterval(this.#timer);
    for (const stop of this.#stops.splice(0)) stop();
    this.#directory.close();
  }

  /** A pipe of this node closed: the node at its other end closes its own end. */
  #pipeClosed({ roomId, producerId, nodeId, direction }: PipeClosedEvent): void {
    if (direction === 'out') this.#tell(nodeId, 'media.pipeClosed', { roomId, producerId });
    else this.#tell(nodeId, 'media.unpipe', { roomId, producerId });
  }

  /**
   * Where to pipe a producer from: its origin node when the directory names another live node,
   * undefined when it is unknown, published here, or its node is gone.
   */
  async origin(roomId: string, producerId: string): Promise<PipeOrigin | undefined> {
    const entry = await this.#directory.get(roomId, producerId);
    if (!entry || entry.nodeId === this.nodeId) return undefined;
    if ((await this.#live([entry])).length === 0) return undefined;
    const nodeId = entry.nodeId;
    return {
      nodeId,
      open: async (end: PipeEnd): Promise<PipeOffer> => {
        try {
          return await this.#rpc.call(
            nodeId,
            'media.pipe',
            { roomId, producerId, end },
            { timeoutMs: PIPE_TIMEOUT_MS },
          );
        } catch (error) {
          throw pipeFailure(error, producerId, nodeId);
        }
      },
    };
  }

  /** The node a producer is published on, per the directory (undefined when unknown). */
  async originNodeOf(roomId: string, producerId: string): Promise<string | undefined> {
    return (await this.#directory.get(roomId, producerId))?.nodeId;
  }

  /** Asks the origin of a producer to pause, resume or close it. */
  async controlRemote(nodeId: string, control: RemoteProducerControl): Promise<void> {
    try {
      await this.#rpc.call(nodeId, 'media.controlProducer', control);
    } catch (error) {
      if (error instanceof RpcRemoteError) throw error.toProtocolError();
      if (error instanceof RpcNoListenerError)
        throw new ProtocolError('NOT_FOUND', `producer ${control.producerId} is gone`);
      throw new ProtocolError('UNAVAILABLE', `the producer's node did not answer`);
    }
  }

  /** The room's producers on every live node (entries of nodes gone are cleaned up on the way). */
  async producers(roomId: string): Promise<DirectoryEntry[]> {
    const entries = await this.#directory.list(roomId);
    const live = await this.#live(entries);
    if (live.length < entries.length)
      void this.#removeGone(
        roomId,
        entries.filter((e) => !live.includes(e)),
      );
    return live;
  }

  /** A producer of this node joins the directory. */
  announce(roomId: string, entry: Omit<DirectoryEntry, 'nodeId' | 'instanceId'>): Promise<void> {
    return this.#directory.put(roomId, { ...entry, nodeId: this.nodeId, instanceId: this.#options.instanceId });
  }

  /** A producer of this node leaves the directory. */
  async withdraw(roomId: string, producerId: string): Promise<void> {
    await this.#directory.remove(roomId, producerId);
  }

  /** A producer of this node was paused or resumed. */
  setPaused(roomId: string, producerId: string, paused: boolean): Promise<void> {
    return this.#directory.setPaused(roomId, producerId, paused);
  }

  /**
   * The entries whose node process is alive: this one, or one alive at the last look (looking
   * again first when an entry names a node the last look did not show — one that registered
   * since, or one gone long ago). When the registry cannot be read, unknown nodes count as alive
   * (a pipe request to a node that is gone fails at once: nobody listens).
   */
  async #live(entries: readonly DirectoryEntry[]): Promise<DirectoryEntry[]> {
    let fresh = true;
    if (entries.some((e) => this.#stateOf(e) === 'unknown')) fresh = await this.#look();
    return entries.filter((e) => {
      const state = this.#stateOf(e);
      return state === 'alive' || (state === 'unknown' && !fresh);
    });
  }

  #stateOf(entry: DirectoryEntry): 'alive' | 'gone' | 'unknown' {
    const sameProcess = (instanceId: string): boolean =>
      entry.instanceId === undefined || entry.instanceId === instanceId;
    if (entry.nodeId === this.nodeId) return sameProcess(this.#options.instanceId) ? 'alive' : 'gone';
    const node = this.#nodes?.get(entry.nodeId);
    if (!node) return 'unknown';
    return node.alive && sameProcess(node.instanceId) ? 'alive' : 'gone';
  }

  /** One round of the watch: the nodes, then the pipes in (one at a time: a slow Redis does not pile them up). */
  #watch(): Promise<void> {
    this.#watching ??= (async () => {
      await this.#look();
      await this.#reconcilePipes();
    })().finally(() => {
      this.#watching = undefined;
    });
    return this.#watching;
  }

  /**
   * Closes the pipes in whose producer is no longer in the directory: the origin closed it (and
   * withdrew it) but its `media.pipeClosed` never arrived — lost with a dropped connection to
   * Redis, or a node that missed it while reconnecting. The origin is told to close its end too,
   * should it still hold one. A room whose directory cannot be read is left as it is.
   */
  async #reconcilePipes(): Promise<void> {
    const byRoom = new Map<string, { producerId: string; nodeId: string }[]>();
    for (const pipe of this.#media.pipes()) {
      if (pipe.direction !== 'in') continue;
      const pipes = byRoom.get(pipe.roomId) ?? [];
      pipes.push(pipe);
      byRoom.set(pipe.roomId, pipes);
    }
    for (const [roomId, pipes] of byRoom) {
      let known: Set<string>;
      try {
        known = await this.#directory.producerIds(roomId);
      } catch (error) {
        this.#log.debug({ err: error, roomId }, 'media: reading the room’s producers failed; checking its pipes later');
        continue;
      }
      for (const { producerId, nodeId } of pipes) {
        if (known.has(producerId)) continue;
        this.#log.info(
          { roomId, producerId, nodeId },
          'media: a piped-in producer left the directory; closing its pipe',
        );
        // Its node seen dead (another node removed its producers first): lost, not closed.
        const dead = this.#nodes?.get(nodeId)?.alive === false;
        this.#media.closePipeIn(roomId, producerId, dead ? 'origin-lost' : 'origin-closed');
        this.#tell(nodeId, 'media.unpipe', { roomId, producerId });
      }
    }
  }

  /** Looks at the cluster's nodes now (or joins the look under way); resolves whether it could. */
  #look(): Promise<boolean> {
    this.#looking ??= this.#lookNow().finally(() => {
      this.#looking = undefined;
    });
    return this.#looking;
  }

  /** Node processes alive at the last look and not now (dead, gone, or restarted) are gone. */
  async #lookNow(): Promise<boolean> {
    let nodes: Map<string, NodeStatus>;
    try {
      nodes = new Map((await this.#options.registry.list()).map((n) => [n.nodeId, n]));
    } catch (error) {
      this.#log.debug({ err: error }, 'media: reading the cluster’s nodes failed; trying again');
      return false;
    }
    const before = this.#nodes;
    this.#nodes = nodes;
    const gone = [...(before?.values() ?? [])].filter((n) => {
      const now = nodes.get(n.nodeId);
      return n.alive && n.nodeId !== this.nodeId && (now?.alive !== true || now.instanceId !== n.instanceId);
    });
    for (const node of gone) {
      try {
        await this.#nodeGone(node);
      } catch (error) {
        this.#log.warn({ err: error, goneNodeId: node.nodeId }, 'media: cleaning up after a node failed');
      }
    }
    return true;
  }

  /** A node went away: its pipes close here, and its producers leave the rooms of this node. */
  async #nodeGone(node: NodeStatus): Promise<void> {
    this.#log.info({ goneNodeId: node.nodeId, state: node.state }, 'media: a node went away; closing its pipes');
    this.#media.nodeLost(node.nodeId);
    for (const roomId of this.#media.roomIds()) {
      const entries = await this.#directory.list(roomId);
      await this.#removeGone(
        roomId,
        entries.filter((e) => e.nodeId === node.nodeId && (e.instanceId ?? node.instanceId) === node.instanceId),
        node.state === 'draining' ? 'migrating' : 'node-lost',
      );
    }
  }

  /** Removes producers of nodes gone; the node that removes an entry announces it. */
  async #removeGone(roomId: string, entries: DirectoryEntry[], reason?: string): Promise<void> {
    for (const entry of entries) {
      try {
        const why = reason ?? (this.#nodes?.get(entry.nodeId)?.state === 'draining' ? 'migrating' : 'node-lost');
        if (await this.#directory.remove(roomId, entry.producerId)) {
          await this.#options.publishRemoved(roomId, { producerId: entry.producerId, reason: why });
        }
      } catch (error) {
        this.#log.warn(
          { err: error, roomId, producerId: entry.producerId },
          'media: removing a gone node’s producer failed',
        );
      }
    }
  }

  /** A call whose answer nobody waits for (the other end cleans up by itself should it fail). */
  #tell<M extends 'media.pipeClosed' | 'media.unpipe' | 'media.pipePaused'>(
    nodeId: string,
    method: M,
    params: RoomRpcMethods[M]['params'],
  ): void {
    this.#rpc.call(nodeId, method, params).catch((error: unknown) => {
      if (error instanceof RpcNoListenerError) return; // gone: its pipes go with it
      this.#log.warn({ err: error, nodeId, method }, 'media: telling a node about a pipe failed');
    });
  }
}

/** Runs an SFU call for another node, turning its {@link SfuError}s into protocol errors. */
async function asProtocol<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    if (error instanceof SfuError) throw new ProtocolError(error.code, error.message);
    throw error;
  }
}

/** What a failed pipe request means to the consumer that needed it. */
function pipeFailure(error: unknown, producerId: string, nodeId: string): Error {
  if (error instanceof RpcRemoteError) {
    const code = error.code === 'NOT_FOUND' ? 'NOT_FOUND' : 'UNAVAILABLE';
    return new SfuError(code, `piping producer ${producerId} from node ${nodeId}: ${error.message}`);
  }
  if (error instanceof RpcNoListenerError) return new SfuError('NOT_FOUND', `producer ${producerId}: its node is gone`);
  if (error instanceof RpcTimeoutError) return new SfuError('UNAVAILABLE', `node ${nodeId} did not answer in time`);
  return new SfuError('UNAVAILABLE', `node ${nodeId} cannot be reached`, { cause: error });
}
