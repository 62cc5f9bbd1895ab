/**
 * fast-check arbitraries for protocol fuzzing: arbitrary JSON, near-miss envelopes and data for
 * every method of the contract, prototype keys, huge strings and numbers, deep nesting, binary
 * frames, invalid UTF-8 and oversize frames. Each frame says what the contract lets the server
 * answer, so a test can check every answer.
 */
import fc from 'fast-check';
import { CONTRACT_METHODS, type ContractMethod } from './contract.js';

export type FrameKind =
  /** A request valid by the contract: ok, or a refusal that is not about its form. */
  | 'valid'
  /** Any text frame: the answer is derived from the frame (see `expectedAnswer`). */
  | 'text'
  /** A binary frame: BAD_REQUEST with id null. */
  | 'binary'
  /** A text frame that is not UTF-8: the socket is closed with 1007. */
  | 'bad-utf8'
  /** Larger than MAX_PAYLOAD_BYTES: the socket is closed with 1009. */
  | 'oversize';

export interface Frame {
  readonly kind: FrameKind;
  readonly payload: string | Buffer;
  /** What generated it, for failure reports. */
  readonly note: string;
}

const PROTO_KEYS = [
  '__proto__',
  'constructor',
  'prototype',
  'toString',
  'hasOwnProperty',
  'valueOf',
  '__defineGetter__',
];
const FIELD_NAMES = [
  'id',
  'method',
  'data',
  'traceparent',
  'text',
  'displayName',
  'resume',
  'sessionId',
  'lastSeq',
  'symbol',
  'action',
  'price',
  'note',
  'participantId',
  'role',
  'token',
  'transportId',
  'direction',
  'kind',
  'producerId',
  'consumerId',
  'spatialLayer',
  'temporalLayer',
  'ip',
  'port',
  'rtcpPort',
  'comedia',
  'rtcpMux',
  'dtlsParameters',
  'rtpParameters',
  'rtpCapabilities',
  'source',
];

const anyText = (maxLength: number) =>
  fc.oneof(
    { arbitrary: fc.string({ maxLength }), weight: 3 },
    { arbitrary: fc.string({ unit: 'binary', maxLength }), weight: 2 },
    { arbitrary: fc.string({ unit: 'grapheme', maxLength }), weight: 1 },
  );

const key = fc.oneof(
  { arbitrary: fc.constantFrom(...PROTO_KEYS), weight: 2 },
  { arbitrary: fc.constantFrom(...FIELD_NAMES), weight: 3 },
  { arbitrary: fc.string({ maxLength: 10 }), weight: 2 },
  { arbitrary: fc.string({ unit: 'binary', maxLength: 6 }), weight: 1 },
);

const hugeNumber = fc.constantFrom(
  1e308,
  -1e308,
  Number.MAX_VALUE,
  Number.MIN_VALUE,
  -Number.MIN_VALUE,
  2 ** 53,
  2 ** 53 + 2,
  -(2 ** 53),
  2 ** 63,
  1e21,
  0.5,
  -0,
  -1,
  65536,
  2 ** 31,
  -(2 ** 31) - 1,
);

/** JSON values with prototype keys, huge numbers and long strings mixed in. */
const json: fc.Arbitrary<unknown> = fc.letrec<{ value: unknown }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constant(null),
    fc.boolean(),
    fc.integer(),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    hugeNumber,
    anyText(40),
    fc.array(tie('value'), { maxLength: 5 }),
    fc.dictionary(key, tie('value'), { maxKeys: 5 }),
  ),
})).value;

const idArb = fc.oneof(
  fc.integer({ min: -1_000_000, max: 1_000_000 }),
  fc.string({ maxLength: 24 }),
  fc.maxSafeInteger(),
  fc.constant(Number.MIN_SAFE_INTEGER),
);
const badIdArb = fc.oneof(
  fc.double({ noNaN: true, noDefaultInfinity: true }).filter((d) => !Number.isInteger(d)),
  fc.constantFrom(2 ** 53, -(2 ** 53), 1e21, 1e300, true, false, null),
  fc.array(fc.integer(), { maxLength: 3 }),
  fc.dictionary(key, fc.integer(), { maxKeys: 2 }),
  fc.string({ minLength: 129, maxLength: 400 }),
);

