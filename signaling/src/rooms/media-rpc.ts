/**
 * What one node asks another about media, over the cluster RPC: pipes of a producer between the
 * node it is published on (its origin) and a node whose participants consume it. The params'
 * schemas are checked where they arrive; RTP parameters and SRTP keys are passed through to
 * mediasoup, which validates them. Design: `docs/sfu.md` ("Across nodes").
 */
import { z } from 'zod';
import type { PipeOffer } from '../../../sfu/src/index.js';
import { idSchema } from '../protocol/common.js';

const producerTarget = z.object({ roomId: idSchema, producerId: idSchema });
const ipOrHost = z.string().min(1).max(255);
const pipeEndSchema = z.object({
  ip: ipOrHost,
  port: z.number().int().min(1).max(65535),
  srtpParameters: z
    .object({
      cryptoSuite: z.enum([
        'AEAD_AES_256_GCM',
        'AEAD_AES_128_GCM',
        'AES_CM_128_HMAC_SHA1_80',
        'AES_CM_128_HMAC_SHA1_32',
      ]),
      keyBase64: z.string().min(1).max(200),
    })
    .optional(),
});

/** Params of every media RPC method, checked by the node that answers. */
export const mediaRpcParams = {
  /**
   * To the origin: open your end of a pipe of the producer towards the caller's `end`, consume the
   * producer into it, answer your end and the producer's parameters (a pipe already open to the
   * caller for it is replaced).
   */
  'media.pipe': producerTarget.extend({ end: pipeEndSchema }),
  /** To the origin: the caller no longer consumes the producer; close your end of its pipe. */
  'media.unpipe': producerTarget,
  /** From the origin: the producer closed; close your piped-in copy (its consumers close). */
  'media.pipeClosed': producerTarget,
  /** From the origin: the producer was paused or resumed; do the same to your piped-in copy. */
  'media.pipePaused': producerTarget.extend({ paused: z.boolean() }),
  /** To the origin: pause, resume or close a producer published there, for a participant elsewhere. */
  'media.controlProducer': producerTarget.extend({
    participantId: idSchema,
    action: z.enum(['pause', 'resume', 'close']),
    asModerator: z.boolean(),
  }),
} as const;

type Params<M extends keyof typeof mediaRpcParams> = z.infer<(typeof mediaRpcParams)[M]>;
type Done = Record<string, never>;

/** The media RPC method map (part of the room service's, see `room-rpc.ts`). */
export interface MediaRpcMethods {
  'media.pipe': { params: Params<'media.pipe'>; result: PipeOffer };
  'media.unpipe': { params: Params<'media.unpipe'>; result: Done };
  'media.pipeClosed': { params: Params<'media.pipeClosed'>; result: Done };
  'media.pipePaused': { params: Params<'media.pipePaused'>; result: Done };
  'media.controlProducer': { params: Params<'media.controlProducer'>; result: Done };
}
