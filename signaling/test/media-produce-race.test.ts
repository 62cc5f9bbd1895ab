/**
 * `sfu.produce` racing what takes its owner's right to publish away while the SFU creates the
 * producer (and pipes it into the room's other router):
 * - its owner's socket drops: the producer is never announced after its removal; every
 *   observer sees, for each producer, either nothing or `producer.added` then `producer.removed`;
 * - its owner is demoted: no producer of a participant who may no longer publish outlives the
 *   race, as the SFU itself reports.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { opusRtpParameters } from '../../test-support/rtp.js';
import { eventually, type TestNode } from '../../test-support/harness.js';
import { sleep } from '../../test-support/async.js';
import { produceOpus, startMediaNode } from '../../test-support/media-flow.js';
import { joinRecording, type RecordingClient } from '../../test-support/room-helpers.js';

const ROOM = 'media-produce-race';
const DEMOTION_ROOM = 'media-produce-demotion-race';
const ROUNDS = 12;
const DEMOTION_ROUNDS = 30;

/** Two moderators' recv taps in `roomId`: one viewer per router, so the room has two routers. */
async function twoRouterRoom(t: TestNode, roomId: string): Promise<RecordingClient[]> {
  const taps = await Promise.all(
    ['observer', 'viewer'].map((name) => joinRecording(t, `${roomId}-${name}`, { roomId, role: 'moderator' })),
  );
  for (const c of taps) await c.client.request('sfu.createPlainTransport', { direction: 'recv' });
  expect(t.node.media?.service.roomInfo(roomId)?.routers).toBe(2);
  return taps;
}

describe('sfu.produce racing', () => {
  let t: TestNode;

  beforeAll(async () => {
    // One viewer per router: each producer is piped into the other router while produced.
    t = await startMediaNode({ SFU_CONSUMER_BUDGET: '1' });
  });

  afterAll(async () => {
    await t?.close();
  });

  it('its owner’s departure never announces a producer after its producer.removed', async () => {
    const media = t.node.media?.service;
    if (!media) throw new Error('no media');
    const [observer, viewer] = (await twoRouterRoom(t, ROOM)) as [RecordingClient, RecordingClient];

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

  it('its owner’s demotion never leaves a live producer of someone who may not publish', async () => {
    const media = t.node.media?.service;
    if (!media) throw new Error('no media');
    const [moderator] = (await twoRouterRoom(t, DEMOTION_ROOM)) as [RecordingClient];
    const presenter = await joinRecording(t, 'demotion-presenter', { roomId: DEMOTION_ROOM, role: 'presenter' });
    const { participantId } = presenter.join;
    const { transportId } = await presenter.client.request('sfu.createPlainTransport', {
      direction: 'send',
      comedia: true,
    });
    const setRole = (role: 'presenter' | 'trader') =>
      moderator.client.request('moderation.setRole', { participantId, role });
    const outcomes: string[] = [];

    for (let i = 0; i < DEMOTION_ROUNDS; i++) {
      const produced = produceOpus(presenter, transportId, 9000 + i).then(
        () => 'produced, then closed by the demotion',
        (error: { code: string; message: string }) =>
          /while the producer was being created/.test(error.message) ? 'refused after the SFU call' : error.code,
      );
      // The demotion lands at varying points of the produce (before it, during the pipe, after).
      await sleep(i % 4);
      await setRole('trader');
      outcomes.push(await produced);
      expect(
        media.listProducers(DEMOTION_ROOM).filter((p) => p.participantId === participantId),
        `round ${i}: live producers of the demoted presenter`,
      ).toEqual([]);
      await setRole('presenter');
    }
    // The race itself was run: some demotions landed while the SFU was creating the producer.
    expect(outcomes).toContain('refused after the SFU call');
    const expected = ['produced, then closed by the demotion', 'refused after the SFU call', 'FORBIDDEN'];
    for (const outcome of outcomes) expect(expected).toContain(outcome);
  });
});
