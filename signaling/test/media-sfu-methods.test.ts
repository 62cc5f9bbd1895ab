/**
 * Every `sfu.*` method through a real node (two mediasoup workers, plain RTP enabled), driven by
 * SDK clients: a presenter publishes opus over a comedia plain transport fed by a dgram socket,
 * moderators' taps consume it on plain recv transports connected to dgram sinks, a trader on a
 * WebRTC transport. Covers the flow itself, pause/resume/close with their notifications, WebRTC
 * transports, the role and ownership checks, unknown ids, moderation (mute, pause someone else's
 * producer, demotion) and leaving.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { flowsTo, RtpSender, RtpSink, staysQuiet } from '../../test-support/rtp.js';
import { eventually, type TestNode } from '../../test-support/harness.js';
import type { EventData, EventName, Notification } from '../client/index.js';
import {
  consumeToSink,
  produceOpus,
  publishOpus,
  startMediaNode,
  type PlainTransport,
} from '../../test-support/media-flow.js';
import { joinRecording, type RecordingClient } from '../../test-support/room-helpers.js';

const ROOM = 'media-methods-room';
const MIC_SSRC = 11111111;
const SECOND_SSRC = 33333333;
/** Schema-valid ids nobody issued. */
const UNKNOWN_ID = 'no-such-id-0000';
const VP8_RTP_PARAMETERS = {
  codecs: [{ mimeType: 'video/VP8', payloadType: 101, clockRate: 90000 }],
  encodings: [{ ssrc: 22222222 }],
};
/** Well-formed DTLS parameters no browser will ever answer with (the handshake never happens). */
const BOGUS_DTLS = {
  role: 'client' as const,
  fingerprints: [{ algorithm: 'sha-256', value: Array.from({ length: 32 }, () => 'AB').join(':') }],
};

// ---- helpers -------------------------------------------------------------------------------------

type Found<E extends EventName> = Notification & { event: E; data: EventData<E> };

function eventsOf<E extends EventName>(
  c: RecordingClient,
  event: E,
  match: (data: EventData<E>) => boolean = () => true,
) {
  return c.notifications.filter((n): n is Found<E> => n.event === event && match(n.data as EventData<E>));
}

async function waitEvent<E extends EventName>(
  c: RecordingClient,
  event: E,
  match: (data: EventData<E>) => boolean = () => true,
): Promise<Found<E>> {
  await eventually(() => eventsOf(c, event, match).length > 0, 5000, `${event} at ${c.join.participantId}`);
  return eventsOf(c, event, match)[0] as Found<E>;
}

async function rejectsWith(request: Promise<unknown>, code: string): Promise<void> {
  await expect(request).rejects.toMatchObject({ code });
}

/** Each named request with the code it failed with, or 'ok'. */
function codesOf(cases: readonly [string, Promise<unknown>][]): Promise<[string, string][]> {
  return Promise.all(
    cases.map(([name, p]) =>
      p.then(
        (): [string, string] => [name, 'ok'],
        (e: { code: string }): [string, string] => [name, e.code],
      ),
    ),
  );
}

type Viewer = { transportId: string; consumerId: string; sink: RtpSink };

