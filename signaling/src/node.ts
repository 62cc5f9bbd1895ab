/**
 * A trading-room node: one HTTP server carrying the WebSocket gateway, the health, metrics and
 * admin endpoints and the browser page; the room service on a room bus; the SFU when media is
 * on. {@link TradingRoomNode.drain} runs the drain state machine to the end.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { Config } from './config.js';
import { CloseCode } from './errors.js';
import { createLogger } from './logger.js';
import { NodeMetrics } from './metrics.js';
import { createRoomBus, type RoomBusOptions } from './bus/create-room-bus.js';
import type { HostPort, RedisTarget } from './bus/redis-connections.js';
import type { RoomBus } from './bus/room-bus.js';
import { ClusterMembership } from './cluster/cluster-membership.js';
import type { RoomRpcMethods } from './rooms/room-rpc.js';
import { RoomService } from './rooms/room-service.js';
import { RoomWebhooks } from './rooms/room-webhooks.js';
import { RateLimits } from './rate-limits.js';
import { TokenVerifier } from './auth/tokens.js';
import { BackendAccessClient, backendMetrics } from '../../backend-bridge/src/index.js';
import { DrainController } from './drain.js';
import { Gateway } from './gateway/gateway.js';
import { HttpApi } from './http/http-api.js';
import { AdminNodeFigures } from './http/admin-node.js';
import { registerAdminMetrics } from './http/admin-metrics.js';
import type { AdminRpcMethods } from './http/admin-rpc.js';
import { AdminService } from './http/admin-service.js';
import type { NodeStatus } from './cluster/node-registry.js';
import { startTelemetry, type Telemetry } from './telemetry.js';
import { PACKAGE_ROOT, VERSION } from './package-info.js';
import { drainSpan } from './telemetry/spans.js';
import type { MediaGateway } from './rooms/media-gateway.js';

export interface NodeOptions {
  readonly logger?: Logger;
  /** Replaces the room bus (tests, cluster). */
  readonly bus?: RoomBus;
}

export class TradingRoomNode {
  readonly config: Config;
  readonly log: Logger;
  readonly metrics: NodeMetrics;
  readonly rooms: RoomService;
  readonly drainController: DrainController;
  /** This node's part of the cluster (registry, RPC, shared limits); undefined when it runs alone. */
  readonly cluster: ClusterMembership<RoomRpcMethods & AdminRpcMethods> | undefined;
  /** The admin API's cluster-wide views (rooms, nodes, drains). */
  readonly admin: AdminService;
  /** The backend's access check of every `room.join` (with `BACKEND_URL`). */
  readonly backendAccess: BackendAccessClient | undefined;
  /** Webhooks to the backend (with `BACKEND_URL` and `BACKEND_WEBHOOK_SECRET`). */
  readonly webhooks: RoomWebhooks | undefined;
  readonly #bus: RoomBus;
  readonly #gateway: Gateway;
  readonly #server: Server;
  readonly #startedAt = Date.now();
  readonly #instanceId = randomUUID();
  #media: MediaGateway | undefined;
  #mediaError: string | undefined;
  #telemetry: Telemetry | undefined;
  #started = false;
  #drainDone: Promise<void> | undefined;
  #shutdownDone: Promise<void> | undefined;

