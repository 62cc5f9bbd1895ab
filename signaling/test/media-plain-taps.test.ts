/**
 * Plain RTP taps are not amplifiers: a recv plain transport is a moderator's, and
 * `sfu.connectPlainTransport` points one only inside `SFU_PLAIN_ALLOWED_CIDRS` (loopback by
 * default), never at an unspecified, multicast or broadcast address, even when listed. Only the
 * address is checked: no packet goes anywhere but loopback.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RtpSender, type RtpSink } from '../../test-support/rtp.js';
import { eventually, type TestNode } from '../../test-support/harness.js';
import { consumeToSink, publishOpus, startMediaNode } from '../../test-support/media-flow.js';
import { joinRecording, type RecordingClient } from '../../test-support/room-helpers.js';

const ROOM = 'plain-taps-room';

/**
 * The code each destination's `sfu.connectPlainTransport` was answered with, or 'ok', tried in
 * order on one new recv plain transport of the moderator.
 */
async function connectCodes(moderator: RecordingClient, ips: readonly string[]): Promise<Record<string, string>> {
  const { transportId } = await moderator.client.request('sfu.createPlainTransport', { direction: 'recv' });
  const codes: Record<string, string> = {};
  for (const ip of ips) {
    codes[ip] = await moderator.client.request('sfu.connectPlainTransport', { transportId, ip, port: 5004 }).then(
      () => 'ok',
      (error: { code: string }) => error.code,
    );
  }
  return codes;
}

describe('plain RTP taps with the default allow-list', () => {
  let t: TestNode;
  let moderator: RecordingClient;
  let sender: RtpSender;
  const sinks: RtpSink[] = [];

  beforeAll(async () => {
    t = await startMediaNode();
    moderator = await joinRecording(t, 'taps-moderator', { roomId: ROOM, role: 'moderator' });
    sender = new RtpSender(0x7a95);
  });

  afterAll(async () => {
    sender?.close();
    for (const sink of sinks) sink.close();
    await t?.close();
  });

  it('refuses a recv plain transport to a trader and to a presenter', async () => {
    const trader = await joinRecording(t, 'taps-trader', { roomId: ROOM });
    const presenter = await joinRecording(t, 'taps-presenter', { roomId: ROOM, role: 'presenter' });
    for (const c of [trader, presenter]) {
      await expect(c.client.request('sfu.createPlainTransport', { direction: 'recv' })).rejects.toMatchObject({
        code: 'FORBIDDEN',
      });
    }
    expect(t.node.media?.service.roomInfo(ROOM)?.transports ?? 0).toBe(0);
  });

  it('refuses unspecified, multicast and broadcast destinations and any outside loopback', async () => {
    expect(
      await connectCodes(moderator, [
        '0.0.0.0',
        '::',
        '239.1.2.3',
        '224.0.0.1',
        'ff02::1',
        '255.255.255.255',
        '::ffff:239.1.2.3',
        '::ffff:0.0.0.0',
        '192.0.2.10',
        '169.254.169.254',
        '2001:db8::10',
        '::ffff:192.0.2.10',
      ]),
    ).toEqual({
      '0.0.0.0': 'BAD_REQUEST',
      '::': 'BAD_REQUEST',
      '239.1.2.3': 'BAD_REQUEST',
      '224.0.0.1': 'BAD_REQUEST',
      'ff02::1': 'BAD_REQUEST',
      '255.255.255.255': 'BAD_REQUEST',
      '::ffff:239.1.2.3': 'BAD_REQUEST',
      '::ffff:0.0.0.0': 'BAD_REQUEST',
      '192.0.2.10': 'FORBIDDEN',
      '169.254.169.254': 'FORBIDDEN',
      '2001:db8::10': 'FORBIDDEN',
      '::ffff:192.0.2.10': 'FORBIDDEN',
    });
  });

  it('accepts a moderator’s tap on loopback, and RTP reaches it', async () => {
    const presenter = await joinRecording(t, 'taps-publisher', { roomId: ROOM, role: 'presenter' });
    const { producerId } = await publishOpus(presenter, sender);
    const { sink } = await consumeToSink(moderator, producerId, sinks);
    await eventually(() => sink.received >= 10, 5000, 'RTP at the moderator’s tap');
  });
});

describe('plain RTP taps with a configured allow-list', () => {
  let t: TestNode;

  beforeAll(async () => {
    // The never-destinations are listed on purpose: listing them does not make them allowed.
    t = await startMediaNode({
      SFU_PLAIN_ALLOWED_CIDRS: '127.0.0.2, 0.0.0.0/32, ::/128, 224.0.0.0/4, 255.255.255.255, ff00::/8',
    });
  });

  afterAll(async () => {
    await t?.close();
  });

  it('allows what it lists, and still never an unspecified, multicast or broadcast address', async () => {
    const moderator = await joinRecording(t, 'allow-moderator', { roomId: ROOM, role: 'moderator' });
    expect(
      await connectCodes(moderator, [
        '0.0.0.0',
        '::',
        '239.1.2.3',
        'ff02::1',
        '255.255.255.255',
        '127.0.0.1',
        '127.0.0.2',
      ]),
    ).toEqual({
      '0.0.0.0': 'BAD_REQUEST',
      '::': 'BAD_REQUEST',
      '239.1.2.3': 'BAD_REQUEST',
      'ff02::1': 'BAD_REQUEST',
      '255.255.255.255': 'BAD_REQUEST',
      '127.0.0.1': 'FORBIDDEN',
      '127.0.0.2': 'ok',
    });
  });
});
