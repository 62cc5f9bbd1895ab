/**
 * The webhook settings of the configuration: on only with a well-formed Standard Webhooks secret
 * and `BACKEND_URL`; every mistake stops start-up naming the variable (never showing the secret).
 */
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { ConfigError } from '../src/errors.js';

const BASE = { NODE_ENV: 'test', SIGNALING_JWT_SECRET: 'x'.repeat(32) };
const SECRET = `whsec_${Buffer.alloc(32, 7).toString('base64')}`;

function failure(env: Record<string, string>): string {
  try {
    loadConfig({ ...BASE, ...env });
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error('the configuration was accepted');
}

describe('webhook configuration', () => {
  it('is off without a secret, on with BACKEND_URL and a secret, with the documented defaults', () => {
    expect(loadConfig({ ...BASE, BACKEND_URL: 'http://backend:9090' }).webhooks).toBeUndefined();
    expect(
      loadConfig({ ...BASE, BACKEND_URL: 'http://backend:9090', BACKEND_WEBHOOK_SECRET: SECRET }).webhooks,
    ).toEqual({
      secret: SECRET,
      timeoutMs: 5000,
      maxAttempts: 12,
      retryBaseMs: 1000,
      retryMaxMs: 300_000,
      queueMax: 10_000,
      partitions: 16,
      leaseMs: 30_000,
    });
  });

  it('refuses a malformed secret naming the variable, without showing the value', () => {
    for (const secret of [
      's3cret',
      'whsec_',
      'whsec_not base64!',
      `whsec_${Buffer.alloc(8).toString('base64')}`,
      SECRET.slice(6),
    ]) {
      const message = failure({ BACKEND_URL: 'http://backend:9090', BACKEND_WEBHOOK_SECRET: secret });
      expect(message).toContain('BACKEND_WEBHOOK_SECRET=(value hidden)');
      expect(message).toContain('whsec_');
      if (secret.length > 8) expect(message).not.toContain(secret);
    }
  });

  it('refuses a secret without BACKEND_URL and a lease shorter than two attempts', () => {
    expect(failure({ BACKEND_WEBHOOK_SECRET: SECRET })).toContain('BACKEND_WEBHOOK_SECRET: webhooks need BACKEND_URL');
    expect(
      failure({
        BACKEND_URL: 'http://backend:9090',
        BACKEND_WEBHOOK_SECRET: SECRET,
        BACKEND_WEBHOOK_TIMEOUT_MS: '5000',
        BACKEND_WEBHOOK_LEASE_MS: '8000',
      }),
    ).toContain('BACKEND_WEBHOOK_LEASE_MS=8000: must be at least twice BACKEND_WEBHOOK_TIMEOUT_MS');
    expect(failure({ BACKEND_WEBHOOK_PARTITIONS: '0' })).toContain('BACKEND_WEBHOOK_PARTITIONS="0"');
  });
});
