/**
 * The consumer budget through signaling: with `SFU_CONSUMER_BUDGET=3`, ten viewers of one room
 * (moderators' plain RTP taps) fill four routers over the node's two workers (producers piped
 * between them) and every viewer receives the presenter's RTP.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RtpSender, type RtpSink } from '../../test-support/rtp.js';
import { eventually, type TestNode } from '../../test-support/harness.js';
import { consumeToSink, publishOpus, startMediaNode } from '../../test-support/media-flow.js';
import { joinRecording, type RecordingClient } from '../../test-support/room-helpers.js';

const ROOM = 'media-pipe-room';
const SSRC = 12121212;
const VIEWERS = 10;

describe('a room spread over two workers by the consumer budget', () => {
  let t: TestNode;
  let presenter: RecordingClient;
  let viewers: RecordingClient[];
  let sender: RtpSender;
  const sinks: RtpSink[] = [];

  beforeAll(async () => {
    t = await startMediaNode({ SFU_CONSUMER_BUDGET: '3' });
    presenter = await joinRecording(t, 'pipe-presenter', { roomId: ROOM, role: 'presenter' });
    viewers = await Promise.all(
      Array.from({ length: VIEWERS }, (_, i) =>
        joinRecording(t, `pipe-viewer-${i}`, { roomId: ROOM, role: 'moderator' }),
      ),
    );
    sender = new RtpSender(SSRC);
  });

  afterAll(async () => {
    sender?.close();
    for (const sink of sinks) sink.close();
    await t?.close();
  });

  it('ten viewers over two workers all receive the presenter’s RTP', async () => {
    const media = t.node.media?.service;
    if (!media) throw new Error('no media');
    expect(media.roomInfo(ROOM)?.routerWorkers).toHaveLength(1);

    const { producerId } = await publishOpus(presenter, sender);
    await eventually(
      () => viewers.every((c) => c.notifications.some((n) => n.event === 'producer.added')),
      5000,
      'producer.added at every viewer',
    );

    // One after another, as viewers arrive: each fills the budget of the router it lands on.
    for (const viewer of viewers) await consumeToSink(viewer, producerId, sinks);

    const info = media.roomInfo(ROOM);
    // 10 viewers at 3 per router: 4 routers, spread over both workers (two each).
    expect(info).toMatchObject({ routers: 4, transports: 1 + VIEWERS, producers: 1, consumers: VIEWERS });
    expect(new Set(info?.routerWorkers)).toEqual(new Set([0, 1]));
    expect(info?.routerWorkers.filter((w) => w === 0)).toHaveLength(2);
    const workers = media.workers();
    expect(workers.map((w) => w.routers)).toEqual([2, 2]);
    // Pipe consumers count on the workers: more than the ten clients' consumers.
    expect(workers.reduce((sum, w) => sum + w.consumers, 0)).toBeGreaterThan(VIEWERS);

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
        viewers.every(
          (c) =>
            c.notifications.some((n) => n.event === 'producer.removed') &&
            c.notifications.some((n) => n.event === 'consumer.closed'),
        ),
      5000,
      'producer.removed and consumer.closed at every viewer',
    );
    expect(t.node.media?.service.roomInfo(ROOM)).toMatchObject({ producers: 0, consumers: 0 });
  });
});