const uuidish = fc.oneof(fc.uuid(), fc.string({ minLength: 1, maxLength: 40 }));
const role = fc.constantFrom('presenter', 'moderator', 'trader');
const direction = fc.constantFrom('send', 'recv');
const ipArb = fc.oneof(fc.ipV4(), fc.ipV6());
const port = fc.integer({ min: 1, max: 65535 });
const mediaObject = fc.dictionary(fc.string({ maxLength: 8 }), json, { maxKeys: 3 });
const dtls = fc.record(
  {
    role: fc.constantFrom('auto', 'client', 'server'),
    fingerprints: fc.array(
      fc.record({ algorithm: fc.constantFrom('sha-256', 'sha-1'), value: fc.string({ maxLength: 20 }) }),
      { minLength: 1, maxLength: 2 },
    ),
  },
  { requiredKeys: ['fingerprints'] },
);
const rtpParameters = fc.record(
  {
    codecs: fc.array(mediaObject, { minLength: 1, maxLength: 2 }),
    encodings: fc.array(mediaObject, { maxLength: 2 }),
    mid: fc.string({ maxLength: 4 }),
  },
  { requiredKeys: ['codecs'] },
);
const rtpCapabilities = fc.record(
  { codecs: fc.array(mediaObject, { maxLength: 2 }), headerExtensions: fc.array(mediaObject, { maxLength: 2 }) },
  { requiredKeys: [] },
);

/** Valid `data` for every contract method. */
const VALID_DATA: Record<ContractMethod, fc.Arbitrary<Record<string, unknown>>> = {
  'room.join': fc.record(
    {
      displayName: fc.string({ minLength: 1, maxLength: 60 }).filter((s) => s.trim().length > 0),
      resume: fc.record({ sessionId: uuidish, lastSeq: fc.oneof(fc.nat(), fc.nat({ max: Number.MAX_SAFE_INTEGER })) }),
    },
    { requiredKeys: [] },
  ),
  'room.leave': fc.constant({}),
  'room.history': fc.record(
    {
      kinds: fc.uniqueArray(fc.constantFrom('chat', 'alert'), { minLength: 1, maxLength: 2 }),
      beforeSeq: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
      limit: fc.integer({ min: 1, max: 100 }),
    },
    { requiredKeys: [] },
  ),
  'session.refresh': fc.record({
    token: fc.oneof(fc.string({ minLength: 1, maxLength: 60 }), fc.constant('eyJhbGciOiJIUzI1NiJ9.e30.x')),
  }),
  'chat.send': fc.record({
    text: fc.oneof(
      { arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 80 }), weight: 6 },
      { arbitrary: fc.string({ unit: 'binary-ascii', minLength: 1900, maxLength: 2000 }), weight: 1 },
    ),
  }),
  'alert.publish': fc.record(
    {
      symbol: fc.stringMatching(/^[A-Z0-9.:/-]{1,15}$/),
      action: fc.constantFrom('buy', 'sell', 'close', 'watch'),
      price: fc.double({ min: Number.MIN_VALUE, max: 1e300, noNaN: true }),
      note: fc.string({ maxLength: 500 }),
    },
    { requiredKeys: ['symbol', 'action'] },
  ),
  'moderation.kick': fc.record({ participantId: uuidish }),
  'moderation.mute': fc.record({ participantId: uuidish }),
  'moderation.setRole': fc.record({ participantId: uuidish, role }),
  'sfu.createTransport': fc.record({ direction }),
  'sfu.connectTransport': fc.record({ transportId: uuidish, dtlsParameters: dtls }),
  'sfu.produce': fc.record({
    transportId: uuidish,
    kind: fc.constantFrom('audio', 'video'),
    rtpParameters,
    source: fc.constantFrom('camera', 'microphone', 'screen', 'screen-audio'),
  }),
  'sfu.consume': fc.record({ transportId: uuidish, producerId: uuidish, rtpCapabilities }),
  'sfu.resumeConsumer': fc.record({ consumerId: uuidish }),
  'sfu.pauseProducer': fc.record({ producerId: uuidish }),
  'sfu.resumeProducer': fc.record({ producerId: uuidish }),
  'sfu.closeProducer': fc.record({ producerId: uuidish }),
  'sfu.setConsumerLayers': fc.record(
    {
      consumerId: uuidish,
      spatialLayer: fc.integer({ min: 0, max: 15 }),
      temporalLayer: fc.integer({ min: 0, max: 15 }),
    },
    { requiredKeys: ['consumerId', 'spatialLayer'] },
  ),
  'sfu.restartIce': fc.record({ transportId: uuidish }),
  'sfu.createPlainTransport': fc.record(
    { direction, comedia: fc.boolean(), rtcpMux: fc.boolean() },
    { requiredKeys: ['direction'] },
  ),
  'sfu.connectPlainTransport': fc.record(
    { transportId: uuidish, ip: ipArb, port, rtcpPort: port },
    { requiredKeys: ['transportId', 'ip', 'port'] },
  ),
  ping: fc.constant({}),
};

