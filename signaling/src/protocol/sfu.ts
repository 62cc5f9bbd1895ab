/**
 * `sfu.*`: WebRTC and plain RTP media through the node's mediasoup SFU. Schemas check the shape
 * the contract fixes; mediasoup validates RTP parameters and capabilities in depth, and its
 * rejections come back as BAD_REQUEST.
 */
import { z } from 'zod';
import { emptySchema, idSchema, mediaKindSchema, mediaSourceSchema, PUBLISHING_ROLES } from './common.js';
import { defineMethod, type MethodDefinition } from './method.js';
import { ProtocolError } from '../errors.js';
import type { RoomConnection } from '../rooms/room-connection.js';

export const producerInfoSchema = z.object({
  producerId: z.string(),
  participantId: z.string(),
  kind: mediaKindSchema,
  source: mediaSourceSchema,
  paused: z.boolean(),
  nodeId: z
    .string()
    .optional()
    .describe(
      'the node the producer is published on (in a cluster; added to the contract): a producer of another node is consumed like any other, piped from there',
    ),
});

/** An object whose inner structure mediasoup validates. */
const mediaObject = z.record(z.string(), z.unknown());
const dtlsParametersSchema = z.looseObject({
  role: z.enum(['auto', 'client', 'server']).optional(),
  fingerprints: z.array(z.looseObject({ algorithm: z.string(), value: z.string() })).min(1),
});
const rtpParametersSchema = z.looseObject({
  codecs: z.array(mediaObject).min(1),
  encodings: z.array(mediaObject).optional(),
  headerExtensions: z.array(mediaObject).optional(),
  rtcp: mediaObject.optional(),
  mid: z.string().optional(),
});
const rtpCapabilitiesSchema = z.looseObject({
  codecs: z.array(mediaObject).optional(),
  headerExtensions: z.array(mediaObject).optional(),
});
const directionSchema = z.enum(['send', 'recv']);
const producerTarget = z.strictObject({ producerId: idSchema });
const ipSchema = z.union([z.ipv4(), z.ipv6()]);
const portSchema = z.number().int().min(1).max(65535);

export type DtlsParametersData = z.infer<typeof dtlsParametersSchema>;
export type RtpParametersData = z.infer<typeof rtpParametersSchema>;
export type RtpCapabilitiesData = z.infer<typeof rtpCapabilitiesSchema>;

const produceDataSchema = z.strictObject({
  transportId: idSchema,
  kind: mediaKindSchema,
  rtpParameters: rtpParametersSchema,
  source: mediaSourceSchema,
});
const consumeDataSchema = z.strictObject({
  transportId: idSchema,
  producerId: idSchema,
  rtpCapabilities: rtpCapabilitiesSchema,
});
const plainTransportDataSchema = z.strictObject({
  direction: directionSchema,
  comedia: z.boolean().optional(),
  rtcpMux: z.boolean().optional(),
});
const connectPlainDataSchema = z.strictObject({
  transportId: idSchema,
  ip: ipSchema,
  port: portSchema,
  rtcpPort: portSchema.optional(),
});
const transportResultSchema = z.object({
  transportId: z.string(),
  iceParameters: z.unknown(),
  iceCandidates: z.unknown(),
  dtlsParameters: z.unknown(),
});
const consumeResultSchema = z.object({
  consumerId: z.string(),
  producerId: z.string(),
  kind: mediaKindSchema,
  rtpParameters: z.unknown(),
  paused: z.literal(true),
  producerPaused: z.boolean().describe('the producer is paused now (added to the contract)'),
});
const iceResultSchema = z.object({ iceParameters: z.unknown() });
const plainTransportResultSchema = z.object({
  transportId: z.string(),
  ip: z.string(),
  port: z.number(),
  rtcpPort: z.number().optional(),
});

type Direction = z.infer<typeof directionSchema>;
type Empty = z.input<typeof emptySchema>;

/** What the `sfu.*` handlers ask of the node's media (the media gateway implements it). */
export interface MediaHandlers {
  createTransport(session: RoomConnection, direction: Direction): Promise<z.input<typeof transportResultSchema>>;
  connectTransport(session: RoomConnection, transportId: string, dtlsParameters: DtlsParametersData): Promise<Empty>;
  produce(session: RoomConnection, data: z.output<typeof produceDataSchema>): Promise<{ producerId: string }>;
  consume(
    session: RoomConnection,
    data: z.output<typeof consumeDataSchema>,
  ): Promise<z.input<typeof consumeResultSchema>>;
  resumeConsumer(session: RoomConnection, consumerId: string): Promise<Empty>;
  pauseProducer(session: RoomConnection, producerId: string): Promise<Empty>;
  resumeProducer(session: RoomConnection, producerId: string): Promise<Empty>;
  closeProducer(session: RoomConnection, producerId: string): Promise<Empty>;
  setConsumerLayers(
    session: RoomConnection,
    consumerId: string,
    spatialLayer: number,
    temporalLayer?: number,
  ): Promise<Empty>;
  restartIce(session: RoomConnection, transportId: string): Promise<z.input<typeof iceResultSchema>>;
  createPlainTransport(
    session: RoomConnection,
    data: z.output<typeof plainTransportDataSchema>,
  ): Promise<z.input<typeof plainTransportResultSchema>>;
  connectPlainTransport(session: RoomConnection, data: z.output<typeof connectPlainDataSchema>): Promise<Empty>;
}

