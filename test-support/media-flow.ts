/**
 * What the media tests of the signaling server share: a node with media over plain RTP, a
 * presenter publishing opus fed by an {@link RtpSender}, and a moderator's tap consuming it on
 * an {@link RtpSink}.
 */
import { expect } from 'vitest';
import { opusRtpParameters, RtpSink, type RtpSender } from './rtp.js';
import { startTestNode, type RawSocket, type TestNode } from './harness.js';
import {
  RequestError,
  type JoinResult,
  type MethodData,
  type MethodName,
  type MethodResult,
  type TradingRoomClient,
} from '../signaling/client/index.js';
import { GENEROUS_LIMITS } from './room-helpers.js';

/** Media on, two mediasoup workers on ephemeral ports, plain RTP transports allowed, no limits in the way. */
export const MEDIA_ENV: Readonly<Record<string, string>> = Object.freeze({
  ...GENEROUS_LIMITS,
  MEDIA_ENABLED: 'true',
  SFU_PLAIN_TRANSPORTS: 'true',
  RTC_BASE_PORT: '0',
  MEDIASOUP_NUM_WORKERS: '2',
});

/** Starts a node with {@link MEDIA_ENV} overridden by `env`; fails (and closes it) unless its media is up. */
export async function startMediaNode(env: Record<string, string> = {}): Promise<TestNode> {
  const t = await startTestNode({ ...MEDIA_ENV, ...env });
  try {
    expect(t.node.media, 'media must be up').toBeDefined();
  } catch (error) {
    await t.close();
    throw error;
  }
  return t;
}

export type PlainTransport = MethodResult<'sfu.createPlainTransport'>;
type MediaSource = MethodData<'sfu.produce'>['source'];

/** What the helpers need of a participant: typed requests, and the router capabilities of its join. */
export interface MediaParticipant {
  readonly client: Pick<TradingRoomClient, 'request'>;
  readonly join: Pick<JoinResult, 'routerRtpCapabilities'>;
}

/**
 * A {@link MediaParticipant} over a joined raw socket, which (unlike the SDK) stays through a
 * drain; an error response rejects with a `RequestError` carrying its code.
 */
export function rawParticipant(raw: RawSocket, join: JoinResult): MediaParticipant {
  const request = async (method: MethodName, data: unknown): Promise<unknown> => {
    const response = await raw.request(method, data);
    if (response.ok === true) return response.data;
    const error = response.error as { code: RequestError['code']; message: string };
    throw new RequestError(error.code, error.message);
  };
  return { join, client: { request: request as TradingRoomClient['request'] } };
}

/** `sfu.produce` of opus with `ssrc` on `transportId`, as `c` (whether it is to succeed or not). */
export function produceOpus(
  c: MediaParticipant,
  transportId: string,
  ssrc: number,
  source: MediaSource = 'microphone',
): Promise<MethodResult<'sfu.produce'>> {
  return c.client.request('sfu.produce', {
    transportId,
    kind: 'audio',
    source,
    rtpParameters: opusRtpParameters(ssrc) as never,
  });
}

/**
 * A presenter publishing opus over a new comedia plain send transport: the producer takes the
 * sender's SSRC, and the sender sends to the transport from now on.
 */
export async function publishOpus(
  presenter: MediaParticipant,
  sender: RtpSender,
  source: MediaSource = 'microphone',
): Promise<{ producerId: string; transport: PlainTransport }> {
  const transport = await presenter.client.request('sfu.createPlainTransport', { direction: 'send', comedia: true });
  const { producerId } = await produceOpus(presenter, transport.transportId, sender.ssrc, source);
  sender.start(transport.ip, transport.port);
  return { producerId, transport };
}

/**
 * A moderator consuming `producerId` on a plain recv transport (a tap) connected to a new sink
 * (added to `sinks`, which the caller closes), the consumer resumed.
 */
export async function consumeToSink(
  c: MediaParticipant,
  producerId: string,
  sinks: RtpSink[],
): Promise<{ sink: RtpSink; transportId: string; consumerId: string }> {
  const sink = await RtpSink.open();
  sinks.push(sink);
  const { transportId } = await c.client.request('sfu.createPlainTransport', { direction: 'recv' });
  await c.client.request('sfu.connectPlainTransport', { transportId, ip: '127.0.0.1', port: sink.port });
  const { consumerId } = await c.client.request('sfu.consume', {
    transportId,
    producerId,
    rtpCapabilities: c.join.routerRtpCapabilities as never,
  });
  await c.client.request('sfu.resumeConsumer', { consumerId });
  return { sink, transportId, consumerId };
}