describe('sfu.* through the signaling server', () => {
  let t: TestNode;
  let presenter: RecordingClient;
  let moderator: RecordingClient;
  let trader: RecordingClient;
  /** Moderators tapping the presenter's audio (plain recv transports are theirs). */
  let taps: RecordingClient[];
  let everyone: RecordingClient[];
  let sender: RtpSender;
  let publish: PlainTransport;
  let micId: string;
  let viewers: Viewer[];
  const sinks: RtpSink[] = [];

  const request = (c: RecordingClient) => c.client.request.bind(c.client);

  /** A tap's plain recv transport connected to a new sink, and a (paused) consumer of `producerId`. */
  async function plainViewer(c: RecordingClient, producerId: string): Promise<Viewer> {
    const sink = await RtpSink.open();
    sinks.push(sink);
    const { transportId } = await request(c)('sfu.createPlainTransport', { direction: 'recv' });
    expect(await request(c)('sfu.connectPlainTransport', { transportId, ip: '127.0.0.1', port: sink.port })).toEqual(
      {},
    );
    const consumer = await request(c)('sfu.consume', {
      transportId,
      producerId,
      rtpCapabilities: c.join.routerRtpCapabilities as never,
    });
    expect(consumer).toMatchObject({ producerId, kind: 'audio', paused: true });
    return { transportId, consumerId: consumer.consumerId, sink };
  }

  beforeAll(async () => {
    t = await startMediaNode();
    presenter = await joinRecording(t, 'mm-presenter', { roomId: ROOM, role: 'presenter' });
    moderator = await joinRecording(t, 'mm-moderator', { roomId: ROOM, role: 'moderator' });
    trader = await joinRecording(t, 'mm-trader', { roomId: ROOM, role: 'trader' });
    taps = [];
    for (let i = 0; i < 3; i++) taps.push(await joinRecording(t, `mm-tap-${i}`, { roomId: ROOM, role: 'moderator' }));
    everyone = [presenter, moderator, trader, ...taps];
    sender = new RtpSender(MIC_SSRC);
  });

  afterAll(async () => {
    sender?.close();
    for (const sink of sinks) sink.close();
    await t?.close();
  });

  it('a presenter publishes opus over a comedia plain transport; everyone gets producer.added', async () => {
    expect(presenter.join.routerRtpCapabilities).toMatchObject({ codecs: expect.any(Array) });
    ({ producerId: micId, transport: publish } = await publishOpus(presenter, sender));
    expect(publish).toMatchObject({ transportId: expect.any(String), ip: '127.0.0.1', port: expect.any(Number) });
    expect(publish.rtcpPort).toBeUndefined(); // rtcpMux defaults to true

    for (const c of everyone) {
      const added = await waitEvent(c, 'producer.added', (d) => d.producerId === micId);
      expect(added.data).toEqual({
        producerId: micId,
        participantId: presenter.join.participantId,
        kind: 'audio',
        source: 'microphone',
      });
      expect(added.seq, 'producer.added is durable').toEqual(expect.any(Number));
    }
    // A late joiner finds the producer in its join result.
    const late = await joinRecording(t, 'mm-late', { roomId: ROOM });
    expect(late.join.producers).toEqual([
      {
        producerId: micId,
        participantId: presenter.join.participantId,
        kind: 'audio',
        source: 'microphone',
        paused: false,
      },
    ]);
    late.client.close();
  });

  it('traders may not publish: sfu.produce, plain and WebRTC send transports are FORBIDDEN', async () => {
    await rejectsWith(produceOpus(trader, publish.transportId, MIC_SSRC), 'FORBIDDEN');
    await rejectsWith(request(trader)('sfu.createPlainTransport', { direction: 'send', comedia: true }), 'FORBIDDEN');
    await rejectsWith(request(trader)('sfu.createTransport', { direction: 'send' }), 'FORBIDDEN');
    expect(t.node.media?.service.roomInfo(ROOM)).toMatchObject({ transports: 1, producers: 1 });
  });

  it('each tap consumes on a plain recv transport: nothing before sfu.resumeConsumer, then RTP at every sink', async () => {
    viewers = [];
    for (const tap of taps) viewers.push(await plainViewer(tap, micId));
    const [first, ...rest] = viewers as [Viewer, ...Viewer[]];

    // Only the first consumer is resumed: its sink fills while the others, still paused, stay empty.
    expect(await request(taps[0] as RecordingClient)('sfu.resumeConsumer', { consumerId: first.consumerId })).toEqual(
      {},
    );
    await flowsTo([first.sink], 10);
    await staysQuiet(
      rest.map((v) => v.sink),
      sender,
    );
    expect(rest.map((v) => v.sink.received)).toEqual(rest.map(() => 0));

    for (const [i, viewer] of rest.entries()) {
      await request(taps[i + 1] as RecordingClient)('sfu.resumeConsumer', { consumerId: viewer.consumerId });
    }
    await flowsTo(
      viewers.map((v) => v.sink),
      10,
    );
    // Each consumer sends with its own SSRC, never the producer's.
    for (const viewer of viewers) {
      expect(viewer.sink.ssrcs.size).toBe(1);
      expect(viewer.sink.ssrcs.has(MIC_SSRC)).toBe(false);
    }
    expect(t.node.media?.service.roomInfo(ROOM)).toMatchObject({ transports: 4, producers: 1, consumers: 3 });
  });

  it('sfu.pauseProducer stops the flow (producer.paused); sfu.resumeProducer restarts it (producer.resumed)', async () => {
    const allSinks = viewers.map((v) => v.sink);
    expect(await request(presenter)('sfu.pauseProducer', { producerId: micId })).toEqual({});
    await staysQuiet(allSinks, sender);
    for (const c of everyone) {
      const paused = await waitEvent(c, 'producer.paused', (d) => d.producerId === micId);
      expect(paused.seq).toEqual(expect.any(Number));
    }

    expect(await request(presenter)('sfu.resumeProducer', { producerId: micId })).toEqual({});
    await flowsTo(allSinks, 10);
    for (const c of everyone) {
      const resumed = await waitEvent(c, 'producer.resumed', (d) => d.producerId === micId);
      expect(resumed.seq).toEqual(expect.any(Number));
    }
  });

  it('a trader may not pause, resume or close the presenter’s producer; a moderator may', async () => {
    for (const method of ['sfu.pauseProducer', 'sfu.resumeProducer', 'sfu.closeProducer'] as const) {
      await rejectsWith(request(trader)(method, { producerId: micId }), 'FORBIDDEN');
    }
    await flowsTo(viewers.map((v) => v.sink));

    const pausedBefore = eventsOf(trader, 'producer.paused').length;
    expect(await request(moderator)('sfu.pauseProducer', { producerId: micId })).toEqual({});
    await staysQuiet(
      viewers.map((v) => v.sink),
      sender,
    );
    await eventually(() => eventsOf(trader, 'producer.paused').length === pausedBefore + 1);
    expect(await request(moderator)('sfu.resumeProducer', { producerId: micId })).toEqual({});
    await flowsTo(viewers.map((v) => v.sink));
  });

  let webrtcSendId: string;
  let webrtcRecvId: string;
  let cameraId: string;

  it('WebRTC transports: sfu.createTransport, sfu.connectTransport, sfu.restartIce, sfu.produce on it', async () => {
    const recv = await request(trader)('sfu.createTransport', { direction: 'recv' });
    expect(recv).toMatchObject({
      transportId: expect.any(String),
      iceParameters: { usernameFragment: expect.any(String), password: expect.any(String) },
      iceCandidates: expect.arrayContaining([expect.objectContaining({ ip: '127.0.0.1', protocol: 'udp' })]),
      dtlsParameters: { fingerprints: expect.any(Array) },
    });
    webrtcRecvId = recv.transportId;
    const send = await request(presenter)('sfu.createTransport', { direction: 'send' });
    webrtcSendId = send.transportId;

    // Schema-valid DTLS parameters are taken: the handshake (which never comes) is where a wrong
    // fingerprint fails, not here. A second connect is refused by mediasoup: BAD_REQUEST.
    expect(
      await request(presenter)('sfu.connectTransport', { transportId: webrtcSendId, dtlsParameters: BOGUS_DTLS }),
    ).toEqual({});
    await rejectsWith(
      request(presenter)('sfu.connectTransport', { transportId: webrtcSendId, dtlsParameters: BOGUS_DTLS }),
      'BAD_REQUEST',
    );
    // A fingerprint algorithm mediasoup does not know: BAD_REQUEST.
    await rejectsWith(
      request(trader)('sfu.connectTransport', {
        transportId: webrtcRecvId,
        dtlsParameters: { role: 'client', fingerprints: [{ algorithm: 'md4', value: 'AB:CD' }] },
      }),
      'BAD_REQUEST',
    );
    // connectTransport on a plain transport, connectPlainTransport on a WebRTC one: BAD_REQUEST.
    await rejectsWith(
      request(presenter)('sfu.connectTransport', { transportId: publish.transportId, dtlsParameters: BOGUS_DTLS }),
      'BAD_REQUEST',
    );
    await rejectsWith(
      request(trader)('sfu.connectPlainTransport', { transportId: webrtcRecvId, ip: '127.0.0.1', port: 9 }),
      'BAD_REQUEST',
    );

    const restarted = await request(trader)('sfu.restartIce', { transportId: webrtcRecvId });
    expect(restarted.iceParameters).toMatchObject({
      usernameFragment: expect.any(String),
      password: expect.any(String),
    });
    expect(restarted.iceParameters).not.toEqual(recv.iceParameters);
    // No ICE on a plain transport.
    await rejectsWith(request(presenter)('sfu.restartIce', { transportId: publish.transportId }), 'BAD_REQUEST');

    // Producing needs no completed DTLS; consuming it on the trader's WebRTC transport works too.
    ({ producerId: cameraId } = await request(presenter)('sfu.produce', {
      transportId: webrtcSendId,
      kind: 'video',
      source: 'camera',
      rtpParameters: VP8_RTP_PARAMETERS,
    }));
    await waitEvent(trader, 'producer.added', (d) => d.producerId === cameraId && d.kind === 'video');
    const consumer = await request(trader)('sfu.consume', {
      transportId: webrtcRecvId,
      producerId: cameraId,
      rtpCapabilities: trader.join.routerRtpCapabilities as never,
    });
    expect(consumer).toMatchObject({ producerId: cameraId, kind: 'video', paused: true });
    expect(await request(trader)('sfu.resumeConsumer', { consumerId: consumer.consumerId })).toEqual({});

    // Parameters mediasoup rejects: a kind that does not fit the source, producing on a recv
    // transport, consuming on a send transport, capabilities without the codec.
    await rejectsWith(produceOpus(presenter, webrtcSendId, 44444444, 'camera'), 'BAD_REQUEST');
    await rejectsWith(
      request(trader)('sfu.consume', {
        transportId: webrtcRecvId,
        producerId: micId,
        rtpCapabilities: { codecs: [], headerExtensions: [] },
      }),
      'BAD_REQUEST',
    );
    await rejectsWith(
      request(presenter)('sfu.consume', {
        transportId: webrtcSendId,
        producerId: micId,
        rtpCapabilities: presenter.join.routerRtpCapabilities as never,
      }),
      'BAD_REQUEST',
    );
    expect(await request(presenter)('ping', {})).toMatchObject({ now: expect.any(Number) });
  });

  it('sfu.setConsumerLayers on an audio consumer is accepted and changes nothing', async () => {
    // mediasoup's simple (non-simulcast) consumers accept preferred layers and ignore them: the
    // method answers {} and the audio keeps flowing. Negative layers fail the schema.
    const viewer = viewers[0] as Viewer;
    const tap = taps[0] as RecordingClient;
    expect(await request(tap)('sfu.setConsumerLayers', { consumerId: viewer.consumerId, spatialLayer: 0 })).toEqual({});
    expect(
      await request(tap)('sfu.setConsumerLayers', {
        consumerId: viewer.consumerId,
        spatialLayer: 2,
        temporalLayer: 1,
      }),
    ).toEqual({});
    await rejectsWith(
      request(tap)('sfu.setConsumerLayers', { consumerId: viewer.consumerId, spatialLayer: -1 }),
      'BAD_REQUEST',
    );
    await flowsTo([viewer.sink]);
    expect(eventsOf(tap, 'consumer.layersChanged')).toEqual([]);
  });

  it('unknown ids are NOT_FOUND, for every method that takes one', async () => {
    const c = trader;
    const caps = c.join.routerRtpCapabilities as never;
    const cases: [string, Promise<unknown>][] = [
      ['connectTransport', request(c)('sfu.connectTransport', { transportId: UNKNOWN_ID, dtlsParameters: BOGUS_DTLS })],
      [
        'connectPlainTransport',
        request(c)('sfu.connectPlainTransport', { transportId: UNKNOWN_ID, ip: '127.0.0.1', port: 9 }),
      ],
      ['restartIce', request(c)('sfu.restartIce', { transportId: UNKNOWN_ID })],
      ['produce', produceOpus(presenter, UNKNOWN_ID, MIC_SSRC)],
      [
        'consume (transport)',
        request(c)('sfu.consume', { transportId: UNKNOWN_ID, producerId: micId, rtpCapabilities: caps }),
      ],
      [
        'consume (producer)',
        request(c)('sfu.consume', { transportId: webrtcRecvId, producerId: UNKNOWN_ID, rtpCapabilities: caps }),
      ],
      ['resumeConsumer', request(c)('sfu.resumeConsumer', { consumerId: UNKNOWN_ID })],
      ['setConsumerLayers', request(c)('sfu.setConsumerLayers', { consumerId: UNKNOWN_ID, spatialLayer: 0 })],
      ['pauseProducer', request(presenter)('sfu.pauseProducer', { producerId: UNKNOWN_ID })],
      ['resumeProducer', request(presenter)('sfu.resumeProducer', { producerId: UNKNOWN_ID })],
      ['closeProducer', request(presenter)('sfu.closeProducer', { producerId: UNKNOWN_ID })],
      ['pauseProducer (moderator)', request(moderator)('sfu.pauseProducer', { producerId: UNKNOWN_ID })],
    ];
    expect(await codesOf(cases)).toEqual(cases.map(([name]) => [name, 'NOT_FOUND']));
  });

  it('someone else’s transport or consumer is FORBIDDEN', async () => {
    const [owner, other] = taps as [RecordingClient, RecordingClient];
    const ownerViewer = viewers[0] as Viewer;
    const caps = other.join.routerRtpCapabilities as never;
    const cases: [string, Promise<unknown>][] = [
      [
        'connectPlainTransport',
        request(other)('sfu.connectPlainTransport', { transportId: ownerViewer.transportId, ip: '127.0.0.1', port: 9 }),
      ],
      [
        'connectTransport',
        request(other)('sfu.connectTransport', { transportId: webrtcRecvId, dtlsParameters: BOGUS_DTLS }),
      ],
      ['restartIce', request(other)('sfu.restartIce', { transportId: webrtcRecvId })],
      [
        'consume',
        request(other)('sfu.consume', {
          transportId: ownerViewer.transportId,
          producerId: micId,
          rtpCapabilities: caps,
        }),
      ],
      ['resumeConsumer', request(other)('sfu.resumeConsumer', { consumerId: ownerViewer.consumerId })],
      [
        'setConsumerLayers',
        request(other)('sfu.setConsumerLayers', { consumerId: ownerViewer.consumerId, spatialLayer: 0 }),
      ],
      ['produce on the presenter’s transport (moderator)', produceOpus(moderator, publish.transportId, 55555555)],
    ];
    expect(await codesOf(cases)).toEqual(cases.map(([name]) => [name, 'FORBIDDEN']));
    // The owner's flow is untouched.
    expect(owner.join.participantId).not.toBe(other.join.participantId);
    await flowsTo([ownerViewer.sink]);
  });

  it('moderation.mute pauses every producer of the presenter (producer.paused for each)', async () => {
    const paused = (c: RecordingClient) => eventsOf(c, 'producer.paused').length;
    const before = everyone.map(paused);
    expect(await request(moderator)('moderation.mute', { participantId: presenter.join.participantId })).toEqual({});
    for (const [i, c] of everyone.entries()) {
      await eventually(() => paused(c) === (before[i] as number) + 2, 5000, 'two producer.paused');
      const ids = eventsOf(c, 'producer.paused')
        .slice(-2)
        .map((n) => n.data.producerId)
        .sort();
      expect(ids).toEqual([micId, cameraId].sort());
    }
    await staysQuiet(
      viewers.map((v) => v.sink),
      sender,
    );
    expect(t.node.media?.service.listProducers(ROOM).every((p) => p.paused)).toBe(true);

    // The presenter unmutes itself.
    await request(presenter)('sfu.resumeProducer', { producerId: micId });
    await request(presenter)('sfu.resumeProducer', { producerId: cameraId });
    await flowsTo(viewers.map((v) => v.sink));
  });

  it('sfu.closeProducer: producer.removed for everyone, consumer.closed to each consumer’s owner', async () => {
    expect(await request(presenter)('sfu.closeProducer', { producerId: micId })).toEqual({});
    for (const c of everyone) {
      const removed = await waitEvent(c, 'producer.removed', (d) => d.producerId === micId);
      expect(removed.seq).toEqual(expect.any(Number));
      expect(removed.data.reason).toBe('closed');
    }
    for (const [i, tap] of taps.entries()) {
      const closed = await waitEvent(tap, 'consumer.closed', (d) => d.consumerId === (viewers[i] as Viewer).consumerId);
      expect(closed.data).toEqual({ consumerId: (viewers[i] as Viewer).consumerId, reason: 'producer-closed' });
      // Nobody gets someone else's consumer.closed.
      const others = viewers.filter((_, j) => j !== i).map((v) => v.consumerId);
      expect(eventsOf(tap, 'consumer.closed', (d) => others.includes(d.consumerId))).toEqual([]);
    }
    expect(eventsOf(presenter, 'consumer.closed')).toEqual([]);
    expect(eventsOf(moderator, 'consumer.closed')).toEqual([]);
    await staysQuiet(
      viewers.map((v) => v.sink),
      sender,
    );
    await rejectsWith(request(presenter)('sfu.closeProducer', { producerId: micId }), 'NOT_FOUND');
    await rejectsWith(
      request(taps[0] as RecordingClient)('sfu.resumeConsumer', { consumerId: (viewers[0] as Viewer).consumerId }),
      'NOT_FOUND',
    );
  });

  it('a publisher leaving the room closes its producers (producer.removed to the others)', async () => {
    const guest = await joinRecording(t, 'mm-guest-presenter', { roomId: ROOM, role: 'presenter' });
    const guestSender = new RtpSender(SECOND_SSRC);
    try {
      const { producerId } = await publishOpus(guest, guestSender, 'screen-audio');
      const tap = taps[1] as RecordingClient;
      await waitEvent(tap, 'producer.added', (d) => d.producerId === producerId);
      const { sink, consumerId } = await consumeToSink(tap, producerId, sinks);
      await flowsTo([sink]);

      expect(await guest.client.request('room.leave', {})).toEqual({});
      for (const c of everyone) {
        const removed = await waitEvent(c, 'producer.removed', (d) => d.producerId === producerId);
        expect(removed.data.reason).toBe('participant-left');
        await waitEvent(c, 'participant.left', (d) => d.participantId === guest.join.participantId);
      }
      const closed = await waitEvent(tap, 'consumer.closed', (d) => d.consumerId === consumerId);
      expect(closed.data.reason).toBe('producer-closed');
      await staysQuiet([sink], guestSender);
      expect(t.node.media?.service.listProducers(ROOM).map((p) => p.producerId)).toEqual([cameraId]);
    } finally {
      guestSender.close();
      guest.client.close();
    }
  });

  it('moderation.setRole demoting the presenter closes its producers at once (producer.removed)', async () => {
    // Publish the microphone again on the same comedia transport (the sender never stopped).
    const { producerId } = await produceOpus(presenter, publish.transportId, MIC_SSRC);
    const tap = taps[2] as RecordingClient;
    const { sink, consumerId } = await consumeToSink(tap, producerId, sinks);
    await flowsTo([sink]);

    expect(
      await request(moderator)('moderation.setRole', { participantId: presenter.join.participantId, role: 'trader' }),
    ).toEqual({});
    // By the time setRole answers, the producers are gone.
    expect(t.node.media?.service.listProducers(ROOM)).toEqual([]);
    for (const c of everyone) {
      for (const id of [producerId, cameraId]) {
        const removed = await waitEvent(c, 'producer.removed', (d) => d.producerId === id);
        expect(removed.data.reason).toBe('role-revoked');
      }
      await waitEvent(c, 'participant.updated', (d) => d.participant.participantId === presenter.join.participantId);
    }
    const closed = await waitEvent(tap, 'consumer.closed', (d) => d.consumerId === consumerId);
    expect(closed.data.reason).toBe('producer-closed');
    await staysQuiet([sink], sender);

    // A trader now: no more publishing, nor a new send transport.
    await rejectsWith(produceOpus(presenter, publish.transportId, MIC_SSRC), 'FORBIDDEN');
    await rejectsWith(request(presenter)('sfu.createPlainTransport', { direction: 'send' }), 'FORBIDDEN');
  });
});