const hex = (words: number) =>
  fc
    .array(fc.integer({ min: 0, max: 0xffff }), { minLength: words, maxLength: words })
    .map((ws) => ws.map((w) => w.toString(16).padStart(4, '0')).join(''));
const traceparent = fc.tuple(hex(8), hex(4)).map(([trace, span]) => `00-${trace}-${span}-01`);

/** A request valid by the contract (room.join, chat.send and ping more often). */
const validRequest: fc.Arbitrary<{
  id: unknown;
  method: string;
  data: Record<string, unknown>;
  traceparent?: string;
}> = fc.oneof(
  ...CONTRACT_METHODS.map((method) => ({
    arbitrary: fc.record(
      { id: idArb, method: fc.constant(method), data: VALID_DATA[method], traceparent },
      { requiredKeys: ['id', 'method', 'data'] },
    ),
    weight: method === 'room.join' || method === 'chat.send' || method === 'ping' ? 4 : 1,
  })),
);

const NEAR_METHODS = (method: string): string[] => [
  method.toUpperCase(),
  ` ${method}`,
  `${method} `,
  `${method}\u0000`,
  method.replace('.', '/'),
  method.replace('.', ''),
  method.slice(0, -1),
  `${method}.`,
  `${method}s`,
  '',
  '__proto__',
  'constructor',
  'toString',
  'hasOwnProperty',
  'room',
  'sfu.',
  '.',
  'x'.repeat(65),
  `${method}${'x'.repeat(64)}`,
];

type Mutation =
  | { t: 'drop-id' | 'drop-method' | 'null-proto' }
  | { t: 'bad-id' | 'data' | 'traceparent'; v: unknown }
  | { t: 'near-method'; i: number; s: string }
  | { t: 'extra-data' | 'extra-top'; k: string; v: unknown }
  | { t: 'missing' | 'hide'; i: number }
  | { t: 'wrong'; i: number; v: unknown };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.constant<Mutation>({ t: 'drop-id' }),
  fc.constant<Mutation>({ t: 'drop-method' }),
  fc.constant<Mutation>({ t: 'null-proto' }),
  badIdArb.map((v): Mutation => ({ t: 'bad-id', v })),
  fc.tuple(fc.nat({ max: 25 }), fc.string({ maxLength: 70 })).map(([i, s]): Mutation => ({ t: 'near-method', i, s })),
  fc
    .oneof(json, fc.constant(null), fc.array(json, { maxLength: 3 }), fc.string())
    .map((v): Mutation => ({ t: 'data', v })),
  fc.tuple(key, json).map(([k, v]): Mutation => ({ t: 'extra-data', k, v })),
  fc.tuple(key, json).map(([k, v]): Mutation => ({ t: 'extra-top', k, v })),
  fc.oneof(fc.string({ maxLength: 60 }), json).map((v): Mutation => ({ t: 'traceparent', v })),
  fc.nat().map((i): Mutation => ({ t: 'missing', i })),
  fc.nat().map((i): Mutation => ({ t: 'hide', i })),
  fc
    .tuple(fc.nat(), fc.oneof(json, hugeNumber, fc.constant(null), fc.string({ minLength: 2001, maxLength: 3000 })))
    .map(([i, v]): Mutation => ({ t: 'wrong', i, v })),
);

