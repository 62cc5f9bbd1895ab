/**
 * The SFU's consumer rules through a real node (two mediasoup workers, plain RTP enabled): a
 * producer is consumed at most once per transport — a repeated `sfu.consume` answers the same
 * consumer, so a tap cannot multiply a stream — and a participant holds at most
 * `SFU_MAX_CONSUMERS_PER_PARTICIPANT` consumers (`FORBIDDEN`, naming the cap, over it).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestNode } from '../../test-support/harness.js';
import { consumeToSink, produceOpus, publishOpus, startMediaNode } from '../../test-support/media-flow.js';
import { joinRecording, type RecordingClient } from '../../test-support/room-helpers.js';
import { flowsTo, RtpSender, staysQuiet, type RtpSink } from '../../test-support/rtp.js';

const ROOM = 'media-limits-room';
const CAP = 2;
const MIC_SSRC = 41414141;
const SCREEN_AUDIO_SSRC = 42424242;
const VP8_RTP_PARAMETERS = {
  codecs: [{ mimeType: 'video/VP8', payloadType: 101, clockRate: 90000 }],
  encodings: [{ ssrc: 43434343 }],
};

describe('consumer rules through the signaling server', () => {
  let t: TestNode;
  let presenter: RecordingClient;
  let trader: RecordingClient;
  let tap: RecordingClient;
  let sender: RtpSender;
  let micId: string;
  let screenAudioId: string;
  let cameraId: string;
  const sinks: RtpSink[] = [];

  const consume = (c: RecordingClient, transportId: string, producerId: string) =>
    c.client.request('sfu.consume', {
      transportId,
      producerId,
      rtpCapabilities: c.join.routerRtpCapabilities as never,
    });
  const media = () => {
    const service = t.node.media?.service;
    if (!service) throw new Error('media must be up');
    return service;
  };
  /** Consumers on the workers, as the pool counts them from mediasoup's own observers. */
  const workerConsumers = (): number =>
    media()
      .workers()
      .reduce((n, w) => n + w.consumers, 0);

  beforeAll(async () => {
    t = await startMediaNode({ SFU_MAX_CONSUMERS_PER_PARTICIPANT: String(CAP) });
    presenter = await joinRecording(t, 'ml-presenter', { roomId: ROOM, role: 'presenter' });
    trader = await joinRecording(t, 'ml-trader', { roomId: ROOM, role: 'trader' });
    tap = await joinRecording(t, 'ml-tap', { roomId: ROOM, role: 'moderator' });
    sender = new RtpSender(MIC_SSRC);
    const published = await publishOpus(presenter, sender);
    micId = published.producerId;
    ({ producerId: screenAudioId } = await produceOpus(
      presenter,
      published.transport.transportId,
      SCREEN_AUDIO_SSRC,
      'screen-audio',
    ));
    const send = await presenter.client.request('sfu.createTransport', { direction: 'send' });
    ({ producerId: cameraId } = await presenter.client.request('sfu.produce', {
      transportId: send.transportId,
      kind: 'video',
      source: 'camera',
      rtpParameters: VP8_RTP_PARAMETERS,
    }));
  });

  afterAll(async () => {
    sender?.close();
    for (const sink of sinks) sink.close();
    await t?.close();
  });

  it('a repeated sfu.consume on one transport answers the same consumer: no second consumer, no amplification', async () => {
    const { sink, transportId, consumerId } = await consumeToSink(tap, micId, sinks);
    await flowsTo([sink]);
    const before = { room: media().roomInfo(ROOM)?.consumers, workers: workerConsumers() };

    const answers = await Promise.all([1, 2, 3].map(() => consume(tap, transportId, micId)));
    expect(answers.map((a) => a.consumerId)).toEqual([consumerId, consumerId, consumerId]);
    expect(answers[0]).toMatchObject({ producerId: micId, kind: 'audio', paused: true });
    expect(media().roomInfo(ROOM)?.consumers).toBe(before.room);
    expect(workerConsumers()).toBe(before.workers);

    // Paused again, as the answer says, until the tap resumes it; then one stream, once.
    await staysQuiet([sink], sender);
    expect(await tap.client.request('sfu.resumeConsumer', { consumerId })).toEqual({});
    await flowsTo([sink]);
    const start = { sent: sender.sent, received: sink.received };
    await flowsTo([sink], 25);
    // Packets out never outnumber packets in (3 allowed in flight at the start).
    expect(sink.received - start.received).toBeLessThanOrEqual(sender.sent - start.sent + 3);
    expect(sink.ssrcs.size).toBe(1);
  });

  it(`a participant holds at most SFU_MAX_CONSUMERS_PER_PARTICIPANT (${CAP}) consumers: the next is FORBIDDEN`, async () => {
    const first = await trader.client.request('sfu.createTransport', { direction: 'recv' });
    const second = await trader.client.request('sfu.createTransport', { direction: 'recv' });
    const mic = await consume(trader, first.transportId, micId);
    await consume(trader, first.transportId, screenAudioId);

    const refusal = { code: 'FORBIDDEN', message: `consumer limit reached: at most ${CAP} consumers per participant` };
    await expect(consume(trader, first.transportId, cameraId)).rejects.toMatchObject(refusal);
    // The cap counts the participant's consumers on all its transports.
    await expect(consume(trader, second.transportId, micId)).rejects.toMatchObject(refusal);
    // A consumer it holds is still answered, and counts once.
    expect((await consume(trader, first.transportId, micId)).consumerId).toBe(mic.consumerId);
    expect(media().roomInfo(ROOM)?.consumers).toBe(1 + CAP);

    // A consumer that goes away frees its place.
    expect(await presenter.client.request('sfu.closeProducer', { producerId: screenAudioId })).toEqual({});
    const camera = await consume(trader, second.transportId, cameraId);
    expect(camera).toMatchObject({ producerId: cameraId, kind: 'video', paused: true });
    await expect(consume(trader, second.transportId, micId)).rejects.toMatchObject(refusal);
  });
});
