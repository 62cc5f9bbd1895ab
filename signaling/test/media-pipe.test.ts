/**
 * The consumer budget through signaling: with `SFU_CONSUMER_BUDGET=3`, ten traders of one room
 * fill four routers over the node's two workers (producers piped between them) and every trader
 * receives the presenter's RTP.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { opusRtpParameters, RtpSender, RtpSink } from '../../sfu/test/support/rtp.js';
import { eventually, startTestNode, type TestNode } from '../../test-support/harness.js';
import { GENEROUS_LIMITS, joinRecording, type RecordingClient } from './support/room-helpers.js';

const ROOM = 'media-pipe-room';
const SSRC = 12121212;
const TRADERS = 10;

describe('a room spread over two workers by the consumer budget', () => {
  let t: TestNode;
  let presenter: RecordingClient;
  let traders: RecordingClient[];
  let sender: RtpSender;
  const sinks: RtpSink[] = [];

  beforeAll(async () => {
    t = await startTestNode({
      ...GENEROUS_LIMITS,
      MEDIA_ENABLED: 'true',
      SFU_PLAIN_TRANSPORTS: 'true',
      RTC_BASE_PORT: '0',
      MEDIASOUP_NUM_WORKERS: '2',
      SFU_CONSUMER_BUDGET: '3',
    });
    expect(t.node.media, 'media must be up').toBeDefined();
    presenter = await joinRecording(t, 'pipe-presenter', { roomId: ROOM, role: 'presenter' });
    traders = await Promise.all(
      Array.from({ length: TRADERS }, (_, i) => joinRecording(t, `pipe-trader-${i}`, { roomId: ROOM })),
    );
    sender = new RtpSender(SSRC);
  });

  afterAll(async () => {
    sender?.close();
    for (const sink of sinks) sink.close();
    await t?.close();
  });

  it('ten traders over two workers all receive the presenter’s RTP', async () => {
    const media = t.node.media?.service;
    if (!media) throw new Error('no media');
    expect(media.roomInfo(ROOM)?.routerWorkers).toHaveLength(1);

    const publish = await presenter.client.request('sfu.createPlainTransport', { direction: 'send', comedia: true });
    const { producerId } = await presenter.client.request('sfu.produce', {
      transportId: publish.transportId,
      kind: 'audio',
      source: 'microphone',
      rtpParameters: opusRtpParameters(SSRC) as never,
    });
    sender.start(publish.ip, publish.port);
    await eventually(
      () => traders.every((c) => c.notifications.some((n) => n.event === 'producer.added')),
      5000,
      'producer.added at every trader',
    );

    // One after another, as viewers arrive: each fills the budget of the router it lands on.
    for (const trader of traders) {
      const sink = await RtpSink.open();
      sinks.push(sink);
      const { transportId } = await trader.client.request('sfu.createPlainTransport', { direction: 'recv' });
      await trader.client.request('sfu.connectPlainTransport', { transportId, ip: '127.0.0.1', port: sink.port });
      const { consumerId } = await trader.client.request('sfu.consume', {
        transportId,
        producerId,
        rtpCapabilities: trader.join.routerRtpCapabilities as never,
      });
      await trader.client.request('sfu.resumeConsumer', { consumerId });
    }

    const info = media.roomInfo(ROOM);
    // 10 viewers at 3 per router: 4 routers, spread over both workers (two each).
    expect(info).toMatchObject({ routers: 4, transports: 1 + TRADERS, producers: 1, consumers: TRADERS });
    expect(new Set(info?.routerWorkers)).toEqual(new Set([0, 1]));
    expect(info?.routerWorkers.filter((w) => w === 0)).toHaveLength(2);
    const workers = media.workers();
    expect(workers.map((w) => w.routers)).toEqual([2, 2]);
    // Pipe consumers count on the workers: more than the ten clients' consumers.
    expect(workers.reduce((sum, w) => sum + w.consumers, 0)).toBeGreaterThan(TRADERS);

    const start = sinks.map((s) => s.received);
    await eventually(
      () => sinks.every((s, i) => s.received >= (start[i] as number) + 10),
      8000,
      'RTP at all ten sinks',
    );
    for (const sink of sinks) expect(sink.ssrcs.has(SSRC)).toBe(false);
  });

  it('closing the producer reaches every consumer, on every router', async () => {
    const [producer] = t.node.media?.service.listProducers(ROOM) ?? [];
    if (!producer) throw new Error('no producer');
    await presenter.client.request('sfu.closeProducer', { producerId: producer.producerId });
    await eventually(
      () =>
        traders.every(
          (c) =>
            c.notifications.some((n) => n.event === 'producer.removed') &&
            c.notifications.some((n) => n.event === 'consumer.closed'),
        ),
      5000,
      'producer.removed and consumer.closed at every trader',
    );
    expect(t.node.media?.service.roomInfo(ROOM)).toMatchObject({ producers: 0, consumers: 0 });
  });
});
