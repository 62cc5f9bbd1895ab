/**
 * A producer that closes while `sfu.produce` is still setting it up (here: its owner's socket
 * drops right after the request) must not be announced after its removal. Every observer sees,
 * for each producer, either nothing or `producer.added` followed by `producer.removed`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { opusRtpParameters } from '../../test-support/rtp.js';
import { eventually, type TestNode } from '../../test-support/harness.js';
import { startMediaNode } from '../../test-support/media-flow.js';
import { joinRecording } from '../../test-support/room-helpers.js';

const ROOM = 'media-produce-race';
const ROUNDS = 12;

describe('sfu.produce racing its owner’s departure', () => {
  let t: TestNode;

  beforeAll(async () => {
    // One viewer per router: the room has two routers, so each producer is piped while produced.
    t = await startMediaNode({ SFU_CONSUMER_BUDGET: '1' });
  });

  afterAll(async () => {
    await t?.close();
  });

  it('never announces a producer after its producer.removed', async () => {
    const media = t.node.media?.service;
    if (!media) throw new Error('no media');
    const observer = await joinRecording(t, 'race-observer', { roomId: ROOM });
    const viewer = await joinRecording(t, 'race-viewer', { roomId: ROOM });
    await observer.client.request('sfu.createPlainTransport', { direction: 'recv' });
    await viewer.client.request('sfu.createPlainTransport', { direction: 'recv' });
    expect(media.roomInfo(ROOM)?.routers).toBe(2);

    for (let i = 0; i < ROUNDS; i++) {
      const raw = await t.raw(await t.token(`race-presenter-${i}`, { roomId: ROOM, role: 'presenter' }));
      const joined = await raw.request('room.join', {});
      const { participantId } = joined.data as { participantId: string };
      const created = await raw.request('sfu.createPlainTransport', { direction: 'send', comedia: true });
      const { transportId } = created.data as { transportId: string };
      raw.send(
        JSON.stringify({
          id: 'produce',
          method: 'sfu.produce',
          data: { transportId, kind: 'audio', source: 'microphone', rtpParameters: opusRtpParameters(7000 + i) },
        }),
      );
      // Drop the socket at varying points of the produce (the server removes the participant at once).
      if (i % 3 > 0) await new Promise((resolve) => setTimeout(resolve, i % 3));
      raw.ws.terminate();
      await eventually(
        () =>
          observer.notifications.some(
            (n) =>
              n.event === 'participant.left' && (n.data as { participantId: string }).participantId === participantId,
          ),
        5000,
        'participant.left',
      );
    }

    expect(media.listProducers(ROOM)).toEqual([]);
    for (const c of [observer, viewer]) {
      const announced = new Set<string>();
      for (const n of c.notifications) {
        if (n.event === 'producer.added') {
          expect(announced.has(n.data.producerId)).toBe(false);
          announced.add(n.data.producerId);
        }
        if (n.event === 'producer.removed') {
          expect(
            announced.delete(n.data.producerId),
            `producer.removed ${n.data.producerId} follows its producer.added`,
          ).toBe(true);
        }
      }
      expect([...announced], 'producers announced and never removed').toEqual([]);
    }
  });
});
