/**
 * The node a producer is published on goes away, with viewers on the other node processes:
 * killed (`kill -9`), its viewers' consumers close (`origin-lost`) and the room hears
 * `producer.removed` (`node-lost`) once its heartbeat is older than the node TTL, and the
 * survivors keep no pipe and no consumer of it; drained, its producers are removed with
 * `migrating` and the viewers elsewhere see their consumers closed.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { eventually } from '../../test-support/async.js';
import { useCluster } from '../../test-support/cluster.js';
import { mediaFigures, notificationData, publishOpusOn } from '../../test-support/cluster-media.js';
import { consumeToSink, MEDIA_ENV } from '../../test-support/media-flow.js';
import { flowsTo, type RtpSender, type RtpSink } from '../../test-support/rtp.js';

const NODE_TTL_MS = 2000;

describe('the origin node of a producer goes away', { timeout: 120_000 }, () => {
  const cluster = useCluster({
    nodes: 3,
    nodeTtlMs: NODE_TTL_MS,
    env: { ...MEDIA_ENV, MEDIASOUP_NUM_WORKERS: '1', DRAIN_TIMEOUT_MS: '1500', SESSION_RESUME_GRACE_MS: '500' },
  });
  const sinks: RtpSink[] = [];
  const senders: RtpSender[] = [];
  afterAll(() => {
    for (const s of [...sinks, ...senders]) s.close();
  });

  it('kill -9: viewers elsewhere get consumer.closed and producer.removed within the TTL; nothing leaks', async () => {
    const roomId = 'origin-killed';
    const viewers = [
      await cluster().recorded('killed-mod-b', { node: 1, roomId, role: 'moderator', direct: true }),
      await cluster().recorded('killed-mod-c', { node: 2, roomId, role: 'moderator', direct: true }),
    ];
    const producerId = await publishOpusOn(cluster(), 0, roomId, 0x3c4d, senders);
    const taps = [];
    for (const viewer of viewers) taps.push({ viewer, ...(await consumeToSink(viewer, producerId, sinks)) });
    await flowsTo(
      taps.map((t) => t.sink),
      10,
      'RTP at both taps',
    );

    const killedAt = Date.now();
    await cluster().kill(0);
    for (const { viewer, consumerId } of taps) {
      // Each survivor closes its own pipe; one of them announces the removal to the room.
      await eventually(
        () =>
          notificationData(viewer, 'producer.removed').length > 0 &&
          notificationData(viewer, 'consumer.closed').length > 0,
        3 * NODE_TTL_MS + 5000,
        `producer.removed and consumer.closed at ${viewer.userId}`,
      );
      expect(notificationData(viewer, 'consumer.closed')).toEqual([{ consumerId, reason: 'origin-lost' }]);
      expect(notificationData(viewer, 'producer.removed')).toEqual([{ producerId, reason: 'node-lost' }]);
    }
    const detectedMs = Date.now() - killedAt;
    // Dead once its heartbeat is older than the TTL; the survivors look every third of it.
    expect(detectedMs).toBeLessThan(NODE_TTL_MS + NODE_TTL_MS / 3 + 3000);
    for (const index of [1, 2]) {
      expect(await mediaFigures(cluster(), index)).toMatchObject({
        pipesIn: 0,
        pipesOut: 0,
        consumers: 0,
        workersAlive: 1,
      });
    }
  });

  it('drain: the producers are removed as migrating, the viewers elsewhere see their consumers closed', async () => {
    const roomId = 'origin-drained';
    const viewer = await cluster().recorded('drained-mod', { node: 2, roomId, role: 'moderator', direct: true });
    const producerId = await publishOpusOn(cluster(), 1, roomId, 0x3c4e, senders);
    const tap = await consumeToSink(viewer, producerId, sinks);
    await flowsTo([tap.sink], 10, 'RTP at the tap');

    const exit = await cluster().drain(1);
    expect(exit.code).toBe(0);
    await eventually(
      () => notificationData(viewer, 'producer.removed').some((d) => d['producerId'] === producerId),
      3 * NODE_TTL_MS + 5000,
      'producer.removed at the viewer',
    );
    expect(notificationData(viewer, 'producer.removed')).toEqual([{ producerId, reason: 'migrating' }]);
    await eventually(
      () => notificationData(viewer, 'consumer.closed').length > 0,
      5000,
      'consumer.closed at the viewer',
    );
    expect(notificationData(viewer, 'consumer.closed')).toEqual([
      { consumerId: tap.consumerId, reason: expect.stringMatching(/^(producer-closed|origin-lost)$/) },
    ]);
    expect(await mediaFigures(cluster(), 2)).toMatchObject({ pipesIn: 0, pipesOut: 0, consumers: 0, workersAlive: 1 });
  });
});
