/**
 * Media across node processes on one Redis: a presenter's plain-RTP producer on one node reaches
 * moderators' taps on the other nodes through one pipe per producer per node (read from each
 * node's `/health`: `media.pipesIn`, `media.pipesOut`), a key-frame request from a viewer on
 * another node reaches the presenter, and the producer is room-wide: announced to every node
 * with its node id, listed to joiners everywhere.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { eventually } from '../../test-support/async.js';
import { useCluster } from '../../test-support/cluster.js';
import { notificationData, pipesOf, rawPresenter } from '../../test-support/cluster-media.js';
import { consumeToSink, MEDIA_ENV, publishOpus } from '../../test-support/media-flow.js';
import { flowsTo, RtpSender, staysQuiet, type RtpSink } from '../../test-support/rtp.js';
import { Vp8Sender, VideoTap, vp8RtpParameters } from '../../test-support/rtp-video.js';

const NODE_TTL_MS = 2000;

describe('a presenter on one node, viewers on every node', { timeout: 90_000 }, () => {
  const cluster = useCluster({
    nodes: 3,
    nodeTtlMs: NODE_TTL_MS,
    env: { ...MEDIA_ENV, MEDIASOUP_NUM_WORKERS: '1' },
  });
  const sinks: RtpSink[] = [];
  const senders: { close(): void }[] = [];
  afterAll(() => {
    for (const s of [...sinks, ...senders]) s.close();
  });

  it('pipes the producer once per node to every tap, shares the pipe, and closes it after the last viewer', async () => {
    const roomId = 'cross-node-flow';
    const modB = await cluster().recorded('mod-b', { node: 1, roomId, role: 'moderator', direct: true });
    const modC = await cluster().recorded('mod-c', { node: 2, roomId, role: 'moderator', direct: true });
    const presenter = await rawPresenter(cluster(), 0, 'presenter', roomId);
    const sender = new RtpSender(0x1a2b);
    senders.push(sender);
    const { producerId } = await publishOpus(presenter, sender);

    // A room-wide fact: heard on every node, with its node.
    for (const c of [modB, modC]) {
      await eventually(() => notificationData(c, 'producer.added').length > 0, 10_000, `producer.added at ${c.userId}`);
      expect(notificationData(c, 'producer.added')[0]).toMatchObject({ producerId, kind: 'audio', nodeId: 'node-1' });
    }
    const late = await cluster().recorded('late-joiner', { node: 2, roomId, direct: true });
    expect(late.join.producers).toEqual([
      {
        producerId,
        participantId: expect.any(String),
        kind: 'audio',
        source: 'microphone',
        paused: false,
        nodeId: 'node-1',
      },
    ]);

    const tapB = await consumeToSink(modB, producerId, sinks);
    const tapC = await consumeToSink(modC, producerId, sinks);
    await flowsTo([tapB.sink, tapC.sink], 10, 'RTP at the taps on B and C');
    expect(await pipesOf(cluster(), 0)).toEqual({ in: 0, out: 2 });
    expect(await pipesOf(cluster(), 1)).toEqual({ in: 1, out: 0 });
    expect(await pipesOf(cluster(), 2)).toEqual({ in: 1, out: 0 });
    expect(await cluster().node(0).metric('trading_room_media_node_pipes')).toBe(2);
    expect(await cluster().node(1).metric('trading_room_media_cross_node_consume_seconds_count')).toBe(1);

    // A second viewer on B rides the same pipe.
    const modB2 = await cluster().recorded('mod-b2', { node: 1, roomId, role: 'moderator', direct: true });
    const tapB2 = await consumeToSink(modB2, producerId, sinks);
    await flowsTo([tapB2.sink], 10, 'RTP at the second tap on B');
    expect(await pipesOf(cluster(), 1)).toEqual({ in: 1, out: 0 });
    expect(await pipesOf(cluster(), 0)).toEqual({ in: 0, out: 2 });

    // The last viewer on B leaving closes the pipe there, and the origin's end with it.
    await modB2.client.request('room.leave', {});
    expect(await pipesOf(cluster(), 1)).toEqual({ in: 1, out: 0 });
    await modB.client.request('room.leave', {});
    await eventually(async () => (await pipesOf(cluster(), 1)).in === 0, 10_000, 'the pipe on B closed');
    await eventually(async () => (await pipesOf(cluster(), 0)).out === 1, 10_000, 'the origin’s end towards B closed');
    await flowsTo([tapC.sink], 10, 'RTP still at the tap on C');
    expect(await pipesOf(cluster(), 2)).toEqual({ in: 1, out: 0 });
  });

  it('passes pause and resume of the producer to the other nodes', async () => {
    const roomId = 'cross-node-pause';
    const presenter = await rawPresenter(cluster(), 0, 'pause-presenter', roomId);
    const mod = await cluster().recorded('pause-mod', { node: 1, roomId, role: 'moderator', direct: true });
    const sender = new RtpSender(0x1a2c);
    senders.push(sender);
    const { producerId } = await publishOpus(presenter, sender);
    const tap = await consumeToSink(mod, producerId, sinks);
    await flowsTo([tap.sink], 10);
    // The moderator on B pauses the producer on A: the control goes to A, the pause comes back.
    await mod.client.request('sfu.pauseProducer', { producerId });
    await eventually(() => notificationData(mod, 'producer.paused').length === 1, 10_000, 'producer.paused');
    await staysQuiet([tap.sink], sender);
    await mod.client.request('sfu.resumeProducer', { producerId });
    await eventually(() => notificationData(mod, 'producer.resumed').length === 1, 10_000, 'producer.resumed');
    await flowsTo([tap.sink], 10, 'RTP after the resume');
  });

  it('takes a key-frame request of a viewer on another node back to the presenter', async () => {
    const roomId = 'cross-node-keyframe';
    const presenter = await rawPresenter(cluster(), 0, 'video-presenter', roomId);
    const mod = await cluster().recorded('video-mod', { node: 1, roomId, role: 'moderator', direct: true });
    const sender = new Vp8Sender(0x2b3c);
    senders.push(sender);
    const transport = await presenter.client.request('sfu.createPlainTransport', { direction: 'send', comedia: true });
    const { producerId } = await presenter.client.request('sfu.produce', {
      transportId: transport.transportId,
      kind: 'video',
      source: 'camera',
      rtpParameters: vp8RtpParameters(sender.ssrc) as never,
    });
    sender.start(transport.ip, transport.port);

    const tap = await VideoTap.open();
    senders.push(tap);
    const recv = await mod.client.request('sfu.createPlainTransport', { direction: 'recv' });
    await mod.client.request('sfu.connectPlainTransport', {
      transportId: recv.transportId,
      ip: '127.0.0.1',
      port: tap.port,
    });
    const consumer = await mod.client.request('sfu.consume', {
      transportId: recv.transportId,
      producerId,
      rtpCapabilities: mod.join.routerRtpCapabilities as never,
    });
    await mod.client.request('sfu.resumeConsumer', { consumerId: consumer.consumerId });
    await eventually(() => tap.received >= 10, 10_000, 'video at the tap on B');

    const consumerSsrc = (consumer.rtpParameters as { encodings: { ssrc: number }[] }).encodings[0]?.ssrc ?? 0;
    const before = sender.keyFrameRequests;
    // Video flows, so the consumer's own start-up key-frame request is behind us: any request the
    // presenter sees from here on comes from the tap's PLI. A receiver repeats a PLI that went
    // unanswered (as browsers do), so does the tap: a request can merge with one in flight.
    let lastPli = 0;
    await eventually(
      () => {
        if (sender.keyFrameRequests > before) return true;
        if (performance.now() - lastPli > 500) {
          tap.requestKeyFrame(recv.ip, recv.port, consumerSsrc);
          lastPli = performance.now();
        }
        return false;
      },
      10_000,
      'the key-frame request at the presenter on A',
    );
  });
});
