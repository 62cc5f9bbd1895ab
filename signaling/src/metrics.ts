/**
 * The node's Prometheus metrics. Labels are bounded: methods come from the contract's list
 * (anything else counts as `unknown`), outcomes and codes from the error catalogue; never a room
 * or user id.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

export class NodeMetrics {
  readonly registry = new Registry();
  readonly connections: Gauge;
  readonly rooms: Gauge;
  readonly participants: Gauge;
  readonly messagesReceived: Counter<'method' | 'outcome'>;
  readonly messageSeconds: Histogram<'method'>;
  readonly durableEvents: Counter;
  readonly fanoutDeliveries: Counter;
  readonly historyRequests: Counter<'outcome'>;
  readonly historyEventsServed: Counter;
  readonly errors: Counter<'code'>;
  readonly upgradesRefused: Counter<'status'>;
  readonly rateLimited: Counter<'kind'>;
  readonly closedConnections: Counter<'code'>;
  readonly slowConsumers: Counter;
  readonly drainState: Gauge<'state'>;
  readonly drainRemainingConnections: Gauge;
  readonly busDegraded: Gauge;
  readonly clusterNodes: Gauge;

  constructor(options: {
    nodeId: string;
    collect: () => {
      connections: number;
      rooms: number;
      participants: number;
      /** The room bus cannot reach Redis. */
      busDegraded: boolean;
      /** Live nodes of the cluster as this node last saw them (1 when alone). */
      clusterNodes: number;
    };
  }) {
    const registers = [this.registry];
    this.registry.setDefaultLabels({ node: options.nodeId });
    collectDefaultMetrics({ register: this.registry, prefix: 'trading_room_process_' });
    const read = options.collect;
    this.connections = new Gauge({
      name: 'trading_room_connections',
      help: 'Open WebSocket connections on this node',
      registers,
      collect() {
        this.set(read().connections);
      },
    });
    this.rooms = new Gauge({
      name: 'trading_room_rooms',
      help: 'Rooms with participants on this node',
      registers,
      collect() {
        this.set(read().rooms);
      },
    });
    this.participants = new Gauge({
      name: 'trading_room_participants',
      help: 'Participants whose session lives on this node (connected or within the resume grace)',
      registers,
      collect() {
        this.set(read().participants);
      },
    });
    this.messagesReceived = new Counter({
      name: 'trading_room_messages_received_total',
      help: 'Client requests by method and outcome (ok or the error code)',
      labelNames: ['method', 'outcome'],
      registers,
    });
    this.messageSeconds = new Histogram({
      name: 'trading_room_message_handling_seconds',
      help: 'Time from a request frame arriving to its response being written',
      labelNames: ['method'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
    this.durableEvents = new Counter({
      name: 'trading_room_durable_events_published_total',
      help: 'Durable room events published by this node',
      registers,
    });
    this.historyRequests = new Counter({
      name: 'trading_room_history_requests_total',
      help: 'room.history requests the room service answered (ok) or failed (error)',
      labelNames: ['outcome'],
      registers,
    });
    this.historyEventsServed = new Counter({
      name: 'trading_room_history_events_served_total',
      help: 'Events served by room.history',
      registers,
    });
    this.fanoutDeliveries = new Counter({
      name: 'trading_room_fanout_deliveries_total',
      help: 'Notification frames written to sockets by room fan-out',
      registers,
    });
    this.errors = new Counter({
      name: 'trading_room_errors_total',
      help: 'Error responses by protocol error code',
      labelNames: ['code'],
      registers,
    });
    this.upgradesRefused = new Counter({
      name: 'trading_room_upgrades_refused_total',
      help: 'WebSocket upgrades refused, by HTTP status',
      labelNames: ['status'],
      registers,
    });
    this.rateLimited = new Counter({
      name: 'trading_room_rate_limited_total',
      help: 'Requests or upgrades refused by a rate limit, by limit kind',
      labelNames: ['kind'],
      registers,
    });
    this.closedConnections = new Counter({
      name: 'trading_room_connections_closed_total',
      help: 'Connections closed, by close code',
      labelNames: ['code'],
      registers,
    });
    this.slowConsumers = new Counter({
      name: 'trading_room_slow_consumers_closed_total',
      help: 'Sockets closed because they did not read their notifications',
      registers,
    });
    this.drainState = new Gauge({
      name: 'trading_room_drain_state',
      help: '1 for the node drain state it is in (running, draining, closed)',
      labelNames: ['state'],
      registers,
    });
    this.drainRemainingConnections = new Gauge({
      name: 'trading_room_drain_remaining_connections',
      help: 'Connections still open while draining',
      registers,
    });
    this.busDegraded = new Gauge({
      name: 'trading_room_bus_degraded',
      help: '1 while the room bus cannot reach Redis (cross-node delivery stopped; liveness unaffected)',
      registers,
      collect() {
        this.set(read().busDegraded ? 1 : 0);
      },
    });
    this.clusterNodes = new Gauge({
      name: 'trading_room_cluster_nodes',
      help: 'Live nodes of the cluster, as this node last read them from Redis (1 when alone)',
      registers,
      collect() {
        this.set(read().clusterNodes);
      },
    });
  }
}
