/**
 * The protocol's schemas, method by method: valid input passes, each invalid field is rejected,
 * unknown keys are rejected; plus the request envelope, the role lists and the notifications.
 */
import { describe, expect, it } from 'vitest';
import { METHODS, findMethod, isDurableEvent, type MethodName } from '../src/protocol/index.js';
import { cleanDisplayName, requestEnvelopeSchema, participantSchema, ROLES } from '../src/protocol/common.js';
import { durableEventSchemas, ephemeralEventSchemas } from '../src/protocol/notifications.js';
import { CONTRACT_METHODS } from '../../test-support/contract.js';

const DTLS = { role: 'auto', fingerprints: [{ algorithm: 'sha-256', value: 'AA:BB' }] };
const RTP = { codecs: [{ mimeType: 'audio/opus', payloadType: 100, clockRate: 48000 }], encodings: [{ ssrc: 1 }] };

interface Fixture {
  readonly valid: readonly Record<string, unknown>[];
  readonly invalid: readonly [what: string, data: unknown][];
}

/** Valid and invalid `data` for every method of the contract. */
const FIXTURES: Record<MethodName, Fixture> = {
  'room.join': {
    valid: [
      {},
      { displayName: 'Alice' },
      { displayName: '  Bob  ' },
      { resume: { sessionId: 's-1', lastSeq: 0 } },
      { displayName: 'x'.repeat(64), resume: { sessionId: 's-1', lastSeq: 42 } },
    ],
    invalid: [
      ['empty display name', { displayName: '' }],
      ['blank display name', { displayName: '   ' }],
      ['display name of 65 chars', { displayName: 'x'.repeat(65) }],
      ['display name not a string', { displayName: 7 }],
      ['resume.lastSeq negative', { resume: { sessionId: 's-1', lastSeq: -1 } }],
      ['resume.lastSeq fractional', { resume: { sessionId: 's-1', lastSeq: 1.5 } }],
      ['resume.lastSeq a string', { resume: { sessionId: 's-1', lastSeq: '3' } }],
      ['resume without sessionId', { resume: { lastSeq: 3 } }],
      ['resume with empty sessionId', { resume: { sessionId: '', lastSeq: 3 } }],
      ['resume with sessionId of 129 chars', { resume: { sessionId: 's'.repeat(129), lastSeq: 3 } }],
      ['resume with an extra key', { resume: { sessionId: 's-1', lastSeq: 3, node: 'b' } }],
      ['unknown extra key', { displayName: 'A', role: 'moderator' }],
    ],
  },
  'room.leave': { valid: [{}], invalid: [['unknown extra key', { reason: 'bye' }]] },
  'session.refresh': {
    valid: [{ token: 'a.b.c' }],
    invalid: [
      ['missing token', {}],
      ['empty token', { token: '' }],
      ['token of 8193 chars', { token: 't'.repeat(8193) }],
      ['unknown extra key', { token: 'a.b.c', userId: 'u' }],
    ],
  },
  ping: { valid: [{}], invalid: [['unknown extra key', { t: 1 }]] },
  'room.history': {
    valid: [{}, { kinds: ['alert'] }, { kinds: ['chat', 'alert'], beforeSeq: 7, limit: 100 }, { limit: 1 }],
    invalid: [
      ['limit of 101', { limit: 101 }],
      ['limit of 0', { limit: 0 }],
      ['fractional limit', { limit: 1.5 }],
      ['unknown kind', { kinds: ['presence'] }],
      ['no kinds', { kinds: [] }],
      ['beforeSeq of 0', { beforeSeq: 0 }],
      ['unknown extra key', { limit: 5, epoch: 'e' }],
    ],
  },
  'chat.send': {
    valid: [{ text: 'x' }, { text: 'x'.repeat(2000) }, { text: 'BTC breaking out 🚀' }],
    invalid: [
      ['missing text', {}],
      ['empty text', { text: '' }],
      ['text of 2001 chars', { text: 'x'.repeat(2001) }],
      ['text not a string', { text: 42 }],
      ['unknown extra key', { text: 'hi', to: 'bob' }],
    ],
  },
  'alert.publish': {
    valid: [
      { symbol: 'AAPL', action: 'buy' },
      { symbol: 'BTC/USD', action: 'sell', price: 64_000.5 },
      { symbol: 'ES:CME', action: 'close', price: 0.0001, note: 'n'.repeat(500) },
      { symbol: 'BRK.B', action: 'watch', note: '' },
      { symbol: 'X'.repeat(15), action: 'watch' },
      { symbol: 'EUR-USD', action: 'buy' },
    ],
    invalid: [
      ['missing symbol', { action: 'buy' }],
      ['lowercase symbol', { symbol: 'aapl', action: 'buy' }],
      ['symbol of 16 chars', { symbol: 'X'.repeat(16), action: 'buy' }],
      ['empty symbol', { symbol: '', action: 'buy' }],
      ['symbol with a space', { symbol: 'BRK B', action: 'buy' }],
      ['missing action', { symbol: 'AAPL' }],
      ['unknown action', { symbol: 'AAPL', action: 'hold' }],
      ['uppercase action', { symbol: 'AAPL', action: 'BUY' }],
      ['price 0', { symbol: 'AAPL', action: 'buy', price: 0 }],
      ['negative price', { symbol: 'AAPL', action: 'buy', price: -1 }],
      ['price Infinity', { symbol: 'AAPL', action: 'buy', price: Infinity }],
      ['price NaN', { symbol: 'AAPL', action: 'buy', price: Number.NaN }],
      ['price as a string', { symbol: 'AAPL', action: 'buy', price: '10' }],
      ['note of 501 chars', { symbol: 'AAPL', action: 'buy', note: 'n'.repeat(501) }],
      ['unknown extra key', { symbol: 'AAPL', action: 'buy', size: 100 }],
    ],
  },
  'moderation.kick': {
    valid: [{ participantId: 'p-1' }],
    invalid: [
      ['missing participantId', {}],
      ['empty participantId', { participantId: '' }],
      ['participantId not a string', { participantId: 1 }],
      ['unknown extra key', { participantId: 'p-1', reason: 'spam' }],
    ],
  },
  'moderation.mute': {
    valid: [{ participantId: 'p-1' }],
    invalid: [
      ['missing participantId', {}],
      ['participantId of 129 chars', { participantId: 'p'.repeat(129) }],
      ['unknown extra key', { participantId: 'p-1', kind: 'audio' }],
    ],
  },
  'moderation.setRole': {
    valid: ROLES.map((role) => ({ participantId: 'p-1', role })),
    invalid: [
      ['missing role', { participantId: 'p-1' }],
      ['role outside the enum', { participantId: 'p-1', role: 'admin' }],
      ['role in capitals', { participantId: 'p-1', role: 'Trader' }],
      ['missing participantId', { role: 'trader' }],
      ['unknown extra key', { participantId: 'p-1', role: 'trader', until: 5 }],
    ],
  },
  'sfu.createTransport': {
    valid: [{ direction: 'send' }, { direction: 'recv' }],
    invalid: [
      ['missing direction', {}],
      ['unknown direction', { direction: 'both' }],
      ['unknown extra key', { direction: 'recv', sctp: true }],
    ],
  },
  'sfu.connectTransport': {
    valid: [{ transportId: 't-1', dtlsParameters: DTLS }],
    invalid: [
      ['missing dtlsParameters', { transportId: 't-1' }],
      ['no fingerprints', { transportId: 't-1', dtlsParameters: { fingerprints: [] } }],
      ['unknown DTLS role', { transportId: 't-1', dtlsParameters: { ...DTLS, role: 'peer' } }],
      ['missing transportId', { dtlsParameters: DTLS }],
      ['unknown extra key', { transportId: 't-1', dtlsParameters: DTLS, x: 1 }],
    ],
  },
  'sfu.produce': {
    valid: [
      { transportId: 't-1', kind: 'audio', rtpParameters: RTP, source: 'microphone' },
      { transportId: 't-1', kind: 'video', rtpParameters: RTP, source: 'screen' },
      { transportId: 't-1', kind: 'video', rtpParameters: RTP, source: 'camera' },
      { transportId: 't-1', kind: 'audio', rtpParameters: RTP, source: 'screen-audio' },
    ],
    invalid: [
      ['unknown kind', { transportId: 't-1', kind: 'data', rtpParameters: RTP, source: 'camera' }],
      ['unknown source', { transportId: 't-1', kind: 'video', rtpParameters: RTP, source: 'webcam' }],
      ['missing source', { transportId: 't-1', kind: 'video', rtpParameters: RTP }],
      ['no codecs', { transportId: 't-1', kind: 'video', rtpParameters: { codecs: [] }, source: 'camera' }],
      ['missing rtpParameters', { transportId: 't-1', kind: 'video', source: 'camera' }],
      ['unknown extra key', { transportId: 't-1', kind: 'video', rtpParameters: RTP, source: 'camera', appData: {} }],
    ],
  },
  'sfu.consume': {
    valid: [{ transportId: 't-1', producerId: 'p-1', rtpCapabilities: { codecs: [] } }],
    invalid: [
      ['missing producerId', { transportId: 't-1', rtpCapabilities: {} }],
      ['missing rtpCapabilities', { transportId: 't-1', producerId: 'p-1' }],
      ['codecs not an array', { transportId: 't-1', producerId: 'p-1', rtpCapabilities: { codecs: 'opus' } }],
      ['unknown extra key', { transportId: 't-1', producerId: 'p-1', rtpCapabilities: {}, paused: false }],
    ],
  },
  'sfu.resumeConsumer': {
    valid: [{ consumerId: 'c-1' }],
    invalid: [
      ['missing consumerId', {}],
      ['unknown extra key', { consumerId: 'c-1', x: 1 }],
    ],
  },
  'sfu.pauseProducer': {
    valid: [{ producerId: 'p-1' }],
    invalid: [
      ['missing producerId', {}],
      ['unknown extra key', { producerId: 'p-1', x: 1 }],
    ],
  },
  'sfu.resumeProducer': {
    valid: [{ producerId: 'p-1' }],
    invalid: [
      ['empty producerId', { producerId: '' }],
      ['unknown extra key', { producerId: 'p-1', x: 1 }],
    ],
  },
  'sfu.closeProducer': {
    valid: [{ producerId: 'p-1' }],
    invalid: [
      ['producerId not a string', { producerId: 5 }],
      ['unknown extra key', { producerId: 'p-1', x: 1 }],
    ],
  },
  'sfu.setConsumerLayers': {
    valid: [
      { consumerId: 'c-1', spatialLayer: 0 },
      { consumerId: 'c-1', spatialLayer: 2, temporalLayer: 1 },
    ],
    invalid: [
      ['missing spatialLayer', { consumerId: 'c-1' }],
      ['negative spatialLayer', { consumerId: 'c-1', spatialLayer: -1 }],
      ['fractional spatialLayer', { consumerId: 'c-1', spatialLayer: 0.5 }],
      ['spatialLayer too high', { consumerId: 'c-1', spatialLayer: 16 }],
      ['negative temporalLayer', { consumerId: 'c-1', spatialLayer: 0, temporalLayer: -1 }],
      ['unknown extra key', { consumerId: 'c-1', spatialLayer: 0, x: 1 }],
    ],
  },
  'sfu.restartIce': {
    valid: [{ transportId: 't-1' }],
    invalid: [
      ['missing transportId', {}],
      ['unknown extra key', { transportId: 't-1', x: 1 }],
    ],
  },
  'sfu.createPlainTransport': {
    valid: [{ direction: 'send' }, { direction: 'recv', comedia: true, rtcpMux: false }],
    invalid: [
      ['unknown direction', { direction: 'sendrecv' }],
      ['comedia not a boolean', { direction: 'send', comedia: 'yes' }],
      ['unknown extra key', { direction: 'send', port: 5004 }],
    ],
  },
  'sfu.connectPlainTransport': {
    valid: [
      { transportId: 't-1', ip: '127.0.0.1', port: 5004 },
      { transportId: 't-1', ip: '::1', port: 65535, rtcpPort: 5005 },
    ],
    invalid: [
      ['a host name for ip', { transportId: 't-1', ip: 'encoder.local', port: 5004 }],
      ['port 0', { transportId: 't-1', ip: '127.0.0.1', port: 0 }],
      ['port 65536', { transportId: 't-1', ip: '127.0.0.1', port: 65536 }],
      ['rtcpPort fractional', { transportId: 't-1', ip: '127.0.0.1', port: 5004, rtcpPort: 5005.5 }],
      ['unknown extra key', { transportId: 't-1', ip: '127.0.0.1', port: 5004, x: 1 }],
    ],
  },
};

