/**
 * `session.refresh` with a token of a lower role, on a node with media: the demotion goes the
 * way of `moderation.setRole`, so the presenter's producers close at once and it may not
 * produce again.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, type TestNode } from '../../test-support/harness.js';
import { produceOpus, startMediaNode } from '../../test-support/media-flow.js';
import { joinRecording } from '../../test-support/room-helpers.js';

describe('session.refresh to a lower role, with media', () => {
  let t: TestNode;

  beforeAll(async () => {
    t = await startMediaNode();
  });

  afterAll(async () => {
    await t?.close();
  });

  it("closes the demoted presenter's producer; producing again is FORBIDDEN", async () => {
    const media = t.node.media?.service;
    if (!media) throw new Error('no media');
    const roomId = 'refresh-demotion';
    const moderator = await joinRecording(t, 'mod', { roomId, role: 'moderator' });
    const presenter = await joinRecording(t, 'pres', { roomId, role: 'presenter' });
    const { transportId } = await presenter.client.request('sfu.createPlainTransport', {
      direction: 'send',
      comedia: true,
    });
    const { producerId } = await produceOpus(presenter, transportId, 4242);
    expect(media.listProducers(roomId).map((p) => p.producerId)).toEqual([producerId]);

    await presenter.client.request('session.refresh', { token: await t.token('pres', { roomId, role: 'trader' }) });
    const events = () => moderator.notifications.map((n) => n.event);
    await eventually(() => events().includes('producer.removed'), 5000, 'producer.removed');
    expect(events().filter((e) => e !== 'participant.count')).toEqual([
      'participant.joined',
      'producer.added',
      'participant.updated',
      'producer.removed',
    ]);
    expect(moderator.notifications.find((n) => n.event === 'producer.removed')?.data).toMatchObject({ producerId });
    expect(media.listProducers(roomId)).toEqual([]);
    await expect(produceOpus(presenter, transportId, 4243)).rejects.toMatchObject({ code: 'FORBIDDEN' });
  });
});
