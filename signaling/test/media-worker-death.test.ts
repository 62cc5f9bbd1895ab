/**
 * A mediasoup worker SIGKILLed under a live room, through signaling: the pool restarts it, the
 * room's clients are told (producer.removed `worker-died` to all, consumer.closed and
 * transport.closed to the owners), another room on the other worker keeps forwarding throughout,
 * and the affected room recovers through the usual calls.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RtpSender, type RtpSink } from '../../test-support/rtp.js';
import { eventually, type TestNode } from '../../test-support/harness.js';
import type { EventData, EventName } from '../client/index.js';
import { consumeToSink, publishOpus, startMediaNode } from '../../test-support/media-flow.js';
import { joinRecording, type RecordingClient } from '../../test-support/room-helpers.js';

const HIT = 'media-death-hit';
const SAFE = 'media-death-safe';
const LATE = 'media-death-late';

function has<E extends EventName>(c: RecordingClient, event: E, match: (data: EventData<E>) => boolean): boolean {
  return c.notifications.some((n) => n.event === event && match(n.data as EventData<E>));
}

/**
 * Records the longest silence at a sink, counted in packets its sender sent meanwhile (so that a
 * stall of the test process itself, which stops the sender too, is not read as a gap).
 */
class GapMonitor {
  #timer: NodeJS.Timeout;
  #received: number;
  #sentAtLastPacket: number;
  maxGapPackets = 0;

  constructor(sink: RtpSink, sender: RtpSender) {
    this.#received = sink.received;
    this.#sentAtLastPacket = sender.sent;
    this.#timer = setInterval(() => {
      if (sink.received !== this.#received) {
        this.#received = sink.received;
        this.#sentAtLastPacket = sender.sent;
      }
      this.maxGapPackets = Math.max(this.maxGapPackets, sender.sent - this.#sentAtLastPacket);
    }, 10);
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}

type Flow = {
  presenter: RecordingClient;
  tap: RecordingClient;
  sender: RtpSender;
  sink: RtpSink;
  producerId: string;
  sendTransportId: string;
  recvTransportId: string;
  consumerId: string;
};

