/**
 * Access tokens: verification of the contract's JWT (HS256 with a shared secret, or RS256/ES256
 * against a JWKS) and, for development, signing.
 *
 * Beyond the signature and the claims, a token must meet the policy: the configured issuer and
 * audience (when set), `exp` within the clock skew, an `iat` not in the future beyond the skew,
 * and a lifetime (`exp` minus `iat`, or minus now without `iat`) within the maximum. A JWKS is
 * fetched by `jose`'s remote key set: cached, fetched again after its maximum age, and at once
 * for a `kid` it does not know (key rotation), at most once per cooldown.
 */
import {
  createRemoteJWKSet,
  errors as joseErrors,
  jwtVerify,
  SignJWT,
  type JWTVerifyGetKey,
  type JWTVerifyOptions,
} from 'jose';
import { z } from 'zod';
import { roleSchema, type Role } from '../protocol/common.js';

export const claimsSchema = z.object({
  sub: z.string().min(1).max(128),
  room: z.string().regex(/^[A-Za-z0-9._:-]{1,128}$/, 'room must be 1-128 characters of A-Z a-z 0-9 . _ : -'),
  role: roleSchema,
  name: z.string().min(1).max(64).optional(),
  exp: z.number().int(),
  iat: z.number().optional(),
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
  /** `iss` must equal this (`SIGNALING_JWT_ISSUER`); unset: not checked. */
  readonly issuer?: string | undefined;
  /** `aud` must name one of these (`SIGNALING_JWT_AUDIENCE`); unset: not checked. */
  readonly audience?: readonly string[] | undefined;
  /** Longest lifetime accepted, seconds (default 24 hours). */
  readonly maxLifetimeSeconds?: number;
  /** Clock difference tolerated with the issuer, seconds (default 5). */
  readonly clockSkewSeconds?: number;
  /** At most one JWKS fetch for an unknown `kid` per this long (default 30 s). */
  readonly jwksCooldownMs?: number;
  /** The JWKS is fetched again after this long (default 10 minutes). */
  readonly jwksCacheMaxAgeMs?: number;
}

/** How long a JWKS fetch may take. */
const JWKS_TIMEOUT_MS = 3000;

export class TokenVerifier {
  /** The verification key, as a getter either way (jose's overloads do not take their union). */
  readonly #key: JWTVerifyGetKey;
  readonly #verifyOptions: JWTVerifyOptions;
  readonly #maxLifetimeSeconds: number;
  readonly #clockSkewSeconds: number;

  constructor(options: TokenVerifierOptions) {
    let algorithms: string[];
    if (options.jwksUrl) {
      this.#key = createRemoteJWKSet(new URL(options.jwksUrl), {
        timeoutDuration: JWKS_TIMEOUT_MS,
        cooldownDuration: options.jwksCooldownMs ?? 30_000,
        cacheMaxAge: options.jwksCacheMaxAgeMs ?? 600_000,
      });
      algorithms = ['RS256', 'ES256'];
    } else if (options.secret) {
      const secret = new TextEncoder().encode(options.secret);
      this.#key = () => secret;
      algorithms = ['HS256'];
    } else {
      throw new TypeError('a JWT secret or a JWKS URL is required');
    }
    this.#maxLifetimeSeconds = options.maxLifetimeSeconds ?? 86_400;
    this.#clockSkewSeconds = options.clockSkewSeconds ?? 5;
    this.#verifyOptions = {
      algorithms,
      requiredClaims: ['exp', 'sub'],
      clockTolerance: this.#clockSkewSeconds,
      ...(options.issuer !== undefined ? { issuer: options.issuer } : {}),
      ...(options.audience !== undefined ? { audience: [...options.audience] } : {}),
    };
  }

  /**
   * @throws TokenError when the token is missing, malformed, badly signed, expired, lacks claims
   *   or breaks the policy (issuer, audience, lifetime, `iat` in the future).
   */
  async verify(token: string | undefined): Promise<AccessClaims> {
    if (!token) throw new TokenError('missing token');
    let payload: unknown;
    try {
      ({ payload } = await jwtVerify(token, this.#key, this.#verifyOptions));
    } catch (error) {
      if (error instanceof joseErrors.JWTExpired) throw new TokenError('token expired');
      if (error instanceof joseErrors.JWTClaimValidationFailed) {
        throw new TokenError(`invalid token: ${error.claim} claim check failed`);
      }
      if (error instanceof joseErrors.JOSEError) throw new TokenError(`invalid token: ${error.code}`);
      throw new TokenError('invalid token');
    }
    const claims = claimsSchema.safeParse(payload);
    if (!claims.success) {
      const issue = claims.error.issues[0];
      throw new TokenError(`invalid token claims: ${issue?.path.join('.') ?? ''} ${issue?.message ?? ''}`.trim());
    }
    const { exp, iat } = claims.data;
    const now = Date.now() / 1000;
    if (iat !== undefined && iat > now + this.#clockSkewSeconds) {
      throw new TokenError('invalid token: iat is in the future');
    }
    if (exp - (iat ?? now) > this.#maxLifetimeSeconds) {
      throw new TokenError(`invalid token: lifetime over the maximum of ${this.#maxLifetimeSeconds} s`);
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
