/**
 * The protocol's types: every method's `data` and result, every notification's `data`.
 * Generated from `signaling/src/protocol/` by `npm run generate:client`: do not edit; a test fails when it is stale.
 */

/** A role in a room. */
export type Role = 'presenter' | 'moderator' | 'trader';

/** A participant as the server describes it. */
export interface Participant {
  participantId: string;
  userId: string;
  name: string;
  role: 'presenter' | 'moderator' | 'trader';
  /** epoch ms */
  joinedAt: number;
}

/** Every client → server method: what `data` it takes and what it answers. */
export interface Methods {
  /** Join the room named by the token; with `resume`, replay missed durable events first. Who: every joined participant. */
  'room.join': {
    data: {
      /** used when the token carries no `name`; control, bidi and zero-width characters are removed, and a name left empty becomes the user id */
      displayName?: string;
      resume?: {
        sessionId: string;
        lastSeq: number;
        /** the epoch `lastSeq` belongs to; another epoch than the room’s joins afresh (`resumed: false`) */
        epoch?: string;
      };
    };
    result: {
      sessionId: string;
      participantId: string;
      roomId: string;
      role: 'presenter' | 'moderator' | 'trader';
      /** may be truncated in large rooms */
      participants: {
        participantId: string;
        userId: string;
        name: string;
        role: 'presenter' | 'moderator' | 'trader';
        /** epoch ms */
        joinedAt: number;
      }[];
      participantCount: number;
      producers: {
        producerId: string;
        participantId: string;
        kind: 'audio' | 'video';
        source: 'camera' | 'microphone' | 'screen' | 'screen-audio';
        paused: boolean;
        /** the node the producer is published on (in a cluster; added to the contract): a producer of another node is consumed like any other, piped from there */
        nodeId?: string;
      }[];
      lastSeq: number;
      /** the identity of the room’s event history `lastSeq` belongs to (cluster addition) */
      epoch: string;
      /** mediasoup RtpCapabilities; null when media is off */
      routerRtpCapabilities: unknown;
      resumed: boolean;
    };
  };
  /** Leave the room; the socket stays open and may join again. Who: every joined participant. */
  'room.leave': {
    data: Record<string, never>;
    result: Record<string, never>;
  };
  /** The newest retained chat messages and alerts before `beforeSeq`, oldest first (page backwards). Who: every joined participant. */
  'room.history': {
    data: {
      /** default: both */
      kinds?: ('chat' | 'alert')[];
      /** only events older than this `seq`; default: the newest */
      beforeSeq?: number;
      /** default 50 */
      limit?: number;
    };
    result: {
      /** oldest first, exactly the notifications delivered live */
      events: (
        | {
            event: 'chat.message';
            data: {
              messageId: string;
              from: {
                participantId: string;
                userId: string;
                name: string;
                role: 'presenter' | 'moderator' | 'trader';
              };
              text: string;
              ts: number;
            };
            seq: number;
          }
        | {
            event: 'alert.published';
            data: {
              alertId: string;
              from: {
                participantId: string;
                userId: string;
                name: string;
                role: 'presenter' | 'moderator' | 'trader';
              };
              symbol: string;
              action: 'buy' | 'sell' | 'close' | 'watch';
              price?: number;
              note?: string;
              ts: number;
            };
            seq: number;
          }
      )[];
      /** older matching events are still retained: ask again with `beforeSeq` */
      hasMore: boolean;
      /** with `hasMore`: the `beforeSeq` of the next (older) page */
      nextBeforeSeq?: number;
      /** retention already dropped events of this epoch */
      truncated: boolean;
      /** the epoch the events belong to: only the current epoch is served */
      epoch: string;
    };
  };
  /** Replace the access token before it expires (same user and room); a new role in it applies as moderation.setRole would, unless a moderator changed this user's role in the room. Who: every joined participant. */
  'session.refresh': {
    data: {
      token: string;
    };
    result: {
      /** epoch ms */
      expiresAt: number;
    };
  };
  /** Round trip; returns the server clock. Who: every joined participant. */
  ping: {
    data: Record<string, never>;
    result: {
      /** server epoch ms */
      now: number;
    };
  };
  /** Send a chat message to the room (1-2000 characters). Who: every joined participant. */
  'chat.send': {
    data: {
      text: string;
    };
    result: {
      messageId: string;
      seq: number;
    };
  };
  /** Publish a trade alert to the room. Who: presenter, moderator. */
  'alert.publish': {
    data: {
      symbol: string;
      action: 'buy' | 'sell' | 'close' | 'watch';
      price?: number;
      note?: string;
    };
    result: {
      alertId: string;
      seq: number;
    };
  };
  /** Remove a participant (closed with 4003; may not rejoin for KICK_BAN_MS). Who: moderator. */
  'moderation.kick': {
    data: {
      participantId: string;
    };
    result: Record<string, never>;
  };
  /** Pause all of a participant's producers. Who: moderator. */
  'moderation.mute': {
    data: {
      participantId: string;
    };
    result: Record<string, never>;
  };
  /** Change a participant's role; takes effect at once (a demoted publisher's producers close). Who: moderator. */
  'moderation.setRole': {
    data: {
      participantId: string;
      role: 'presenter' | 'moderator' | 'trader';
    };
    result: Record<string, never>;
  };
  /** Create a WebRTC transport (send: presenters and moderators). Who: every joined participant. */
  'sfu.createTransport': {
    data: {
      direction: 'send' | 'recv';
    };
    result: {
      transportId: string;
      iceParameters: unknown;
      iceCandidates: unknown;
      dtlsParameters: unknown;
    };
  };
  /** Complete DTLS for one of your transports. Who: every joined participant. */
  'sfu.connectTransport': {
    data: {
      transportId: string;
      dtlsParameters: {
        role?: 'auto' | 'client' | 'server';
        fingerprints: {
          algorithm: string;
          value: string;
          [key: string]: unknown;
        }[];
        [key: string]: unknown;
      };
    };
    result: Record<string, never>;
  };
  /** Publish a track on your send transport. Who: presenter, moderator. */
  'sfu.produce': {
    data: {
      transportId: string;
      kind: 'audio' | 'video';
      rtpParameters: {
        codecs: {
          [key: string]: unknown;
        }[];
        encodings?: {
          [key: string]: unknown;
        }[];
        headerExtensions?: {
          [key: string]: unknown;
        }[];
        rtcp?: {
          [key: string]: unknown;
        };
        mid?: string;
        [key: string]: unknown;
      };
      source: 'camera' | 'microphone' | 'screen' | 'screen-audio';
    };
    result: {
      producerId: string;
    };
  };
  /** Receive a producer on your recv transport; the consumer starts paused. Who: every joined participant. */
  'sfu.consume': {
    data: {
      transportId: string;
      producerId: string;
      rtpCapabilities: {
        codecs?: {
          [key: string]: unknown;
        }[];
        headerExtensions?: {
          [key: string]: unknown;
        }[];
        [key: string]: unknown;
      };
    };
    result: {
      consumerId: string;
      producerId: string;
      kind: 'audio' | 'video';
      rtpParameters: unknown;
      paused: true;
      /** the producer is paused now (added to the contract) */
      producerPaused: boolean;
    };
  };
  /** Start the flow of one of your consumers. Who: every joined participant. */
  'sfu.resumeConsumer': {
    data: {
      consumerId: string;
    };
    result: Record<string, never>;
  };
  /** Pause a producer (its owner, or a moderator). Who: every joined participant. */
  'sfu.pauseProducer': {
    data: {
      producerId: string;
    };
    result: Record<string, never>;
  };
  /** Resume a producer (its owner, or a moderator). Who: every joined participant. */
  'sfu.resumeProducer': {
    data: {
      producerId: string;
    };
    result: Record<string, never>;
  };
  /** Close a producer (its owner, or a moderator). Who: every joined participant. */
  'sfu.closeProducer': {
    data: {
      producerId: string;
    };
    result: Record<string, never>;
  };
  /** Choose the preferred simulcast/SVC layers of one of your consumers. Who: every joined participant. */
  'sfu.setConsumerLayers': {
    data: {
      consumerId: string;
      spatialLayer: number;
      temporalLayer?: number;
    };
    result: Record<string, never>;
  };
  /** Restart ICE on one of your transports. Who: every joined participant. */
  'sfu.restartIce': {
    data: {
      transportId: string;
    };
    result: {
      iceParameters: unknown;
    };
  };
  /** Create a plain RTP transport, only when SFU_PLAIN_TRANSPORTS=true (send: presenters and moderators; recv, for recording and monitoring taps: moderators). Who: presenter, moderator. */
  'sfu.createPlainTransport': {
    data: {
      direction: 'send' | 'recv';
      comedia?: boolean;
      rtcpMux?: boolean;
    };
    result: {
      transportId: string;
      ip: string;
      port: number;
      rtcpPort?: number;
    };
  };
  /** Tell a plain transport where to send RTP (and RTCP): an address inside SFU_PLAIN_ALLOWED_CIDRS (FORBIDDEN outside), never an unspecified, multicast or broadcast one (BAD_REQUEST). Who: every joined participant. */
  'sfu.connectPlainTransport': {
    data: {
      transportId: string;
      ip: string | string;
      port: number;
      rtcpPort?: number;
    };
    result: Record<string, never>;
  };
}

