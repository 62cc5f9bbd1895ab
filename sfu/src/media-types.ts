import type { types } from 'mediasoup';

/** What a producer carries, as named by the protocol's `source`. */
export type MediaSource = 'camera' | 'microphone' | 'screen' | 'screen-audio';

/** Direction of a transport, seen from the client: `send` carries producers, `recv` consumers. */
export type TransportDirection = 'send' | 'recv';

/** Why a producer closed. */
export type ProducerCloseReason =
  /** Its owner (or a moderator) closed it. */
  | 'closed'
  /** Its owner lost the right to publish (`closeParticipantProducers`). */
  | 'role-revoked'
  /** Its transport closed. */
  | 'transport-closed'
  /** Its owner left the room (`closeParticipant`). */
  | 'participant-left'
  /** The room's media closed (`closeRoom`, service close). */
  | 'room-closed'
  /** The worker holding it died; the owner has to publish again. */
  | 'worker-died'
  /** Piped in from another node: that node closed it (its owner closed it, left or moved). */
  | 'origin-closed'
  /** Piped in from another node: that node went away (died, or left the cluster). */
  | 'origin-lost'
  /** Piped in from another node: nobody here consumes it any more. */
  | 'unpiped';

/** Why a consumer closed. */
export type ConsumerCloseReason =
  /** Its producer closed, for whatever reason. */
  | 'producer-closed'
  /** Its transport closed. */
  | 'transport-closed'
  /** Its owner left the room. */
  | 'participant-left'
  /** The room's media closed. */
  | 'room-closed'
  /** The worker holding it (or its transport) died; the owner has to consume again. */
  | 'worker-died'
  /** Its producer was piped in from another node, and that node went away (died, or left the cluster). */
  | 'origin-lost';

/** Why a transport closed. */
export type TransportCloseReason = 'participant-left' | 'room-closed' | 'worker-died';

/** `producerclosed` event: a producer of the room is gone (protocol `producer.removed`). */
export type ProducerClosedEvent = {
  roomId: string;
  participantId: string;
  producerId: string;
  reason: ProducerCloseReason;
};

/** `consumerclosed` event: a participant's consumer is gone (protocol `consumer.closed`). */
export type ConsumerClosedEvent = {
  roomId: string;
  participantId: string;
  consumerId: string;
  producerId: string;
  reason: ConsumerCloseReason;
};

/**
 * `transportclosed` event: a participant's transport is gone without the participant having
 * left, i.e. its worker died. The client must create a new transport (and produce/consume again).
 */
export type TransportClosedEvent = {
  roomId: string;
  participantId: string;
  transportId: string;
  reason: TransportCloseReason;
};

/**
 * `consumerlayerschanged` event: the layers a simulcast/SVC consumer forwards changed
 * (protocol `consumer.layersChanged`). Not emitted when the consumer stops forwarding altogether
 * (mediasoup's layers `undefined`, e.g. the producer paused).
 */
export type ConsumerLayersChangedEvent = {
  roomId: string;
  participantId: string;
  consumerId: string;
  spatialLayer: number;
  temporalLayer: number;
};

/** `activespeaker` event: the room's dominant speaker, `null` when nobody speaks any more. */
export type ActiveSpeakerEvent = {
  roomId: string;
  participantId: string | null;
};

/** `workerdied` event: a mediasoup worker process died; its routers and everything on them are gone. */
export type WorkerDiedEvent = { workerIndex: number; pid: number };

/** `workerrestarted` event: a replacement worker for `workerIndex` is up. */
export type WorkerRestartedEvent = { workerIndex: number; pid: number };

/** Which way a pipe between nodes carries a producer, seen from this node. */
export type PipeDirection = 'in' | 'out';

/**
 * `pipepaused` event: a producer piped out to node `nodeId` was paused or resumed here (its
 * origin): that node must pause or resume its pipe producer ({@link MediaService.setPipeInPaused}).
 */
export type PipePausedEvent = { roomId: string; producerId: string; nodeId: string; paused: boolean };

/**
 * `pipeclosed` event: this node's end of a pipe with node `nodeId` closed. For `out` (this node
 * is the origin) that node must close its piped-in producer ({@link MediaService.closePipeIn});
 * for `in` the origin must close its end ({@link MediaService.closePipeOut}), unless the origin
 * closed first or went away (`reason` `origin-closed` or `origin-lost`).
 */
export type PipeClosedEvent = {
  roomId: string;
  producerId: string;
  nodeId: string;
  direction: PipeDirection;
  reason: ProducerCloseReason | 'producer-closed' | 'node-lost';
};

/** Events of one room's media (each carries its `roomId`). */
export type RoomMediaEvents = {
  producerclosed: [ProducerClosedEvent];
  consumerclosed: [ConsumerClosedEvent];
  transportclosed: [TransportClosedEvent];
  consumerlayerschanged: [ConsumerLayersChangedEvent];
  activespeaker: [ActiveSpeakerEvent];
  pipepaused: [PipePausedEvent];
  pipeclosed: [PipeClosedEvent];
};

