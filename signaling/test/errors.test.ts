/** The error catalogue: codes, HTTP statuses, close codes and the wire shape of errors. */
import { describe, expect, it } from 'vitest';
import {
  CloseCode,
  ConfigError,
  ERROR_CODES,
  HTTP_STATUS,
  InvalidStateError,
  ProtocolError,
  toErrorBody,
} from '../src/errors.js';

describe('error catalogue', () => {
  it('holds exactly the contract codes', () => {
    expect([...ERROR_CODES].sort()).toEqual(
      [
        'BAD_REQUEST',
        'UNKNOWN_METHOD',
        'NOT_JOINED',
        'ALREADY_JOINED',
        'FORBIDDEN',
        'NOT_FOUND',
        'RATE_LIMITED',
        'ROOM_FULL',
        'UNAVAILABLE',
        'INTERNAL',
      ].sort(),
    );
  });

  it.each([
    ['BAD_REQUEST', 400],
    ['UNKNOWN_METHOD', 404],
    ['NOT_JOINED', 409],
    ['ALREADY_JOINED', 409],
    ['FORBIDDEN', 403],
    ['NOT_FOUND', 404],
    ['RATE_LIMITED', 429],
    ['ROOM_FULL', 409],
    ['UNAVAILABLE', 503],
    ['INTERNAL', 500],
  ] as const)('maps %s to HTTP %i', (code, status) => {
    expect(HTTP_STATUS[code]).toBe(status);
    expect(new ProtocolError(code, 'x').httpStatus).toBe(status);
  });

  it('gives every code a status', () => {
    for (const code of ERROR_CODES) expect(HTTP_STATUS[code]).toBeGreaterThanOrEqual(400);
    expect(Object.isFrozen(HTTP_STATUS)).toBe(true);
  });

  it('holds the contract close codes', () => {
    expect(CloseCode).toMatchObject({
      NORMAL: 1000,
      GOING_AWAY: 1001,
      POLICY: 1008,
      TOO_BIG: 1009,
      INTERNAL: 1011,
      DRAIN_DEADLINE: 1012,
      TOKEN_EXPIRED: 4001,
      KICKED: 4003,
      REPLACED: 4009,
    });
    expect(Object.isFrozen(CloseCode)).toBe(true);
  });
});

describe('ProtocolError', () => {
  it('is an Error with a code', () => {
    const error = new ProtocolError('NOT_FOUND', 'no such participant');
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe('ProtocolError');
    expect(error.code).toBe('NOT_FOUND');
    expect(error.message).toBe('no such participant');
  });

  it('serializes to the wire shape without optional fields', () => {
    expect(new ProtocolError('FORBIDDEN', 'not allowed').toBody()).toStrictEqual({
      code: 'FORBIDDEN',
      message: 'not allowed',
    });
  });

  it('carries retryAfterMs as a whole, non-negative number of ms', () => {
    expect(new ProtocolError('RATE_LIMITED', 'slow down', { retryAfterMs: 1200 }).toBody()).toStrictEqual({
      code: 'RATE_LIMITED',
      message: 'slow down',
      retryAfterMs: 1200,
    });
    expect(new ProtocolError('RATE_LIMITED', 'x', { retryAfterMs: 10.2 }).toBody().retryAfterMs).toBe(11);
    expect(new ProtocolError('RATE_LIMITED', 'x', { retryAfterMs: -5 }).toBody().retryAfterMs).toBe(0);
    expect(new ProtocolError('RATE_LIMITED', 'x', { retryAfterMs: 0 }).toBody().retryAfterMs).toBe(0);
  });

  it('carries details', () => {
    const details = [{ path: 'text', message: 'too long' }];
    expect(new ProtocolError('BAD_REQUEST', 'invalid data', { details }).toBody()).toStrictEqual({
      code: 'BAD_REQUEST',
      message: 'invalid data',
      details,
    });
  });

  it('survives JSON encoding unchanged', () => {
    const body = new ProtocolError('UNAVAILABLE', 'draining', { retryAfterMs: 1000 }).toBody();
    expect(JSON.parse(JSON.stringify(body))).toStrictEqual(body);
  });
});

describe('toErrorBody', () => {
  it('passes protocol errors through', () => {
    expect(toErrorBody(new ProtocolError('ROOM_FULL', 'full'))).toStrictEqual({ code: 'ROOM_FULL', message: 'full' });
  });

  it.each([
    ['an Error', new Error('database password is hunter2')],
    ['a TypeError', new TypeError('cannot read x of undefined')],
    ['a string', 'oops'],
    ['undefined', undefined],
    ['null', null],
    ['a look-alike object', { code: 'FORBIDDEN', message: 'fake' }],
  ])('turns %s into INTERNAL without leaking its message', (_what, thrown) => {
    expect(toErrorBody(thrown)).toStrictEqual({ code: 'INTERNAL', message: 'internal error' });
  });
});

describe('programmer errors', () => {
  it('are named classes', () => {
    expect(new ConfigError('bad PORT').name).toBe('ConfigError');
    expect(new InvalidStateError('closed').name).toBe('InvalidStateError');
    expect(new ConfigError('x')).toBeInstanceOf(Error);
    expect(new InvalidStateError('x')).toBeInstanceOf(Error);
  });
});
