/**
 * The token policy: issuer, audience, lifetime, clock skew and the JWKS (rotation, a refetch
 * for an unknown `kid` at most once per cooldown). Forged tokens are refused with 401 at the
 * upgrade and never reach a room.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SignJWT, UnsecuredJWT, type JWTPayload } from 'jose';
import { TokenError, TokenVerifier, type TokenVerifierOptions } from '../src/auth/tokens.js';
import { loadConfig } from '../src/config.js';
import { ConfigError } from '../src/errors.js';
import { startTestNode, TEST_SECRET, type TestNode } from '../../test-support/harness.js';
import { contractClaims, JwksServer, signingKey, signWith, type SigningKey } from '../../test-support/jwks.js';
import { refusal } from '../../test-support/sockets.js';

const ISSUER = 'https://platform.example';
const AUDIENCE = 'trading-room';
const secret = new TextEncoder().encode(TEST_SECRET);

function hs256(claims: JWTPayload, key: Uint8Array = secret): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).sign(key);
}

function unsigned(claims: JWTPayload): string {
  return new UnsecuredJWT(claims).encode();
}

async function refusedWith(verifier: TokenVerifier, token: string): Promise<string> {
  const error = await verifier.verify(token).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, 'the token was accepted').toBeInstanceOf(TokenError);
  return (error as TokenError).message;
}

describe('token policy with a shared secret', () => {
  const policy: TokenVerifierOptions = {
    secret: TEST_SECRET,
    issuer: ISSUER,
    audience: [AUDIENCE, 'another-audience'],
    maxLifetimeSeconds: 3600,
    clockSkewSeconds: 30,
  };
  const verifier = new TokenVerifier(policy);
  const valid = (extra: JWTPayload = {}, options: Parameters<typeof contractClaims>[2] = {}): JWTPayload =>
    contractClaims('alice', 'room-1', { ...options, extra: { iss: ISSUER, aud: AUDIENCE, ...extra } });

  it('accepts a token that meets the policy, an audience among several, and an expiry within the skew', async () => {
    await expect(verifier.verify(await hs256(valid()))).resolves.toMatchObject({ userId: 'alice', roomId: 'room-1' });
    await expect(verifier.verify(await hs256(valid({ aud: ['x', 'another-audience'] })))).resolves.toBeDefined();
    const now = Math.floor(Date.now() / 1000);
    await expect(verifier.verify(await hs256(valid({ exp: now - 10, iat: now - 600 })))).resolves.toBeDefined();
  });

  it('refuses a wrong or missing issuer or audience', async () => {
    expect(await refusedWith(verifier, await hs256(valid({ iss: 'https://evil.example' })))).toMatch(/iss/);
    expect(await refusedWith(verifier, await hs256(valid({ iss: undefined })))).toMatch(/iss/);
    expect(await refusedWith(verifier, await hs256(valid({ aud: 'someone-else' })))).toMatch(/aud/);
    expect(await refusedWith(verifier, await hs256(valid({ aud: undefined })))).toMatch(/aud/);
  });

  it('refuses a lifetime over the maximum, with or without iat, and an iat in the future', async () => {
    const now = Math.floor(Date.now() / 1000);
    expect(await refusedWith(verifier, await hs256(valid({ iat: now, exp: now + 3601 })))).toMatch(/lifetime/);
    expect(await refusedWith(verifier, await hs256(valid({ iat: undefined, exp: 253402300799 })))).toMatch(/lifetime/);
    expect(
      await refusedWith(verifier, await hs256(valid({ iat: now + 365 * 86400, exp: now + 365 * 86400 + 60 }))),
    ).toMatch(/future/);
    // Within the skew, a clock slightly ahead at the issuer is fine.
    await expect(verifier.verify(await hs256(valid({ iat: now + 20, exp: now + 600 })))).resolves.toBeDefined();
  });

  it('refuses expired, unsigned and wrongly signed tokens, and tokens without a valid room', async () => {
    const now = Math.floor(Date.now() / 1000);
    expect(await refusedWith(verifier, await hs256(valid({ iat: now - 600, exp: now - 120 })))).toBe('token expired');
    expect(await refusedWith(verifier, unsigned(valid()))).toMatch(/invalid token/);
    expect(await refusedWith(verifier, await hs256(valid(), new TextEncoder().encode('x'.repeat(48))))).toMatch(
      /invalid token/,
    );
    expect(await refusedWith(verifier, await hs256(valid({ room: undefined })))).toMatch(/room/);
    expect(await refusedWith(verifier, await hs256(valid({ room: '../room-1' })))).toMatch(/room/);
  });

  it('does not check issuer and audience unless configured', async () => {
    const open = new TokenVerifier({ secret: TEST_SECRET });
    await expect(open.verify(await hs256(contractClaims('bob')))).resolves.toMatchObject({ userId: 'bob' });
  });
});

describe('configuration of the token policy', () => {
  it('requires an https JWKS in production, naming the variable', () => {
    expect(() => loadConfig({ NODE_ENV: 'production', SIGNALING_JWKS_URL: 'http://issuer.example/jwks.json' })).toThrow(
      /SIGNALING_JWKS_URL: must be an https:\/\/ URL in production/,
    );
    expect(() => loadConfig({ NODE_ENV: 'production', SIGNALING_JWKS_URL: 'http://issuer.example/jwks.json' })).toThrow(
      ConfigError,
    );
    const config = loadConfig({
      NODE_ENV: 'production',
      SIGNALING_JWKS_URL: 'https://issuer.example/jwks.json',
      SIGNALING_JWT_ISSUER: ISSUER,
      SIGNALING_JWT_AUDIENCE: 'trading-room, desk',
      SIGNALING_JWT_MAX_LIFETIME_SECONDS: '7200',
      SIGNALING_JWT_CLOCK_SKEW_SECONDS: '5',
      SIGNALING_JWKS_COOLDOWN_MS: '1000',
    });
    expect(config.tokenPolicy).toMatchObject({
      issuer: ISSUER,
      audience: ['trading-room', 'desk'],
      maxLifetimeSeconds: 7200,
      clockSkewSeconds: 5,
      jwksCooldownMs: 1000,
    });
    // Development may use a local http JWKS.
    expect(loadConfig({ SIGNALING_JWKS_URL: 'http://127.0.0.1:1/jwks.json' }).jwt.jwksUrl).toMatch(/^http:/);
  });

  it('names a bad lifetime or skew', () => {
    expect(() => loadConfig({ SIGNALING_JWT_MAX_LIFETIME_SECONDS: '0' })).toThrow(/SIGNALING_JWT_MAX_LIFETIME_SECONDS/);
    expect(() => loadConfig({ SIGNALING_JWT_CLOCK_SKEW_SECONDS: 'soon' })).toThrow(/SIGNALING_JWT_CLOCK_SKEW_SECONDS/);
  });
});

describe('tokens from a JWKS', () => {
  let oldKey: SigningKey;
  let newKey: SigningKey;
  let ecKey: SigningKey;
  const servers: JwksServer[] = [];

  beforeAll(async () => {
    [oldKey, newKey, ecKey] = await Promise.all([
      signingKey('key-1'),
      signingKey('key-2'),
      signingKey('key-ec', 'ES256'),
    ]);
  });

  afterEach(async () => {
    for (const s of servers.splice(0)) await s.close();
  });

  async function jwks(keys: SigningKey[]): Promise<JwksServer> {
    const server = await JwksServer.start(keys);
    servers.push(server);
    return server;
  }

  it('accepts RS256 and ES256 keys of the set', async () => {
    const server = await jwks([oldKey, ecKey]);
    const verifier = new TokenVerifier({ jwksUrl: server.url });
    await expect(verifier.verify(await signWith(oldKey, contractClaims('alice')))).resolves.toMatchObject({
      userId: 'alice',
    });
    await expect(verifier.verify(await signWith(ecKey, contractClaims('bob')))).resolves.toMatchObject({
      userId: 'bob',
    });
  });

  it('accepts a token signed with a new key once the set has it (rotation)', async () => {
    const server = await jwks([oldKey]);
    const verifier = new TokenVerifier({ jwksUrl: server.url, jwksCooldownMs: 0 });
    await verifier.verify(await signWith(oldKey, contractClaims('alice')));
    expect(server.fetches).toBe(1);
    const rotated = await signWith(newKey, contractClaims('alice'));
    expect(await refusedWith(verifier, rotated)).toMatch(/invalid token/);
    expect(server.fetches).toBe(2);

    server.publish([oldKey, newKey]);
    await expect(verifier.verify(rotated)).resolves.toMatchObject({ userId: 'alice' });
    expect(server.fetches).toBe(3);
    // Known now: no further fetch, for either key.
    await verifier.verify(rotated);
    await verifier.verify(await signWith(oldKey, contractClaims('bob')));
    expect(server.fetches).toBe(3);
  });

  it('fetches the set again for an unknown kid at most once per cooldown', async () => {
    const server = await jwks([oldKey]);
    const verifier = new TokenVerifier({ jwksUrl: server.url, jwksCooldownMs: 600_000 });
    await verifier.verify(await signWith(oldKey, contractClaims('alice')));
    expect(server.fetches).toBe(1);
    server.publish([oldKey, newKey]);
    for (let i = 0; i < 5; i++) {
      await refusedWith(verifier, await signWith(newKey, contractClaims(`user-${i}`)));
    }
    // Inside the cooldown that began with the first fetch, an unknown kid fetches nothing.
    expect(server.fetches).toBe(1);
  });

  it('refuses a token signed with another key under a known kid, and one the JWKS cannot be fetched for', async () => {
    const server = await jwks([oldKey]);
    const verifier = new TokenVerifier({ jwksUrl: server.url });
    expect(await refusedWith(verifier, await signWith(newKey, contractClaims('mallory'), oldKey.kid))).toMatch(
      /invalid token/,
    );
    const url = server.url;
    await server.close();
    const unreachable = new TokenVerifier({ jwksUrl: url });
    expect(await refusedWith(unreachable, await signWith(oldKey, contractClaims('alice')))).toMatch(/invalid token/);
  });

  it('refuses HS256 signed with the RSA public key (algorithm confusion) and alg none', async () => {
    const server = await jwks([oldKey]);
    const verifier = new TokenVerifier({ jwksUrl: server.url });
    const confused = await new SignJWT(contractClaims('mallory'))
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT', kid: oldKey.kid })
      .sign(new TextEncoder().encode(oldKey.publicPem));
    expect(await refusedWith(verifier, confused)).toMatch(/invalid token/);
    expect(await refusedWith(verifier, unsigned(contractClaims('mallory')))).toMatch(/invalid token/);
  });
});

describe('forged tokens at the upgrade', () => {
  let key: SigningKey;
  let stranger: SigningKey;
  let server: JwksServer;
  let t: TestNode;

  beforeAll(async () => {
    [key, stranger] = await Promise.all([signingKey('issuer-key'), signingKey('stranger-key')]);
    server = await JwksServer.start([key]);
    t = await startTestNode({
      SIGNALING_JWKS_URL: server.url,
      SIGNALING_JWT_ISSUER: ISSUER,
      SIGNALING_JWT_AUDIENCE: AUDIENCE,
      SIGNALING_JWT_MAX_LIFETIME_SECONDS: '3600',
    });
  });

  afterAll(async () => {
    await t.close();
    await server.close();
  });

  const claims = (userId: string, extra: JWTPayload = {}, ttlSeconds = 600): JWTPayload =>
    contractClaims(userId, 'room-1', { ttlSeconds, extra: { iss: ISSUER, aud: AUDIENCE, ...extra } });

  it('answers 401 to each and none of them reaches the room', async () => {
    const legit = await t.raw(await signWith(key, claims('watcher')));
    expect(await legit.request('room.join')).toMatchObject({ ok: true });

    const now = Math.floor(Date.now() / 1000);
    const forged: Record<string, string> = {
      'wrong key': await signWith(stranger, claims('forger-1')),
      'wrong key under the known kid': await signWith(stranger, claims('forger-2'), key.kid),
      'alg none': unsigned(claims('forger-3')),
      'HS256 with the RSA public key': await new SignJWT(claims('forger-4'))
        .setProtectedHeader({ alg: 'HS256', typ: 'JWT', kid: key.kid })
        .sign(new TextEncoder().encode(key.publicPem)),
      'wrong issuer': await signWith(key, claims('forger-5', { iss: 'https://evil.example' })),
      'wrong audience': await signWith(key, claims('forger-6', { aud: 'another-service' })),
      'lifetime over the maximum': await signWith(key, claims('forger-7', {}, 7200)),
      expired: await signWith(key, claims('forger-8', { iat: now - 3000, exp: now - 600 })),
      'no room': await signWith(key, claims('forger-9', { room: undefined })),
      'malformed room': await signWith(key, claims('forger-10', { room: 'room-1/../admin' })),
      'the shared secret (HS256) where only the JWKS is trusted': await hs256(claims('forger-11')),
    };
    for (const [what, token] of Object.entries(forged)) {
      const refused = await refusal(t.raw(token));
      expect(refused.status, what).toBe(401);
      expect(JSON.parse(refused.body), what).toMatchObject({ error: { code: 'UNAUTHORIZED' } });
    }
    // A valid token for another room joins that room only.
    const elsewhere = await t.raw(
      await signWith(key, contractClaims('other', 'room-2', { extra: { iss: ISSUER, aud: AUDIENCE } })),
    );
    expect(await elsewhere.request('room.join')).toMatchObject({ ok: true, data: { roomId: 'room-2' } });

    const late = await t.raw(await signWith(key, claims('late')));
    expect(await late.request('room.join')).toMatchObject({ ok: true });
    await legit.waitFor((m) => m.event === 'participant.joined');
    const joined = legit
      .events('participant.joined')
      .map((m) => (m.data as { participant: { userId: string } }).participant.userId);
    expect(joined).toEqual(['late']);
    expect(t.node.rooms.participantCount).toBe(3);
  });
});