/** Events of {@link MediaService}. */
export type MediaServiceEvents = RoomMediaEvents & {
  workerdied: [WorkerDiedEvent];
  workerrestarted: [WorkerRestartedEvent];
};

/** Result of `createWebRtcTransport`: what the client's device needs to create its transport. */
export type WebRtcTransportInfo = {
  transportId: string;
  iceParameters: types.IceParameters;
  iceCandidates: types.IceCandidate[];
  dtlsParameters: types.DtlsParameters;
};

/** Result of `createPlainTransport`: where to send RTP to (or where it comes from). */
export type PlainTransportInfo = {
  transportId: string;
  ip: string;
  port: number;
  /** Present when the transport was created with `rtcpMux: false`. */
  rtcpPort?: number;
};

/** Parameters of `produce`. */
export type ProduceOptions = {
  transportId: string;
  kind: types.MediaKind;
  rtpParameters: types.RtpParameters;
  source: MediaSource;
};

/** Parameters of `consume`. */
export type ConsumeOptions = {
  transportId: string;
  producerId: string;
  rtpCapabilities: types.RtpCapabilities;
};

/** Result of `consume`. The consumer starts paused: call `resumeConsumer` once the client is ready. */
export type ConsumerInfo = {
  consumerId: string;
  producerId: string;
  kind: types.MediaKind;
  rtpParameters: types.RtpParameters;
  paused: true;
  /** Whether the producer is paused (nothing flows until it resumes). */
  producerPaused: boolean;
};

/** Parameters of `createPlainTransport`. */
export type PlainTransportOptions = {
  direction: TransportDirection;
  /** Learn the remote address from the first packet received (encoder ingest). Default false. */
  comedia?: boolean;
  /** RTP and RTCP on one port. Default true. */
  rtcpMux?: boolean;
};

/** Parameters of `connectPlainTransport`: the remote end's address. */
export type PlainTransportRemote = {
  transportId: string;
  ip: string;
  port: number;
  /** Remote RTCP port, only for transports created with `rtcpMux: false`. */
  rtcpPort?: number;
};

/** One producer of a room, as listed by `listProducers`. */
export type ProducerSummary = {
  producerId: string;
  participantId: string;
  kind: types.MediaKind;
  source: MediaSource;
  paused: boolean;
};

/** Counts of one room's media objects, as seen by clients (pipes not included). */
export type RoomMediaCounts = {
  routers: number;
  transports: number;
  producers: number;
  consumers: number;
};

/** `stats()` of the media service. */
export type MediaStats = RoomMediaCounts & {
  workers: number;
  workersAlive: number;
  /** Successful restarts of dead workers since start. */
  workerRestarts: number;
  rooms: number;
  /** Producers piped in from other nodes (one pipe per producer per node). */
  pipesIn: number;
  /** Pipes carrying this node's producers to other nodes (one per producer and node). */
  pipesOut: number;
};

/** CPU and memory of one live worker process. */
export type WorkerUsage = {
  workerIndex: number;
  pid: number;
  /** CPU time since the process started, user + system, in milliseconds. */
  cpuTimeMs: number;
  /** Peak resident set size, in kilobytes. */
  maxRssKb: number;
};

/** Bytes moved by the clients' transports, summed over the transports open now. */
export type TransportTraffic = {
  bytesReceived: number;
  bytesSent: number;
  /** Transports whose stats did not arrive before the timeout. */
  transportsTimedOut: number;
};

/** This node's end of a pipe between nodes: where the other end sends to, and its SRTP keys. */
export type PipeEnd = {
  ip: string;
  port: number;
  /** Present when the pipe is encrypted (nodes not on one host's loopback). */
  srtpParameters?: types.SrtpParameters;
};

/** What the origin answers to a pipe request: its end, and the producer as the pipe carries it. */
export type PipeOffer = PipeEnd & {
  participantId: string;
  kind: types.MediaKind;
  source: MediaSource;
  rtpParameters: types.RtpParameters;
  paused: boolean;
};

/**
 * How this node reaches the node a producer comes from, to consume it here (signaling implements
 * it over the cluster RPC): `open` hands the origin this node's end and resolves the origin's.
 */
export interface PipeOrigin {
  readonly nodeId: string;
  open(end: PipeEnd): Promise<PipeOffer>;
}

/** One pipe between nodes, as listed by `pipes()`. */
export type PipeSummary = {
  roomId: string;
  producerId: string;
  /** The node at the other end. */
  nodeId: string;
  direction: PipeDirection;
  /** Consumers of the piped-in producer on this node (`in` only). */
  consumers?: number;
};

/** Bitrate of the pipes between nodes open now, by direction, in bits per second. */
export type PipeTraffic = Record<PipeDirection, number> & {
  /** Pipes whose stats did not arrive before the timeout. */
  pipesTimedOut: number;
};
