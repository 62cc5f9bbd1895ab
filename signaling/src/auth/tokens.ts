/**
 * Access tokens: verification of the contract's JWT (HS256 with a shared secret, or RS256/ES256
 * against a JWKS) and, for development, signing.
 */
import { createRemoteJWKSet, errors as joseErrors, jwtVerify, SignJWT, type JWTVerifyGetKey } from 'jose';
import { z } from 'zod';
import { roleSchema, type Role } from '../protocol/common.js';

export const claimsSchema = z.object({
  sub: z.string().min(1).max(128),
  room: z.string().regex(/^[A-Za-z0-9._:-]{1,128}$/, 'room must be 1-128 characters of A-Z a-z 0-9 . _ : -'),
  role: roleSchema,
  name: z.string().min(1).max(64).optional(),
  exp: z.number().int(),
});

export interface AccessClaims {
  readonly userId: string;
  readonly roomId: string;
  readonly role: Role;
  readonly name: string | undefined;
  /** Expiry, epoch ms. */
  readonly expiresAtMs: number;
}

/** Why a token was refused; the message goes to the client. */
export class TokenError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TokenError';
  }
}

export interface TokenVerifierOptions {
  readonly secret?: string | undefined;
  readonly jwksUrl?: string | undefined;
}

export class TokenVerifier {
  /** The verification key, as a getter either way (jose's overloads do not take their union). */
  readonly #key: JWTVerifyGetKey;
  readonly #algorithms: string[];

  constructor(options: TokenVerifierOptions) {
    if (options.jwksUrl) {
      this.#key = createRemoteJWKSet(new URL(options.jwksUrl), { timeoutDuration: 3000, cooldownDuration: 30_000 });
      this.#algorithms = ['RS256', 'ES256'];
    } else if (options.secret) {
      const secret = new TextEncoder().encode(options.secret);
      this.#key = () => secret;
      this.#algorithms = ['HS256'];
    } else {
      throw new TypeError('a JWT secret or a JWKS URL is required');
    }
  }

  /** @throws TokenError when the token is missing, malformed, badly signed, expired or lacks claims. */
  async verify(token: string | undefined): Promise<AccessClaims> {
    if (!token) throw new TokenError('missing token');
    let payload: unknown;
    try {
      ({ payload } = await jwtVerify(token, this.#key, {
        algorithms: this.#algorithms,
        requiredClaims: ['exp', 'sub'],
      }));
    } catch (error) {
      if (error instanceof joseErrors.JWTExpired) throw new TokenError('token expired');
      if (error instanceof joseErrors.JOSEError) throw new TokenError(`invalid token: ${error.code}`);
      throw new TokenError('invalid token');
    }
    const claims = claimsSchema.safeParse(payload);
    if (!claims.success) {
      const issue = claims.error.issues[0];
      throw new TokenError(`invalid token claims: ${issue?.path.join('.') ?? ''} ${issue?.message ?? ''}`.trim());
    }
    return {
      userId: claims.data.sub,
      roomId: claims.data.room,
      role: claims.data.role,
      name: claims.data.name,
      expiresAtMs: claims.data.exp * 1000,
    };
  }
}

export interface DevTokenInput {
  readonly userId: string;
  readonly roomId: string;
  readonly role: Role;
  readonly name?: string;
  /** Lifetime in seconds (default 12 hours). */
  readonly ttlSeconds?: number;
}

/** Signs an HS256 access token (development, tests and the load generator). */
export async function signAccessToken(secret: string, input: DevTokenInput): Promise<string> {
  const claims: Record<string, string> = { room: input.roomId, role: input.role };
  if (input.name) claims.name = input.name;
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(input.userId)
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + (input.ttlSeconds ?? 12 * 3600))
    .sign(new TextEncoder().encode(secret));
}