export type MethodName = keyof Methods;

export type MethodData<M extends MethodName> = Methods[M]['data'];

export type MethodResult<M extends MethodName> = Methods[M]['result'];

/** Durable room events: carry `seq`, every participant gets each in order, replayed on resume. */
export interface DurableEvents {
  'participant.joined': {
    participant: {
      participantId: string;
      userId: string;
      name: string;
      role: 'presenter' | 'moderator' | 'trader';
      /** epoch ms */
      joinedAt: number;
    };
  };
  'participant.left': {
    participantId: string;
    reason: 'left' | 'disconnected' | 'kicked' | 'replaced' | 'room-closed';
  };
  'participant.updated': {
    participant: {
      participantId: string;
      userId: string;
      name: string;
      role: 'presenter' | 'moderator' | 'trader';
      /** epoch ms */
      joinedAt: number;
    };
  };
  'producer.added': {
    producerId: string;
    participantId: string;
    kind: 'audio' | 'video';
    source: 'camera' | 'microphone' | 'screen' | 'screen-audio';
    /** the node the producer is published on (in a cluster; added to the contract) */
    nodeId?: string;
  };
  'producer.removed': {
    producerId: string;
    /** why (added to the contract): `closed`, `participant-left`, `role-revoked`, `transport-closed`, `worker-died`; `migrating` when its publisher is moving to another node (its node drains): a `producer.added` of its new producer follows, consume that one; `node-lost` when the node it was published on died */
    reason?: string;
  };
  'producer.paused': {
    producerId: string;
  };
  'producer.resumed': {
    producerId: string;
  };
  'chat.message': {
    messageId: string;
    from: {
      participantId: string;
      userId: string;
      name: string;
      role: 'presenter' | 'moderator' | 'trader';
    };
    text: string;
    ts: number;
  };
  'alert.published': {
    alertId: string;
    from: {
      participantId: string;
      userId: string;
      name: string;
      role: 'presenter' | 'moderator' | 'trader';
    };
    symbol: string;
    action: 'buy' | 'sell' | 'close' | 'watch';
    price?: number;
    note?: string;
    ts: number;
  };
}