describe('worker death under a live room', () => {
  let t: TestNode;
  const senders: RtpSender[] = [];
  const sinks: RtpSink[] = [];

  /** A presenter publishing over plain RTP and a moderator's tap consuming it on a plain sink. */
  async function startFlow(
    roomId: string,
    presenter: RecordingClient,
    tap: RecordingClient,
    ssrc: number,
  ): Promise<Flow> {
    const sender = new RtpSender(ssrc);
    senders.push(sender);
    const { producerId, transport } = await publishOpus(presenter, sender);
    const flow = await consumeFlow(tap, producerId);
    return { presenter, tap, sender, producerId, sendTransportId: transport.transportId, ...flow };
  }

  async function consumeFlow(
    tap: RecordingClient,
    producerId: string,
  ): Promise<{ sink: RtpSink; recvTransportId: string; consumerId: string }> {
    const { sink, transportId, consumerId } = await consumeToSink(tap, producerId, sinks);
    await eventually(() => sink.received >= 5, 5000, 'RTP at the sink');
    return { sink, recvTransportId: transportId, consumerId };
  }

  beforeAll(async () => {
    t = await startMediaNode();
  });

  afterAll(async () => {
    for (const sender of senders) sender.close();
    for (const sink of sinks) sink.close();
    await t?.close();
  });

  it('restarts the worker, tells the clients, spares the other room and lets the room recover', async () => {
    const media = t.node.media?.service;
    if (!media) throw new Error('no media');

    // The hit room lands on one worker; a new room afterwards goes to the other, least-loaded one.
    const hitPresenter = await joinRecording(t, 'death-presenter', { roomId: HIT, role: 'presenter' });
    const hitTap = await joinRecording(t, 'death-tap', { roomId: HIT, role: 'moderator' });
    const hitWatcher = await joinRecording(t, 'death-watcher', { roomId: HIT });
    const hit = await startFlow(HIT, hitPresenter, hitTap, 31313131);
    const safePresenter = await joinRecording(t, 'safe-presenter', { roomId: SAFE, role: 'presenter' });
    const safeTap = await joinRecording(t, 'safe-tap', { roomId: SAFE, role: 'moderator' });
    const safe = await startFlow(SAFE, safePresenter, safeTap, 32323232);

    const [hitWorker] = media.roomInfo(HIT)?.routerWorkers ?? [];
    const [safeWorker] = media.roomInfo(SAFE)?.routerWorkers ?? [];
    expect(media.roomInfo(HIT)?.routerWorkers).toHaveLength(1);
    expect(media.roomInfo(SAFE)?.routerWorkers).toHaveLength(1);
    expect(safeWorker, 'the rooms must be on different workers').not.toBe(hitWorker);
    const victim = media.workers().find((w) => w.workerIndex === hitWorker);
    const survivor = media.workers().find((w) => w.workerIndex === safeWorker);
    if (!victim || !survivor) throw new Error('workers not found');
    expect(media.stats().workerRestarts).toBe(0);

    const gaps = new GapMonitor(safe.sink, safe.sender);
    const hitReceived = hit.sink.received;
    try {
      process.kill(victim.pid, 'SIGKILL');

      // Everyone in the hit room: producer.removed, reason worker-died (durable).
      for (const c of [hitPresenter, hitTap, hitWatcher]) {
        await eventually(
          () => has(c, 'producer.removed', (d) => d.producerId === hit.producerId && d.reason === 'worker-died'),
          5000,
          'producer.removed worker-died',
        );
        const removed = c.notifications.find((n) => n.event === 'producer.removed');
        expect(removed && 'seq' in removed ? removed.seq : undefined).toEqual(expect.any(Number));
      }
      // The owners: consumer.closed and transport.closed.
      await eventually(
        () => has(hitTap, 'consumer.closed', (d) => d.consumerId === hit.consumerId && d.reason === 'worker-died'),
        5000,
        'consumer.closed worker-died',
      );
      await eventually(
        () =>
          has(hitTap, 'transport.closed', (d) => d.transportId === hit.recvTransportId && d.reason === 'worker-died'),
        5000,
        'transport.closed to the tap',
      );
      await eventually(
        () =>
          has(
            hitPresenter,
            'transport.closed',
            (d) => d.transportId === hit.sendTransportId && d.reason === 'worker-died',
          ),
        5000,
        'transport.closed to the presenter',
      );
      // Nobody else gets someone's consumer.closed / transport.closed; the other room hears nothing.
      expect(
        hitWatcher.notifications.filter((n) => n.event === 'consumer.closed' || n.event === 'transport.closed'),
      ).toEqual([]);
      for (const c of [safePresenter, safeTap]) {
        expect(
          c.notifications.filter((n) => ['producer.removed', 'consumer.closed', 'transport.closed'].includes(n.event)),
        ).toEqual([]);
      }

      // A room opened while the worker is down goes to a live worker and forwards at once.
      const victimDown = !media.workers().some((w) => w.workerIndex === victim.workerIndex);
      const latePresenter = await joinRecording(t, 'late-presenter', { roomId: LATE, role: 'presenter' });
      const lateTap = await joinRecording(t, 'late-tap', { roomId: LATE, role: 'moderator' });
      const [lateWorker] = media.roomInfo(LATE)?.routerWorkers ?? [];
      if (victimDown) expect(lateWorker).toBe(survivor.workerIndex);
      const late = await startFlow(LATE, latePresenter, lateTap, 33333333);
      expect(late.sink.received).toBeGreaterThan(0);

      // The pool brings the worker back under the same index, with a new pid.
      await eventually(
        () => media.workers().some((w) => w.workerIndex === victim.workerIndex && w.pid !== victim.pid),
        10_000,
        'worker restart',
      );
      expect(media.workers()).toHaveLength(2);
      expect(media.stats().workerRestarts).toBe(1);
      expect(media.workers().find((w) => w.workerIndex === survivor.workerIndex)?.pid).toBe(survivor.pid);
      expect(media.roomInfo(HIT)).toMatchObject({ routers: 0, transports: 0, producers: 0, consumers: 0 });

      // The hit room's old ids are gone.
      await expect(hitTap.client.request('sfu.resumeConsumer', { consumerId: hit.consumerId })).rejects.toMatchObject({
        code: 'NOT_FOUND',
      });
      const stalled = hit.sink.received;
      expect(stalled - hitReceived).toBeLessThan(10);

      // Recovery: the presenter re-publishes on a new transport, the tap consumes again.
      const { producerId } = await publishOpus(hitPresenter, hit.sender);
      await eventually(() => has(hitTap, 'producer.added', (d) => d.producerId === producerId), 5000, 'producer.added');
      const again = await consumeFlow(hitTap, producerId);
      expect(again.recvTransportId).not.toBe(hit.recvTransportId);
      const received = again.sink.received;
      await eventually(() => again.sink.received >= received + 10, 5000, 'RTP after recovery');

      // The safe room never stopped: no gap anywhere near a worker restart.
      const safeReceived = safe.sink.received;
      await eventually(() => safe.sink.received >= safeReceived + 10, 5000, 'RTP in the safe room');
    } finally {
      gaps.stop();
    }
    // 20 ms per packet: never 200 ms without a packet, whatever happened to the other worker.
    expect(gaps.maxGapPackets, 'longest silence at the safe room’s sink, in packets sent').toBeLessThan(10);
    expect(media.roomInfo(SAFE)).toMatchObject({ routers: 1, transports: 2, producers: 1, consumers: 1 });
  });
});
