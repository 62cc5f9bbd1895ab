import { NotFoundError, UnsupportedError, WorkerClosedError } from 'mediasoup/errors';
import { describe, expect, it } from 'vitest';

import { SfuError, toSfuError } from '../src/errors.js';

describe('toSfuError', () => {
  it('maps mediasoup errors onto SfuError codes', () => {
    const code = (error: unknown, fallback?: 'BAD_REQUEST'): string | undefined => {
      const mapped = toSfuError(error, fallback);
      return mapped instanceof SfuError ? mapped.code : undefined;
    };
    expect(code(new WorkerClosedError('Channel closed'))).toBe('UNAVAILABLE');
    expect(code(new NotFoundError('Producer not found'))).toBe('NOT_FOUND');
    expect(code(new TypeError('invalid rtpParameters'))).toBe('BAD_REQUEST');
    expect(code(new UnsupportedError('unsupported codec'))).toBe('BAD_REQUEST');
    expect(code(new Error('ssrc already exists'), 'BAD_REQUEST')).toBe('BAD_REQUEST');
    expect(code(new Error('unexpected'))).toBeUndefined();
  });

  it('keeps an SfuError and the cause of a mapped one', () => {
    const original = new SfuError('FORBIDDEN', 'no');
    expect(toSfuError(original)).toBe(original);
    const cause = new TypeError('bad');
    const mapped = toSfuError(cause) as SfuError;
    expect(mapped.cause).toBe(cause);
    expect(mapped.name).toBe('SfuError');
    expect(mapped.message).toBe('bad');
  });
});
