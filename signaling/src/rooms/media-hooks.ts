/**
 * What the room service asks of media, so that rooms do not depend on the SFU: the media
 * gateway implements it when the node has media.
 */
import type { z } from 'zod';
import type { producerInfoSchema } from '../protocol/sfu.js';

export type ProducerInfo = z.infer<typeof producerInfoSchema>;

export interface RoomMediaHooks {
  /**
   * Router capabilities for a joining client (creates the room's router lazily). In a cluster it
   * also reads the room's producers on every node, which {@link listProducers} answers next.
   */
  routerRtpCapabilities(roomId: string): Promise<unknown>;
  /** The room's producers (on every node, each with its `nodeId`, in a cluster). */
  listProducers(roomId: string): ProducerInfo[];
  /** Participants of the room that currently publish. */
  publisherIds(roomId: string): Set<string>;
  /** The participant left: close its transports, producers and consumers. */
  participantLeft(roomId: string, participantId: string): Promise<void>;
  /** The participant lost the right to publish: close its producers at once. */
  publishingRevoked(roomId: string, participantId: string): Promise<void>;
  /** Moderator mute: pause every producer of the participant. */
  mute(roomId: string, participantId: string): Promise<void>;
  roomClosed(roomId: string): Promise<void>;
}