  constructor(config: Config, options: NodeOptions = {}) {
    this.config = config;
    this.log = options.logger ?? createLogger({ level: config.logLevel, nodeId: config.nodeId });
    this.drainController = new DrainController(config.drainTimeoutMs);
    this.metrics = new NodeMetrics({
      nodeId: config.nodeId,
      collect: () => ({
        connections: this.#gateway.connectionCount,
        rooms: this.rooms.roomCount,
        participants: this.rooms.participantCount,
        busDegraded: this.#bus.status().state === 'degraded',
        clusterNodes: this.cluster?.view().aliveNodes ?? 1,
      }),
    });
    this.webhooks = RoomWebhooks.create(config, { registry: this.metrics.registry, log: this.log });
    const bus =
      options.bus ??
      createRoomBus({
        retention: { maxEvents: config.rooms.replayMaxEvents, maxAgeMs: config.rooms.replayMaxAgeMs },
        ...redisBusOptions(config.redis),
        redisKeyPrefix: config.redisKeyPrefix,
        nodeId: config.nodeId,
        onListenerError: (error) => this.log.error({ err: error }, 'room event listener failed'),
        onError: (error, what) => this.log.warn({ err: error, what }, 'room bus: Redis failure'),
        outbox: this.webhooks?.busOutbox,
      });
    this.#bus = this.webhooks ? this.webhooks.wrapBus(bus) : bus;
    this.#bus.onStatus((status) =>
      this.log[status.state === 'ok' ? 'info' : 'warn']({ bus: status }, `room bus ${status.state}`),
    );
    this.cluster = config.redis
      ? new ClusterMembership<RoomRpcMethods & AdminRpcMethods>({
          target: config.redis,
          nodeId: config.nodeId,
          keyPrefix: config.redisKeyPrefix,
          nodeTtlMs: config.nodeTtlMs,
          version: VERSION,
          maxConnectionsPerUser: config.maxConnectionsPerUser,
          load: () => ({
            state: this.drainController.state === 'RUNNING' ? 'running' : 'draining',
            connections: this.#gateway.connectionCount,
            drainDeadline: this.drainController.deadline,
          }),
          log: this.log,
        })
      : undefined;
    this.backendAccess = config.backendUrl
      ? new BackendAccessClient({
          ...config.backendAccess,
          baseUrl: config.backendUrl,
          metrics: backendMetrics(this.metrics.registry),
          log: this.log.child({ component: 'backend' }),
        })
      : undefined;
    this.rooms = new RoomService({
      bus: this.#bus,
      config,
      log: this.log,
      metrics: this.metrics,
      cluster: this.cluster,
      access: this.backendAccess,
    });
    this.#gateway = new Gateway(
      {
        config,
        log: this.log,
        metrics: this.metrics,
        rooms: this.rooms,
        rateLimits: new RateLimits(config.rateLimits, { shared: this.cluster?.limiterFactory }),
        verifier: new TokenVerifier({ ...config.tokenPolicy, secret: config.jwt.secret, jwksUrl: config.jwt.jwksUrl }),
        drain: this.drainController,
        media: () => this.#media,
        reportError: (error, context, trace) => this.#telemetry?.reportError(error, context, trace),
      },
      this.cluster?.connectionCap,
    );
    const cluster = this.cluster;
    const adminFigures = new AdminNodeFigures({
      nodeId: config.nodeId,
      version: VERSION,
      startedAt: this.#startedAt,
      redisMode: config.redis?.mode,
      mediaEnabled: config.media.enabled,
      drain: () => ({
        state: this.drainController.state,
        startedAt: this.drainController.startedAt,
        deadline: this.drainController.deadline,
      }),
      startDrain: () => {
        void this.drain();
        return { state: this.drainController.state, deadline: this.drainController.deadline };
      },
      connections: () => this.#gateway.connectionCount,
      participants: () => this.rooms.participantCount,
      busState: () => this.#bus.status().state,
      rooms: () => this.rooms.summaries(),
      media: () => this.#media?.service,
      backendCircuit: () => this.backendAccess?.circuitState,
    });
    registerAdminMetrics(this.metrics.registry, adminFigures);
    this.admin = new AdminService({
      local: adminFigures,
      cluster: cluster && { rpc: cluster.rpc, nodes: () => cluster.nodes() },
      roomReport: (roomId) => this.rooms.roomReport(roomId),
      selfStatus: () => this.#selfStatus(),
    });
    this.admin.serve();
    const outbox = this.webhooks?.outbox;
    if (outbox) this.admin.useWebhookBacklog((roomIds) => outbox.roomBacklogs(roomIds));
    const api = new HttpApi({
      config,
      log: this.log,
      version: VERSION,
      startedAt: this.#startedAt,
      isStarted: () => this.#started,
      isReady: () => this.#started && this.drainController.state === 'RUNNING',
      health: () => this.health(),
      metrics: async () => ({
        contentType: this.metrics.registry.contentType,
        body: await this.metrics.registry.metrics(),
      }),
      admin: this.admin,
      closeRoom: (roomId) => this.rooms.closeRoom(roomId),
      drain: () => {
        void this.drain();
        return { state: this.drainController.state, deadline: this.drainController.deadline };
      },
      webRoot: join(PACKAGE_ROOT, 'dist', 'web'),
      webhooks: this.webhooks?.outbox,
    });
    this.#server = createServer({ keepAliveTimeout: 5000 }, (req, res) => api.handle(req, res));
    this.#server.on('upgrade', (req, socket, head) => this.#gateway.handleUpgrade(req, socket, head));
    this.#server.on('clientError', (_error, socket) => socket.destroy());
    this.#setDrainMetric();
  }

  /** Starts telemetry, media (when enabled) and the HTTP server. */
  async start(): Promise<this> {
    this.#telemetry = await startTelemetry(this.config, this.log, VERSION);
    if (this.config.media.enabled) await this.#startMedia();
    // Bounded: a node that cannot reach Redis (or whose NODE_ID's earlier process is not reaped
    // yet) starts degraded and registers when it can.
    await this.cluster?.start(2 * this.config.nodeTtlMs);
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(this.config.port, this.config.host, () => {
        this.#server.off('error', reject);
        resolve();
      });
    });
    this.webhooks?.start();
    this.#started = true;
    this.log.info(
      { port: this.port, media: Boolean(this.#media), bus: this.#bus.status(), redis: this.config.redis?.mode },
      'node started',
    );
    return this;
  }

  async #startMedia(): Promise<void> {
    try {
      const [{ MediaService, registerPipeMetrics }, { registerMediaMetrics }, { MediaGateway }] = await Promise.all([
        import('../../sfu/src/index.js'),
        import('../../sfu/src/media-metrics.js'),
        import('./rooms/media-gateway.js'),
      ]);
      const m = this.config.media;
      const service = await MediaService.create({
        numWorkers: m.numWorkers,
        listenIp: m.listenIp,
        announcedAddress: m.announcedAddress,
        pipeAnnouncedAddress: m.pipeAnnouncedAddress,
        pipeSrtp: m.pipeSrtp,
        rtcBasePort: m.rtcBasePort,
        plainTransportsEnabled: m.plainTransports,
        consumersPerRouter: m.consumersPerRouter,
        maxTransportsPerParticipant: m.maxTransportsPerParticipant,
        maxProducersPerParticipant: m.maxProducersPerParticipant,
        maxConsumersPerParticipant: m.maxConsumersPerParticipant,
        logger: this.log.child({ component: 'sfu' }),
      });
      registerMediaMetrics(this.metrics.registry, service);
      const cluster = this.cluster;
      this.#media = new MediaGateway(service, this.rooms, this.log, {
        plainAllowedCidrs: m.plainAllowedCidrs,
        cluster:
          cluster && this.config.redis
            ? {
                rpc: cluster.rpc,
                registry: cluster.registry,
                nodeId: cluster.nodeId,
                instanceId: cluster.registry.instanceId,
                target: this.config.redis,
                keyPrefix: this.config.redisKeyPrefix,
                nodeTtlMs: this.config.nodeTtlMs,
              }
            : undefined,
        draining: () => this.drainController.state !== 'RUNNING',
        pipeMetrics: registerPipeMetrics(this.metrics.registry, service),
      });
      this.rooms.useMedia(this.#media);
    } catch (error) {
      this.#mediaError = error instanceof Error ? error.message : String(error);
      this.log.error({ err: error }, 'media unavailable: sfu.* requests will be answered UNAVAILABLE');
    }
  }

  /** The port the server listens on (useful with PORT=0). */
  get port(): number {
    return (this.#server.address() as AddressInfo | null)?.port ?? this.config.port;
  }

  get media(): MediaGateway | undefined {
    return this.#media;
  }

  /**
   * The cluster's nodes as `GET /admin/nodes` lists them; alone, just this one. Rejects with
   * `BusUnavailableError` when Redis does not answer.
   */
  async nodes(): Promise<unknown[]> {
    if (this.cluster) return this.cluster.nodes();
    return [this.#selfStatus()];
  }

  /** This node as a heartbeat entry would list it (when it runs alone). */
  #selfStatus(): NodeStatus {
    return {
      nodeId: this.config.nodeId,
      instanceId: this.#instanceId,
      state: this.drainController.state === 'RUNNING' ? 'running' : 'draining',
      connections: this.#gateway.connectionCount,
      rooms: this.rooms.roomCount,
      startedAt: this.#startedAt,
      heartbeatAt: Date.now(),
      drainDeadline: this.drainController.deadline,
      version: VERSION,
      alive: true,
    };
  }

  health(): Record<string, unknown> {
    const drain = this.drainController;
    const bus = this.#bus.status();
    const running = bus.state === 'ok' ? 'ok' : 'degraded';
    return {
      status: drain.state === 'RUNNING' ? running : drain.state.toLowerCase(),
      nodeId: this.config.nodeId,
      version: VERSION,
      uptimeSeconds: Math.round((Date.now() - this.#startedAt) / 1000),
      connections: this.#gateway.connectionCount,
      rooms: this.rooms.roomCount,
      participants: this.rooms.participantCount,
      bus,
      cluster: this.cluster
        ? {
            redis: this.config.redis?.mode,
            registered: this.cluster.registered,
            ...this.cluster.view(),
          }
        : { redis: undefined, aliveNodes: 1 },
      media: this.#media
        ? {
            state: 'ok',
            ...this.#media.service.stats(),
            ports: this.#media.service.workers().map((w) => ({ udp: w.udpPort, tcp: w.tcpPort })),
          }
        : { state: this.config.media.enabled ? 'unavailable' : 'disabled', error: this.#mediaError },
      drain: {
        state: drain.state,
        startedAt: drain.startedAt,
        deadline: drain.deadline,
        remainingConnections: this.#gateway.connectionCount,
      },
    };
  }

  /**
   * Drains the node: readiness 503 and upgrades refused at once, `server.draining` to every
   * client, stragglers closed with 1012 at the deadline, then everything closed in order.
   * A second call returns the drain already under way.
   */
  drain(): Promise<void> {
    if (this.#drainDone) return this.#drainDone;
    if (!this.drainController.drain()) return Promise.resolve();
    this.#setDrainMetric();
    const deadline = this.drainController.deadline as number;
    const span = drainSpan(this.config.nodeId, this.#gateway.connectionCount, deadline);
    this.log.info({ deadline, connections: this.#gateway.connectionCount }, 'draining');
    this.#gateway.announceDrain(deadline);
    // Peers see `draining` now rather than at the next heartbeat.
    void this.cluster?.registry.heartbeat().catch(() => {});
    // Error reports and spans queued so far leave now, while the process surely lives.
    void this.#telemetry?.flush(2000);
    this.#drainDone = (async () => {
      const progress = setInterval(
        () => this.metrics.drainRemainingConnections.set(this.#gateway.connectionCount),
        250,
      );
      progress.unref();
      await this.#gateway.waitForSockets(Math.max(0, deadline - Date.now()));
      span.setAttribute('trading_room.closed_at_deadline', this.#gateway.connectionCount);
      if (this.#gateway.connectionCount > 0) {
        this.log.info(
          { remaining: this.#gateway.connectionCount },
          'drain deadline reached; closing the rest with 1012',
        );
        this.#gateway.closeAll(CloseCode.DRAIN_DEADLINE, 'drain deadline reached');
        await this.#gateway.waitForSockets(2500);
      }
      clearInterval(progress);
      // Ended before the shutdown flushes the exporters, so it leaves with them.
      span.end();
      await this.#shutdown();
    })();
    return this.#drainDone;
  }

  /** Closes at once (tests, or after a drain); safe to call twice. */
  async close(): Promise<void> {
    if (this.drainController.state === 'CLOSED') return;
    this.drainController.drain();
    this.#gateway.closeAll(CloseCode.GOING_AWAY, 'server shutting down');
    await this.#gateway.waitForSockets(2000);
    await this.#shutdown();
  }

  #shutdown(): Promise<void> {
    this.#shutdownDone ??= this.#closeResources();
    return this.#shutdownDone;
  }

  async #closeResources(): Promise<void> {
    this.#gateway.close();
    let roomsClosed = true;
    try {
      await this.rooms.close();
    } catch (error) {
      roomsClosed = false;
      this.log.error({ err: error }, 'closing the rooms failed');
    }
    await this.#media?.close();
    // After the rooms: their last departures and `room.finished` are in the outbox by now.
    // Alone, what waits is delivered until the drain's deadline (at least one attempt's time).
    const attemptMs = this.config.webhooks?.timeoutMs ?? 0;
    const drainDeadline = this.#drainDone ? (this.drainController.deadline ?? 0) : 0;
    const webhooksDeadline = Math.max(drainDeadline, Date.now() + attemptMs);
    await this.webhooks?.close(webhooksDeadline).catch((error: unknown) => {
      this.log.warn({ err: error }, 'closing the webhook outbox failed');
    });
    // Rooms closed properly: deregister. Otherwise survivors take over its participants.
    await this.cluster?.close(roomsClosed);
    await this.#bus.close();
    this.backendAccess?.close();
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
    await this.#telemetry?.shutdown();
    this.drainController.close();
    this.#setDrainMetric();
    this.log.info('node closed');
  }

  #setDrainMetric(): void {
    for (const state of ['RUNNING', 'DRAINING', 'CLOSED'] as const) {
      this.metrics.drainState.set({ state: state.toLowerCase() }, this.drainController.state === state ? 1 : 0);
    }
  }
}

/** The bus factory's Redis options (spelt as the variables are) for the configuration's target. */
function redisBusOptions(target: RedisTarget | undefined): Partial<RoomBusOptions> {
  const addresses = (list: readonly HostPort[]): string[] =>
    list.map(({ host, port }) => (host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`));
  switch (target?.mode) {
    case undefined:
      return {};
    case 'single':
      return { redisUrl: target.url };
    case 'sentinel':
      return { redisUrl: target.url, redisSentinels: addresses(target.sentinels), redisSentinelName: target.name };
    case 'cluster':
      return { redisUrl: target.url, redisClusterNodes: addresses(target.nodes) };
  }
}