/** The part of the handler context `sfu.*` uses. */
interface MediaContext {
  readonly session: RoomConnection;
  /** Undefined when this node runs without media. */
  readonly media: MediaHandlers | undefined;
}

function media(ctx: MediaContext): MediaHandlers {
  if (!ctx.media) throw new ProtocolError('UNAVAILABLE', 'media is not available on this node');
  return ctx.media;
}

/** Wraps a handler so that it runs only when this node has media. */
function sfuMethod<D extends z.ZodType, R extends z.ZodType>(
  definition: Omit<MethodDefinition<D, R, MediaContext>, 'handle'> & {
    handle: (media: MediaHandlers, ctx: MediaContext, data: z.output<D>) => Promise<z.input<R>>;
  },
): MethodDefinition<D, R, MediaContext> {
  const { handle, ...rest } = definition;
  return defineMethod({ ...rest, handle: (ctx, data) => handle(media(ctx), ctx, data) });
}

export const sfuMethods = {
  'sfu.createTransport': sfuMethod({
    description: 'Create a WebRTC transport (send: presenters and moderators).',
    roles: 'all',
    data: z.strictObject({ direction: directionSchema }),
    result: transportResultSchema,
    handle: (m, ctx, data) => m.createTransport(ctx.session, data.direction),
  }),
  'sfu.connectTransport': sfuMethod({
    description: 'Complete DTLS for one of your transports.',
    roles: 'all',
    data: z.strictObject({ transportId: idSchema, dtlsParameters: dtlsParametersSchema }),
    result: emptySchema,
    handle: (m, ctx, data) => m.connectTransport(ctx.session, data.transportId, data.dtlsParameters),
  }),
  'sfu.produce': sfuMethod({
    description: 'Publish a track on your send transport.',
    roles: PUBLISHING_ROLES,
    data: produceDataSchema,
    result: z.object({ producerId: z.string() }),
    handle: (m, ctx, data) => m.produce(ctx.session, data),
  }),
  'sfu.consume': sfuMethod({
    description: 'Receive a producer on your recv transport; the consumer starts paused.',
    roles: 'all',
    data: consumeDataSchema,
    result: consumeResultSchema,
    handle: (m, ctx, data) => m.consume(ctx.session, data),
  }),
  'sfu.resumeConsumer': sfuMethod({
    description: 'Start the flow of one of your consumers.',
    roles: 'all',
    data: z.strictObject({ consumerId: idSchema }),
    result: emptySchema,
    handle: (m, ctx, data) => m.resumeConsumer(ctx.session, data.consumerId),
  }),
  'sfu.pauseProducer': sfuMethod({
    description: 'Pause a producer (its owner, or a moderator).',
    roles: 'all',
    data: producerTarget,
    result: emptySchema,
    handle: (m, ctx, data) => m.pauseProducer(ctx.session, data.producerId),
  }),
  'sfu.resumeProducer': sfuMethod({
    description: 'Resume a producer (its owner, or a moderator).',
    roles: 'all',
    data: producerTarget,
    result: emptySchema,
    handle: (m, ctx, data) => m.resumeProducer(ctx.session, data.producerId),
  }),
  'sfu.closeProducer': sfuMethod({
    description: 'Close a producer (its owner, or a moderator).',
    roles: 'all',
    data: producerTarget,
    result: emptySchema,
    handle: (m, ctx, data) => m.closeProducer(ctx.session, data.producerId),
  }),
  'sfu.setConsumerLayers': sfuMethod({
    description: 'Choose the preferred simulcast/SVC layers of one of your consumers.',
    roles: 'all',
    data: z.strictObject({
      consumerId: idSchema,
      spatialLayer: z.number().int().min(0).max(15),
      temporalLayer: z.number().int().min(0).max(15).optional(),
    }),
    result: emptySchema,
    handle: (m, ctx, data) => m.setConsumerLayers(ctx.session, data.consumerId, data.spatialLayer, data.temporalLayer),
  }),
  'sfu.restartIce': sfuMethod({
    description: 'Restart ICE on one of your transports.',
    roles: 'all',
    data: z.strictObject({ transportId: idSchema }),
    result: iceResultSchema,
    handle: (m, ctx, data) => m.restartIce(ctx.session, data.transportId),
  }),
  'sfu.createPlainTransport': sfuMethod({
    description:
      'Create a plain RTP transport, only when SFU_PLAIN_TRANSPORTS=true (send: presenters and moderators; recv, for recording and monitoring taps: moderators).',
    roles: PUBLISHING_ROLES,
    data: plainTransportDataSchema,
    result: plainTransportResultSchema,
    handle: (m, ctx, data) => m.createPlainTransport(ctx.session, data),
  }),
  'sfu.connectPlainTransport': sfuMethod({
    description:
      'Tell a plain transport where to send RTP (and RTCP): an address inside SFU_PLAIN_ALLOWED_CIDRS (FORBIDDEN outside), never an unspecified, multicast or broadcast one (BAD_REQUEST).',
    roles: 'all',
    data: connectPlainDataSchema,
    result: emptySchema,
    handle: (m, ctx, data) => m.connectPlainTransport(ctx.session, data),
  }),
};
