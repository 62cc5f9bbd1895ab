/**
 * Token issuers in tests: a JWKS served over real HTTP on a free loopback port (its key set can
 * change, as at a key rotation, and it counts its fetches), and signing keys to go with it.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTPayload } from 'jose';

/** A key pair with its `kid`, as an issuer holds it. */
export interface SigningKey {
  readonly kid: string;
  readonly alg: 'RS256' | 'ES256';
  readonly privateKey: CryptoKey;
  /** The public half as the JWKS lists it. */
  readonly jwk: JWK;
  /** The public half in PEM (SPKI), as it is often published. */
  readonly publicPem: string;
}

export async function signingKey(kid: string, alg: 'RS256' | 'ES256' = 'RS256'): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  return { kid, alg, privateKey, jwk, publicPem: await exportSPKI(publicKey) };
}

/** Claims of a contract token: user, room and role, valid for `ttlSeconds` from now. */
export function contractClaims(
  userId: string,
  roomId = 'room-1',
  options: { role?: string; ttlSeconds?: number; iat?: number; extra?: JWTPayload } = {},
): JWTPayload {
  const now = Math.floor(Date.now() / 1000);
  return {
    sub: userId,
    room: roomId,
    role: options.role ?? 'trader',
    iat: options.iat ?? now,
    exp: now + (options.ttlSeconds ?? 600),
    ...options.extra,
  };
}

/** Signs `claims` with `key` (its `kid` in the header unless `kid` says otherwise). */
export function signWith(key: SigningKey, claims: JWTPayload, kid: string | undefined = key.kid): Promise<string> {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: key.alg, typ: 'JWT', ...(kid ? { kid } : {}) })
    .sign(key.privateKey);
}

/** A JWKS endpoint (`GET /jwks.json`). */
export class JwksServer {
  readonly #server: Server;
  #keys: JWK[];
  /** How many times the key set was fetched. */
  fetches = 0;

  private constructor(keys: readonly SigningKey[]) {
    this.#keys = keys.map((k) => k.jwk);
    this.#server = createServer((request, response) => {
      if (request.url !== '/jwks.json') {
        response.writeHead(404).end();
        return;
      }
      this.fetches++;
      response.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ keys: this.#keys }));
    });
  }

  static async start(keys: readonly SigningKey[]): Promise<JwksServer> {
    const jwks = new JwksServer(keys);
    await new Promise<void>((resolve) => jwks.#server.listen(0, '127.0.0.1', resolve));
    return jwks;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}/jwks.json`;
  }

  /** Publishes another key set (a rotation). */
  publish(keys: readonly SigningKey[]): void {
    this.#keys = keys.map((k) => k.jwk);
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
  }
}