describe('method registry', () => {
  it('holds exactly the contract methods', () => {
    expect(Object.keys(METHODS).sort()).toEqual([...CONTRACT_METHODS].sort());
    expect(Object.keys(FIXTURES).sort()).toEqual(Object.keys(METHODS).sort());
  });

  it('finds methods by wire name only (no prototype keys)', () => {
    expect(findMethod('chat.send')).toBe(METHODS['chat.send']);
    for (const name of ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'chat.sendx', 'CHAT.SEND', '']) {
      expect(findMethod(name), name).toBeUndefined();
    }
  });

  it('gives each method the roles of the contract', () => {
    const publishers = ['presenter', 'moderator'];
    expect(METHODS['alert.publish'].roles).toEqual(publishers);
    expect(METHODS['sfu.produce'].roles).toEqual(publishers);
    for (const name of ['moderation.kick', 'moderation.mute', 'moderation.setRole'] as const) {
      expect(METHODS[name].roles).toEqual(['moderator']);
    }
    for (const name of ['room.join', 'room.leave', 'session.refresh', 'chat.send', 'ping', 'sfu.consume'] as const) {
      expect(METHODS[name].roles).toBe('all');
    }
  });

  it('describes every method in one line', () => {
    for (const [name, definition] of Object.entries(METHODS)) {
      expect(definition.description.length, name).toBeGreaterThan(0);
      expect(definition.description, name).not.toContain('\n');
    }
  });
});