/** Ephemeral events: no `seq`, not replayed. */
export interface EphemeralEvents {
  'participant.count': {
    count: number;
  };
  'consumer.closed': {
    consumerId: string;
    /** `producer-closed`, `transport-closed`, `worker-died`; `origin-lost` when the producer was published on another node that went away (died or left the cluster) */
    reason: string;
  };
  /** one of your transports died with its worker: create a new one, then produce/consume again */
  'transport.closed': {
    transportId: string;
    reason: string;
  };
  'consumer.layersChanged': {
    consumerId: string;
    spatialLayer: number;
    temporalLayer: number;
  };
  activeSpeaker: {
    participantId: string | null;
  };
  'server.draining': {
    /** epoch ms when remaining sockets are closed with 1012 */
    deadline: number;
    reconnectAfterMs: number;
  };
  'session.kicked': {
    reason: string;
  };
  /** the room’s history restarted (lost by the shared store) or skipped events this node could no longer read: durable events continue under `epoch`, the next with `seq` lastSeq + 1; events of the old numbering that did not arrive are lost, reload state if it matters */
  'room.resync': {
    epoch: string;
    lastSeq: number;
  };
}

export type DurableEventName = keyof DurableEvents;

export type EphemeralEventName = keyof EphemeralEvents;

export type EventName = DurableEventName | EphemeralEventName;

export type EventData<E extends EventName> = E extends DurableEventName
  ? DurableEvents[E]
  : E extends EphemeralEventName
    ? EphemeralEvents[E]
    : never;

/** A notification as it travels on the wire. */
export type Notification<E extends EventName = EventName> = E extends DurableEventName
  ? { event: E; data: EventData<E>; seq: number }
  : { event: E; data: EventData<E> };