describe('sfu.* with SFU_PLAIN_TRANSPORTS off', () => {
  let t: TestNode;

  beforeAll(async () => {
    t = await startMediaNode({ SFU_PLAIN_TRANSPORTS: 'false', MEDIASOUP_NUM_WORKERS: '1' });
  });

  afterAll(async () => {
    await t?.close();
  });

  it('plain transports are FORBIDDEN for every role; WebRTC transports still work', async () => {
    const presenter = await joinRecording(t, 'mp-presenter', { roomId: 'media-plain-off', role: 'presenter' });
    const trader = await joinRecording(t, 'mp-trader', { roomId: 'media-plain-off' });
    await rejectsWith(
      presenter.client.request('sfu.createPlainTransport', { direction: 'send', comedia: true }),
      'FORBIDDEN',
    );
    await rejectsWith(trader.client.request('sfu.createPlainTransport', { direction: 'recv' }), 'FORBIDDEN');
    await rejectsWith(
      trader.client.request('sfu.connectPlainTransport', { transportId: UNKNOWN_ID, ip: '127.0.0.1', port: 9 }),
      'FORBIDDEN',
    );
    const send = await presenter.client.request('sfu.createTransport', { direction: 'send' });
    expect(send.transportId).toEqual(expect.any(String));
    expect(t.node.media?.service.roomInfo('media-plain-off')).toMatchObject({ transports: 1 });
  });
});