describe.each(Object.entries(FIXTURES))('%s data', (method, fixture) => {
  const schema = METHODS[method as MethodName].data;

  it.each(fixture.valid.map((data) => [JSON.stringify(data).slice(0, 80), data] as const))('accepts %s', (_, data) => {
    const result = schema.safeParse(data);
    expect(result.success, JSON.stringify(result.error?.issues)).toBe(true);
  });

  it.each(fixture.invalid)('rejects %s', (_, data) => {
    expect(schema.safeParse(data).success).toBe(false);
  });

  it('rejects data that is not an object', () => {
    for (const data of [null, 'x', 1, [], true])
      expect(schema.safeParse(data).success, JSON.stringify(data)).toBe(false);
  });
});

describe('room.join data', () => {
  it('trims the display name', () => {
    expect(METHODS['room.join'].data.parse({ displayName: '  Bob  ' })).toEqual({ displayName: 'Bob' });
  });
});

describe('display names', () => {
  it.each([
    ['plain text', 'Alice Smith', 'Alice Smith'],
    ['emoji and accents', 'Zoë 🚀', 'Zoë 🚀'],
    ['a right-to-left override', 'Presenter (Official)\u202E', 'Presenter (Official)'],
    ['embeddings and a pop', '\u202A\u202BA\u202C\u202D', 'A'],
    ['isolates', '\u2066B\u2067\u2068\u2069', 'B'],
    ['marks', '\u200EC\u200F\u061C', 'C'],
    ['zero-width characters', 'D\u200B\u200C\u200D\u2060\uFEFF', 'D'],
    ['controls, C0 and C1', '\u0000E\u0007\t\n\u007F\u0085\u009F', 'E'],
    ['line separators', 'F\u2028\u2029', 'F'],
    ['space left at the ends', '\u200B  G H \u202E', 'G H'],
    ['nothing visible', '\u202E\u200B\u2066', ''],
  ])('keeps only what is visible: %s', (_, name, expected) => {
    expect(cleanDisplayName(name)).toBe(expected);
  });
});