function mutate(
  request: { id: unknown; method: string; data: Record<string, unknown> },
  m: Mutation,
): { value: Record<string, unknown>; note: string } {
  const data = request.data;
  const keys = Object.keys(data);
  const field = 'i' in m && keys.length > 0 ? (keys[m.i % keys.length] as string) : undefined;
  const at = (note: string, value: Record<string, unknown>) => ({ value, note: `${request.method}: ${note}` });
  switch (m.t) {
    case 'drop-id':
      return at('no id', omit(request, 'id'));
    case 'drop-method':
      return at('no method', omit(request, 'method'));
    case 'null-proto':
      return at('null-prototype data', { ...request, data: Object.assign(Object.create(null) as object, data) });
    case 'bad-id':
      return at('bad id', { ...request, id: m.v });
    case 'near-method': {
      const near = NEAR_METHODS(request.method);
      return at('near method', { ...request, method: m.i < near.length ? near[m.i] : m.s });
    }
    case 'data':
      return at('data not an object', { ...request, data: m.v });
    case 'extra-data':
      return at(`extra data key ${m.k}`, { ...request, data: withKey(data, m.k, m.v) });
    case 'extra-top':
      return at(`extra top-level key ${m.k}`, withKey(request, m.k, m.v));
    case 'traceparent':
      return at('bad traceparent', { ...request, traceparent: m.v });
    case 'missing':
      return field
        ? at(`missing ${field}`, { ...request, data: omit(data, field) })
        : at('extra data key x', { ...request, data: { x: 1 } });
    case 'hide':
      return field
        ? at(`${field} hidden under __proto__`, {
            ...request,
            data: withKey(omit(data, field), '__proto__', { [field]: data[field] }),
          })
        : at('data under __proto__', { ...request, data: withKey({}, '__proto__', { x: 1 }) });
    case 'wrong':
      return field
        ? at(`wrong ${field}`, { ...request, data: { ...data, [field]: m.v } })
        : at('data not an object', { ...request, data: [m.v] });
  }
}

/** Replaces, adds or removes one thing somewhere in a valid request. */
const nearMiss = fc.tuple(validRequest, mutation).map(([request, m]) => mutate(request, m));

const NUMBERS = [
  '1e400',
  '-1e400',
  '123456789012345678901234567890',
  '1e-400',
  '-0',
  '0.1e1',
  '99999999999999999999',
  '1E2',
  '0.000001',
];

/** Text-level mutations of an encoded frame. */
const textual = fc
  .tuple(
    fc.oneof(
      validRequest,
      nearMiss.map((n) => n.value),
    ),
    fc.nat({ max: 9 }),
    fc.nat(),
    fc.constantFrom(...NUMBERS),
  )
  .map(([request, kind, n, number]) => {
    const text = JSON.stringify(request);
    switch (kind) {
      case 0:
        return { text: text.slice(0, n % text.length), note: 'truncated' };
      case 1:
        return { text: `\uFEFF${text}`, note: 'BOM' };
      case 2:
        return { text: ` \n\t${text}\r\n `, note: 'whitespace' };
      case 3:
        return { text: `${text}${text}`, note: 'two messages in one frame' };
      case 4:
        return { text: `[${text}]`, note: 'batch array' };
      case 5:
        return { text: text.replace(/^\{/, '{"id":"dup","method":"ping",'), note: 'duplicate keys' };
      case 6:
        return {
          text: text.replace(/^\{/, '{"__proto__":{"id":1,"method":"ping"},'),
          note: 'envelope under __proto__',
        };
      case 7:
        return { text: text.replace(/"id":(-?\d+)/, '"id":$1.0'), note: 'id as n.0' };
      case 8:
        return { text: text.replace(/"id":[^,}]+/, `"id":${number}`), note: `id ${number}` };
      default:
        return { text: text.replace(/:(-?\d+(\.\d+)?(e[+-]?\d+)?)([,}])/i, `:${number}$4`), note: `number ${number}` };
    }
  });

const hugeString = fc
  .tuple(
    fc.integer({ min: 2_000, max: 60_000 }),
    fc.constantFrom('a', 'é', '€', '\u0000', '"', '\\', '\ud83d\ude00', '\ud800'),
  )
  // `length` is the encoded size aimed at: most stay under the payload limit, some do not.
  .map(([length, unit]) => unit.repeat(Math.ceil(length / (Buffer.byteLength(JSON.stringify(unit)) - 2))));

/** A huge string in a place that takes a string (or a key), within or past the payload limit. */
const huge = fc
  .tuple(
    fc.constantFrom(...CONTRACT_METHODS),
    hugeString,
    fc.oneof(fc.constantFrom('text', 'displayName', 'token', 'symbol', 'note', 'participantId'), key),
    fc.boolean(),
  )
  .map(([method, s, k, asKey]) => ({
    value: { id: 1, method, data: asKey ? { [s]: 1 } : { [k]: s } },
    note: `huge string ${asKey ? 'as a key' : `in ${k}`} of ${method}`,
  }));

const deepNesting = fc
  .tuple(fc.integer({ min: 100, max: 30_000 }), fc.constantFrom('[', '{"a":'), fc.constantFrom('frame', 'data', 'id'))
  .map(([wanted, open, where]) => {
    const depth = Math.min(wanted, Math.floor(60_000 / (open.length + 1)));
    const close = open === '[' ? ']' : '}';
    const nested = open.repeat(depth) + '1' + close.repeat(depth);
    const text =
      where === 'frame'
        ? nested
        : where === 'data'
          ? `{"id":7,"method":"chat.send","data":{"text":${nested}}}`
          : `{"id":${nested},"method":"ping"}`;
    return { text, note: `nesting ${depth} in ${where}` };
  });

