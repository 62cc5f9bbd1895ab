/**
 * What the cluster media tests share: a presenter publishing plain-RTP opus from a raw socket on
 * one node (a raw socket does not reconnect, so it stays with its node), the data of the
 * notifications a recorded client got, and the pipes a node holds (from its `/health`).
 */
import { expect } from 'vitest';
import type { JoinResult } from '../signaling/client/index.js';
import type { RecordedClient, TestCluster } from './cluster.js';
import { publishOpus, rawParticipant, type MediaParticipant } from './media-flow.js';
import { RtpSender } from './rtp.js';

/** A presenter joined to `roomId` on node `index` through a raw socket. */
export async function rawPresenter(
  cluster: TestCluster,
  index: number,
  userId: string,
  roomId: string,
): Promise<MediaParticipant> {
  const raw = await cluster.raw(index, await cluster.token(userId, { roomId, role: 'presenter' }));
  const response = await raw.request('room.join', {});
  expect(response, `join of ${userId}`).toMatchObject({ ok: true });
  return rawParticipant(raw, response.data as JoinResult);
}

/** A presenter on node `index` publishing opus with `ssrc` (the sender is added to `senders`). */
export async function publishOpusOn(
  cluster: TestCluster,
  index: number,
  roomId: string,
  ssrc: number,
  senders: RtpSender[],
): Promise<string> {
  const presenter = await rawPresenter(cluster, index, `presenter-${roomId}`, roomId);
  const sender = new RtpSender(ssrc);
  senders.push(sender);
  return (await publishOpus(presenter, sender)).producerId;
}

/** The data of the notifications named `event` a recorded client got, in order. */
export function notificationData(c: RecordedClient, event: string): Record<string, unknown>[] {
  return c.received
    .filter((r) => r.notification.event === event)
    .map((r) => r.notification.data as unknown as Record<string, unknown>);
}

/** Node `index`'s media figures from its `/health` (`pipesIn`, `pipesOut`, `consumers`, …). */
export async function mediaFigures(cluster: TestCluster, index: number): Promise<Record<string, number>> {
  return (await cluster.node(index).health())['media'] as Record<string, number>;
}

/** The pipes node `index` holds now. */
export async function pipesOf(cluster: TestCluster, index: number): Promise<{ in: number; out: number }> {
  const media = await mediaFigures(cluster, index);
  return { in: media['pipesIn'] ?? 0, out: media['pipesOut'] ?? 0 };
}