describe('request envelope', () => {
  it.each([
    { id: 1, method: 'ping' },
    { id: 0, method: 'ping', data: {} },
    { id: 'req-7', method: 'chat.send', data: { text: 'hi' } },
    { id: -5, method: 'ping' },
    { id: '', method: 'ping' },
    { id: 9, method: 'ping', traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' },
  ])('accepts %j', (envelope) => {
    expect(requestEnvelopeSchema.safeParse(envelope).success).toBe(true);
  });

  it.each([
    ['missing id', { method: 'ping' }],
    ['null id', { id: null, method: 'ping' }],
    ['fractional id', { id: 1.5, method: 'ping' }],
    ['unsafe integer id', { id: 2 ** 53, method: 'ping' }],
    ['id of 129 chars', { id: 'i'.repeat(129), method: 'ping' }],
    ['object id', { id: {}, method: 'ping' }],
    ['missing method', { id: 1 }],
    ['empty method', { id: 1, method: '' }],
    ['method not a string', { id: 1, method: 5 }],
    ['data an array', { id: 1, method: 'ping', data: [] }],
    ['data a string', { id: 1, method: 'ping', data: 'x' }],
    ['data null', { id: 1, method: 'ping', data: null }],
    ['malformed traceparent', { id: 1, method: 'ping', traceparent: 'abc' }],
  ])('rejects %s', (_, envelope) => {
    expect(requestEnvelopeSchema.safeParse(envelope).success).toBe(false);
  });
});

describe('notifications', () => {
  it('lists the contract durable and ephemeral events', () => {
    expect(Object.keys(durableEventSchemas).sort()).toEqual(
      [
        'participant.joined',
        'participant.left',
        'participant.updated',
        'producer.added',
        'producer.removed',
        'producer.paused',
        'producer.resumed',
        'chat.message',
        'alert.published',
      ].sort(),
    );
    expect(Object.keys(ephemeralEventSchemas).sort()).toEqual(
      [
        'participant.count',
        'consumer.closed',
        'consumer.layersChanged',
        'activeSpeaker',
        'server.draining',
        'session.kicked',
        // Added by this project (the contract allows additions): a transport died with its worker.
        'transport.closed',
        // The contract's cluster additions: the room's history restarted under a new epoch.
        'room.resync',
      ].sort(),
    );
    for (const name of Object.keys(durableEventSchemas)) expect(isDurableEvent(name)).toBe(true);
    for (const name of [...Object.keys(ephemeralEventSchemas), '__proto__', 'toString']) {
      expect(isDurableEvent(name)).toBe(false);
    }
  });

  it('has the participant shape of the contract', () => {
    const participant = { participantId: 'p', userId: 'u', name: 'n', role: 'trader', joinedAt: 1 };
    expect(participantSchema.parse(participant)).toEqual(participant);
    expect(participantSchema.safeParse({ ...participant, role: 'admin' }).success).toBe(false);
  });

  it("names a chat message's and an alert's sender with its role", () => {
    const from = { participantId: 'p', userId: 'u', name: 'n', role: 'presenter' };
    const chat = { messageId: 'm', from, text: 'hi', ts: 1 };
    const alert = { alertId: 'a', from, symbol: 'ES', action: 'buy', ts: 1 };
    expect(durableEventSchemas['chat.message'].safeParse(chat).success).toBe(true);
    expect(durableEventSchemas['alert.published'].safeParse(alert).success).toBe(true);
    const { role: _role, ...withoutRole } = from;
    expect(durableEventSchemas['chat.message'].safeParse({ ...chat, from: withoutRole }).success).toBe(false);
    expect(
      durableEventSchemas['alert.published'].safeParse({ ...alert, from: { ...from, role: 'admin' } }).success,
    ).toBe(false);
  });

  it('knows the leave reasons', () => {
    const schema = durableEventSchemas['participant.left'];
    for (const reason of ['left', 'disconnected', 'kicked', 'replaced', 'room-closed']) {
      expect(schema.safeParse({ participantId: 'p', reason }).success, reason).toBe(true);
    }
    expect(schema.safeParse({ participantId: 'p', reason: 'bored' }).success).toBe(false);
  });
});