const badUtf8 = fc
  .tuple(
    fc.constantFrom(
      [0xff],
      [0xc3, 0x28],
      [0xe2, 0x28, 0xa1],
      [0xed, 0xa0, 0x80],
      [0xf8, 0x88, 0x80, 0x80, 0x80],
      [0xc0, 0xaf],
      [0xf4, 0x90, 0x80, 0x80],
      [0xe2, 0x82],
    ),
    fc.nat({ max: 30 }),
  )
  .map(([bytes, at]) => {
    const text = Buffer.from('{"id":1,"method":"chat.send","data":{"text":"hello world, good morning"}}');
    const i = Math.min(at + 20, text.length - 3);
    return Buffer.concat([text.subarray(0, i), Buffer.from(bytes), text.subarray(i)]);
  });

const oversize = fc
  .integer({ min: 64 * 1024 + 1, max: 80 * 1024 })
  .map((n) => `{"id":1,"method":"chat.send","data":{"text":"${'x'.repeat(n)}"}}`);

/** Every kind of frame, weighted toward near misses of real methods. */
export const frameArb: fc.Arbitrary<Frame> = fc
  .oneof(
    {
      arbitrary: validRequest.map((r): Frame => ({
        kind: 'valid',
        payload: JSON.stringify(r),
        note: `valid ${r.method}`,
      })),
      weight: 30,
    },
    {
      arbitrary: nearMiss.map(({ value, note }): Frame => ({ kind: 'text', payload: JSON.stringify(value), note })),
      weight: 80,
    },
    { arbitrary: textual.map(({ text, note }): Frame => ({ kind: 'text', payload: text, note })), weight: 24 },
    {
      arbitrary: json.map((v): Frame => ({
        kind: 'text',
        payload: JSON.stringify(v) ?? 'null',
        note: 'arbitrary JSON',
      })),
      weight: 20,
    },
    { arbitrary: anyText(200).map((s): Frame => ({ kind: 'text', payload: s, note: 'arbitrary text' })), weight: 12 },
    {
      arbitrary: huge.map(({ value, note }): Frame => ({ kind: 'text', payload: JSON.stringify(value), note })),
      weight: 2,
    },
    { arbitrary: deepNesting.map(({ text, note }): Frame => ({ kind: 'text', payload: text, note })), weight: 2 },
    {
      arbitrary: fc
        .uint8Array({ maxLength: 300 })
        .map((b): Frame => ({ kind: 'binary', payload: Buffer.from(b), note: 'binary' })),
      weight: 6,
    },
    { arbitrary: badUtf8.map((b): Frame => ({ kind: 'bad-utf8', payload: b, note: 'invalid UTF-8' })), weight: 1 },
    {
      arbitrary: oversize.map((s): Frame => ({ kind: 'oversize', payload: s, note: `oversize ${s.length}` })),
      weight: 1,
    },
  )
  .map((frame) =>
    frame.kind !== 'binary' && byteLength(frame.payload) > MAX_PAYLOAD_BYTES ? { ...frame, kind: 'oversize' } : frame,
  );

/** The node's default frame limit (MAX_PAYLOAD_BYTES). */
export const MAX_PAYLOAD_BYTES = 64 * 1024;

function byteLength(payload: string | Buffer): number {
  return typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
}

function omit<T extends Record<string, unknown>>(o: T, k: string): Record<string, unknown> {
  const copy: Record<string, unknown> = { ...o };
  delete copy[k];
  return copy;
}

/** Adds a key as an own property (`__proto__` included, as JSON.parse would). */
function withKey(o: Record<string, unknown>, k: string, v: unknown): Record<string, unknown> {
  const copy: Record<string, unknown> = { ...o };
  Object.defineProperty(copy, k, { value: v, enumerable: true, configurable: true, writable: true });
  return copy;
}

/** The request id the server must echo for a text frame (null when there is no usable id). */
export function expectedId(text: string): { id: unknown; parsed: unknown; json: boolean } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { id: null, parsed: undefined, json: false };
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return { id: null, parsed, json: true };
  const id = (parsed as { id?: unknown }).id;
  const usable = (typeof id === 'string' && id.length <= 128) || (typeof id === 'number' && Number.isSafeInteger(id));
  return { id: usable ? id : null, parsed, json: true };
}
