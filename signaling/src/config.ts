/**
 * Configuration, parsed once from the environment into a frozen, typed object. Nothing else in
 * the code base reads `process.env`. A bad value stops start-up with a {@link ConfigError} that
 * names the variable and the form it expects.
 */
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { ConfigError } from './errors.js';
import { isCidr } from './net/cidr.js';
import { defaultNodeId } from './node-id.js';
import { DEFAULT_SERVICE_NAME, tracingWanted } from './telemetry/tracing-settings.js';
import { parseHostPort } from './bus/create-room-bus.js';
import type { HostPort, RedisTarget } from './bus/redis-connections.js';
import type { Role } from './protocol/common.js';

const boolean = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'], { message: 'expected true or false' })
  .transform((v) => v === 'true' || v === '1' || v === 'yes');

const int = (min: number, max: number = Number.MAX_SAFE_INTEGER) =>
  z
    .string()
    .regex(/^-?\d+$/, { message: `expected an integer from ${min} to ${max}` })
    .transform(Number)
    .pipe(z.number().int().min(min, `expected an integer >= ${min}`).max(max, `expected an integer <= ${max}`));

const url = z.url({ message: 'expected an absolute URL' });
/** An absolute URL with one of `protocols` (`localhost:6379` would otherwise pass as a URL). */
const urlOf = (...protocols: string[]) =>
  url.refine(
    (v) => URL.canParse(v) && protocols.includes(new URL(v).protocol),
    `expected a URL starting with ${protocols.map((p) => `${p}//`).join(' or ')}`,
  );
const httpUrl = urlOf('http:', 'https:');

const list = z.string().transform((v) =>
  v
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0),
);

const cidrList = list.pipe(z.array(z.string().refine(isCidr, 'expected IP addresses or CIDR ranges, comma separated')));

/** Comma-separated `host:port` addresses (`[v6]:port` too); credentials belong in `REDIS_URL`. */
const hostPortList = list.pipe(
  z
    .array(
      z.string().transform((address, context): HostPort => {
        try {
          if (address.includes('@') || address.includes('/')) throw new RangeError('not host:port');
          return parseHostPort(address);
        } catch {
          context.addIssue({
            code: 'custom',
            message: 'expected host:port addresses, comma separated (credentials and TLS go in REDIS_URL)',
          });
          return z.NEVER;
        }
      }),
    )
    .min(1, 'expected at least one host:port address'),
);

/** Variables whose values never appear in an error message. */
const SECRET_VARIABLES = new Set([
  'SIGNALING_JWT_SECRET',
  'SIGNALING_ADMIN_TOKEN',
  'REDIS_URL',
  'SENTRY_DSN',
  'BACKEND_TOKEN',
  'BACKEND_WEBHOOK_SECRET',
]);

/** A value as an error message shows it: credentials (`user:password@`) in it are hidden. */
function shownValue(value: string): string {
  return JSON.stringify(value.replace(/[^\s,/@]*@/g, '***@'));
}

/** The environment variables the node reads, with their defaults. */
const envSchema = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
  HOST: z.string().min(1).default('0.0.0.0'),
  PORT: int(0, 65535).default(8080),
  NODE_ID: z
    .string()
    .regex(/^[A-Za-z0-9._-]{1,64}$/, 'expected 1-64 characters of A-Z a-z 0-9 . _ -')
    .optional(),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  REDIS_URL: urlOf('redis:', 'rediss:').optional(),
  REDIS_CLUSTER_NODES: hostPortList.optional(),
  REDIS_SENTINELS: hostPortList.optional(),
  REDIS_SENTINEL_NAME: z
    .string()
    .regex(/^[A-Za-z0-9._-]{1,128}$/, 'expected 1-128 characters of A-Z a-z 0-9 . _ -')
    .optional(),
  REDIS_KEY_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9._:-]{1,64}$/, 'expected 1-64 characters of A-Z a-z 0-9 . _ : - (no braces)')
    .default('trading-room'),
  NODE_TTL_MS: int(500, 600_000).default(10_000),
  SIGNALING_JWT_SECRET: z.string().min(32, 'expected at least 32 characters').optional(),
  SIGNALING_JWKS_URL: httpUrl.optional(),
  SIGNALING_JWT_ISSUER: z.string().min(1).optional(),
  SIGNALING_JWT_AUDIENCE: list.pipe(z.array(z.string()).min(1, 'expected at least one audience')).optional(),
  SIGNALING_JWT_MAX_LIFETIME_SECONDS: int(1, 365 * 86_400).default(86_400),
  SIGNALING_JWT_CLOCK_SKEW_SECONDS: int(0, 600).default(5),
  SIGNALING_JWKS_COOLDOWN_MS: int(0, 3_600_000).default(30_000),
  SIGNALING_JWKS_CACHE_MAX_AGE_MS: int(1000, 86_400_000).default(600_000),
  SIGNALING_ADMIN_TOKEN: z.string().min(16, 'expected at least 16 characters').optional(),
  SIGNALING_ALLOWED_ORIGINS: list.optional(),
  DRAIN_TIMEOUT_MS: int(0, 3_600_000).default(25_000),
  BACKEND_URL: httpUrl.optional(),
  BACKEND_TOKEN: z.string().min(1).optional(),
  BACKEND_FAILURE_MODE: z.enum(['token', 'deny'], { message: 'expected token or deny' }).default('token'),
  BACKEND_ACCESS_TIMEOUT_MS: int(50, 60_000).default(1000),
  BACKEND_ACCESS_RETRIES: int(0, 10).default(2),
  BACKEND_ACCESS_CACHE_TTL_MS: int(0, 3_600_000).default(5000),
  BACKEND_CIRCUIT_ERROR_PERCENT: int(1, 100).default(50),
  BACKEND_CIRCUIT_VOLUME_THRESHOLD: int(1, 100_000).default(10),
  BACKEND_CIRCUIT_WINDOW_MS: int(100, 3_600_000).default(10_000),
  BACKEND_CIRCUIT_RESET_MS: int(10, 3_600_000).default(10_000),
  BACKEND_WEBHOOK_SECRET: z
    .string()
    .refine(isWebhookSecret, 'expected whsec_ followed by 24 to 64 bytes in base64 (a Standard Webhooks secret)')
    .optional(),
  BACKEND_WEBHOOK_TIMEOUT_MS: int(100, 60_000).default(5000),
  BACKEND_WEBHOOK_MAX_ATTEMPTS: int(1, 1_000_000).default(12),
  BACKEND_WEBHOOK_RETRY_BASE_MS: int(10, 600_000).default(1000),
  BACKEND_WEBHOOK_RETRY_MAX_MS: int(10, 3_600_000).default(300_000),
  BACKEND_WEBHOOK_QUEUE_MAX: int(1, 10_000_000).default(10_000),
  BACKEND_WEBHOOK_PARTITIONS: int(1, 1024).default(16),
  BACKEND_WEBHOOK_LEASE_MS: int(1000, 3_600_000).default(30_000),
  SENTRY_DSN: url.optional(),
  SENTRY_ENVIRONMENT: z.string().min(1).max(64).optional(),
  // Read by the OpenTelemetry SDK itself (the preload); checked here so a bad value is named.
  OTEL_EXPORTER_OTLP_ENDPOINT: httpUrl.optional(),
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: httpUrl.optional(),
  OTEL_EXPORTER_OTLP_PROTOCOL: z.enum(['http/protobuf', 'http/json', 'grpc']).optional(),
  OTEL_TRACES_EXPORTER: list.pipe(z.array(z.enum(['otlp', 'console', 'zipkin', 'none']))).optional(),
  OTEL_TRACES_SAMPLER: z
    .enum([
      'always_on',
      'always_off',
      'traceidratio',
      'parentbased_always_on',
      'parentbased_always_off',
      'parentbased_traceidratio',
    ])
    .optional(),
  OTEL_TRACES_SAMPLER_ARG: z
    .string()
    .regex(/^(0(\.\d+)?|1(\.0+)?|\.\d+)$/, 'expected a ratio from 0 to 1')
    .optional(),
  OTEL_SERVICE_NAME: z.string().min(1).default(DEFAULT_SERVICE_NAME),
  OTEL_SDK_DISABLED: boolean.default(false),
  MAX_PAYLOAD_BYTES: int(1024, 16 * 1024 * 1024).default(64 * 1024),
  REPLAY_LOG_MAX_EVENTS: int(1, 10_000_000).default(10_000),
  REPLAY_LOG_MAX_AGE_MS: int(1000).default(15 * 60_000),
  RESUME_MAX_REPLAY_EVENTS: int(1).default(2000),
  RESUME_MAX_REPLAY_BYTES: int(1024).default(1024 * 1024),
  LARGE_ROOM_THRESHOLD: int(1).default(200),
  PARTICIPANT_COUNT_INTERVAL_MS: int(10, 60_000).default(1000),
  MAX_PARTICIPANTS_PER_ROOM: int(1).default(10_000),
  JOIN_PARTICIPANTS_LIMIT: int(0, 100_000).default(100),
  ROOM_EMPTY_GRACE_MS: int(0).default(30_000),
  SESSION_RESUME_GRACE_MS: int(0).default(10_000),
  KICK_BAN_MS: int(0).default(10 * 60_000),
  RATE_LIMITS_ENABLED: boolean.default(true),
  RATE_LIMIT_IP_CONNECTIONS: int(1).default(20),
  RATE_LIMIT_IP_WINDOW_MS: int(1000).default(60_000),
  RATE_LIMIT_CONNECTION_MESSAGES: int(1).default(100),
  RATE_LIMIT_CONNECTION_WINDOW_MS: int(1000).default(10_000),
  RATE_LIMIT_USER_MESSAGES: int(1).default(500),
  RATE_LIMIT_USER_WINDOW_MS: int(1000).default(60_000),
  RATE_LIMIT_CHAT_MESSAGES: int(1).default(5),
  RATE_LIMIT_CHAT_WINDOW_MS: int(1000).default(5_000),
  RATE_LIMIT_CHAT_PRESENTER_MESSAGES: int(1).optional(),
  RATE_LIMIT_CHAT_MODERATOR_MESSAGES: int(1).optional(),
  RATE_LIMIT_CHAT_TRADER_MESSAGES: int(1).optional(),
  RATE_LIMIT_ALERT_MESSAGES: int(1).default(10),
  RATE_LIMIT_ALERT_WINDOW_MS: int(1000).default(60_000),
  RATE_LIMIT_JOIN_MESSAGES: int(1).default(10),
  RATE_LIMIT_JOIN_WINDOW_MS: int(1000).default(60_000),
  RATE_LIMIT_HISTORY_MESSAGES: int(1).default(10),
  RATE_LIMIT_HISTORY_WINDOW_MS: int(1000).default(60_000),
  ABUSE_CLOSE_AFTER_REJECTIONS: int(1).default(200),
  TRUSTED_PROXIES: cidrList.optional(),
  MAX_CONNECTIONS_PER_USER: int(1).default(5),
  HEARTBEAT_INTERVAL_MS: int(100).default(15_000),
  SLOW_CONSUMER_MAX_BUFFERED_BYTES: int(1024).default(4 * 1024 * 1024),
  SLOW_CONSUMER_GRACE_MS: int(0).default(5_000),
  MEDIA_ENABLED: boolean.default(true),
  MEDIASOUP_NUM_WORKERS: int(1, 64).optional(),
  RTC_LISTEN_IP: z.ipv4({ message: 'expected an IPv4 address' }).or(z.ipv6()).default('127.0.0.1'),
  RTC_ANNOUNCED_ADDRESS: z.string().min(1).optional(),
  RTC_PIPE_ANNOUNCED_ADDRESS: z.string().min(1).optional(),
  RTC_PIPE_SRTP: z.enum(['auto', 'always', 'never'], { message: 'expected auto, always or never' }).default('auto'),
  RTC_BASE_PORT: int(0, 65535).default(40_000),
  SFU_PLAIN_TRANSPORTS: boolean.default(false),
  SFU_PLAIN_ALLOWED_CIDRS: cidrList.optional(),
  SFU_CONSUMER_BUDGET: int(1).default(400),
  SFU_MAX_TRANSPORTS_PER_PARTICIPANT: int(1).default(4),
  SFU_MAX_PRODUCERS_PER_PARTICIPANT: int(1).default(4),
  SFU_MAX_CONSUMERS_PER_PARTICIPANT: int(1).default(16),
});

type Env = z.infer<typeof envSchema>;

/** The node's configuration. Derived from {@link envSchema}; frozen. */
export interface Config {
  readonly env: Env['NODE_ENV'];
  readonly host: string;
  readonly port: number;
  readonly nodeId: string;
  readonly logLevel: Env['LOG_LEVEL'];
  readonly redisUrl: string | undefined;
  /**
   * The Redis the nodes of a cluster share, from `REDIS_CLUSTER_NODES` (wins), `REDIS_SENTINELS`
   * with `REDIS_SENTINEL_NAME`, or `REDIS_URL`; undefined: the node runs alone, all in memory.
   */
  readonly redis: RedisTarget | undefined;
  /** `REDIS_KEY_PREFIX`: prefix of every Redis key and channel. */
  readonly redisKeyPrefix: string;
  /** `NODE_TTL_MS`: a node whose last heartbeat is older is dead. */
  readonly nodeTtlMs: number;
  readonly jwt: {
    readonly secret: string | undefined;
    readonly jwksUrl: string | undefined;
    /** True when the secret was generated at start-up (development only). */
    readonly secretGenerated: boolean;
  };
  /** What a token must satisfy beyond its signature and claims (`SIGNALING_JWT_*`, `SIGNALING_JWKS_*`). */
  readonly tokenPolicy: {
    readonly issuer: string | undefined;
    readonly audience: readonly string[] | undefined;
    /** `exp` minus `iat` (or minus now, without `iat`) may not exceed this. */
    readonly maxLifetimeSeconds: number;
    /** Tolerance for `exp`, `nbf` and an `iat` slightly in the future. */
    readonly clockSkewSeconds: number;
    /** At most one JWKS refetch for an unknown `kid` per this interval. */
    readonly jwksCooldownMs: number;
    /** The JWKS is fetched again at the next verification after this. */
    readonly jwksCacheMaxAgeMs: number;
  };
  readonly adminToken: string | undefined;
  readonly adminTokenGenerated: boolean;
  readonly allowedOrigins: readonly string[] | undefined;
  readonly drainTimeoutMs: number;
  readonly backendUrl: string | undefined;
  /** The access check on `room.join` (with `BACKEND_URL`). */
  readonly backendAccess: {
    /** `BACKEND_TOKEN`: bearer token of requests to the backend. */
    readonly token: string | undefined;
    /** What decides when the backend cannot: the token alone, or refuse with UNAVAILABLE. */
    readonly failureMode: 'token' | 'deny';
    /** Budget of one check, retries included: a join never waits longer. */
    readonly timeoutMs: number;
    readonly retries: number;
    readonly cacheTtlMs: number;
    readonly circuit: {
      readonly errorThresholdPercentage: number;
      readonly volumeThreshold: number;
      readonly rollingWindowMs: number;
      readonly resetTimeoutMs: number;
    };
  };
  /**
   * Webhooks to `{BACKEND_URL}/webhooks`: on when `BACKEND_WEBHOOK_SECRET` is set (with
   * `BACKEND_URL`). See `docs/configuration.md` and `docs/decisions.md` ("Webhooks").
   */
  readonly webhooks:
    | {
        readonly secret: string;
        /** One attempt's time budget. */
        readonly timeoutMs: number;
        /** Attempts before a webhook goes to the dead letters. */
        readonly maxAttempts: number;
        /** Exponential backoff with full jitter between attempts: the first cap, and the largest. */
        readonly retryBaseMs: number;
        readonly retryMaxMs: number;
        /** A node alone: webhooks waiting in memory at most (more are dropped and counted). */
        readonly queueMax: number;
        /** A cluster: the partitions rooms are spread over (the same on every node), and their lease. */
        readonly partitions: number;
        readonly leaseMs: number;
      }
    | undefined;
  readonly sentryDsn: string | undefined;
  /** `SENTRY_ENVIRONMENT`; Sentry reports `NODE_ENV` without it. */
  readonly sentryEnvironment: string | undefined;
  /**
   * OpenTelemetry, started by the preload (`instrumentation.ts`) from the `OTEL_*` variables:
   * `enabled` says whether they ask for tracing (an endpoint or an exporter, not disabled).
   */
  readonly telemetry: {
    readonly otlpEndpoint: string | undefined;
    readonly serviceName: string;
    readonly enabled: boolean;
  };
  readonly maxPayloadBytes: number;
  readonly rooms: {
    readonly replayMaxEvents: number;
    readonly replayMaxAgeMs: number;
    /** A resume that would replay more events or bytes than these answers `resumed: false`. */
    readonly resumeMaxReplayEvents: number;
    readonly resumeMaxReplayBytes: number;
    readonly largeRoomThreshold: number;
    readonly participantCountIntervalMs: number;
    readonly maxParticipants: number;
    readonly joinParticipantsLimit: number;
    readonly emptyGraceMs: number;
    readonly resumeGraceMs: number;
    readonly kickBanMs: number;
  };
  readonly rateLimits: {
    readonly enabled: boolean;
    readonly ip: Limit;
    readonly connection: Limit;
    readonly user: Limit;
    readonly methods: Readonly<Record<'chat.send' | 'alert.publish' | 'room.join' | 'room.history', Limit>>;
    /** `chat.send` limits of the roles that have their own (`RATE_LIMIT_CHAT_<ROLE>_MESSAGES`); absent when none has. */
    readonly chatByRole?: Readonly<Partial<Record<Role, Limit>>>;
    readonly abuseCloseAfterRejections: number;
  };
  readonly trustedProxies: readonly string[];
  readonly maxConnectionsPerUser: number;
  readonly heartbeatIntervalMs: number;
  readonly slowConsumer: { readonly maxBufferedBytes: number; readonly graceMs: number };
  readonly media: {
    readonly enabled: boolean;
    readonly numWorkers: number | undefined;
    readonly listenIp: string;
    readonly announcedAddress: string | undefined;
    /** Address other nodes reach this node's pipes at (`RTC_PIPE_ANNOUNCED_ADDRESS`). */
    readonly pipeAnnouncedAddress: string | undefined;
    /** SRTP on the pipes this node asks for (`RTC_PIPE_SRTP`): `auto` unless its pipe address is loopback. */
    readonly pipeSrtp: 'auto' | 'always' | 'never';
    readonly rtcBasePort: number;
    readonly plainTransports: boolean;
    /** Where `sfu.connectPlainTransport` may point a plain transport (IP addresses and CIDR ranges). */
    readonly plainAllowedCidrs: readonly string[];
    readonly consumersPerRouter: number;
    readonly maxTransportsPerParticipant: number;
    readonly maxProducersPerParticipant: number;
    readonly maxConsumersPerParticipant: number;
  };
}

/** A rate limit: `points` actions per `durationMs`. */
export interface Limit {
  readonly points: number;
  readonly durationMs: number;
}

/**
 * Parses the environment. Unknown variables are ignored; empty strings count as unset.
 * @throws ConfigError naming every bad variable and the expected form.
 */
export function loadConfig(environment: Readonly<Record<string, string | undefined>> = process.env): Config {
  const present: Record<string, string> = {};
  for (const key of Object.keys(envSchema.shape)) {
    const value = environment[key];
    if (value !== undefined && value !== '') present[key] = value;
  }
  const parsed = envSchema.safeParse(present);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      const name = String(issue.path[0] ?? 'environment');
      const shown = SECRET_VARIABLES.has(name) ? '(value hidden)' : shownValue(present[name] ?? '');
      return `${name}=${shown}: ${issue.message}`;
    });
    throw new ConfigError(`invalid configuration:\n  ${problems.join('\n  ')}`);
  }
  const e = parsed.data;
  const production = e.NODE_ENV === 'production';

  if (production && !e.SIGNALING_JWT_SECRET && !e.SIGNALING_JWKS_URL) {
    throw new ConfigError(
      'invalid configuration:\n  SIGNALING_JWT_SECRET: required in production (or set SIGNALING_JWKS_URL)',
    );
  }
  if (production && e.SIGNALING_JWKS_URL && new URL(e.SIGNALING_JWKS_URL).protocol !== 'https:') {
    throw new ConfigError('invalid configuration:\n  SIGNALING_JWKS_URL: must be an https:// URL in production');
  }
  if (e.BACKEND_WEBHOOK_SECRET && !e.BACKEND_URL) {
    throw new ConfigError('invalid configuration:\n  BACKEND_WEBHOOK_SECRET: webhooks need BACKEND_URL too');
  }
  if (e.BACKEND_WEBHOOK_LEASE_MS < 2 * e.BACKEND_WEBHOOK_TIMEOUT_MS) {
    throw new ConfigError(
      `invalid configuration:\n  BACKEND_WEBHOOK_LEASE_MS=${e.BACKEND_WEBHOOK_LEASE_MS}: must be at least twice BACKEND_WEBHOOK_TIMEOUT_MS`,
    );
  }
  const redis = redisTargetOf(e);
  const secretGenerated = !e.SIGNALING_JWT_SECRET && !e.SIGNALING_JWKS_URL;
  const adminTokenGenerated = !e.SIGNALING_ADMIN_TOKEN && !production;

  return deepFreeze({
    env: e.NODE_ENV,
    host: e.HOST,
    port: e.PORT,
    nodeId: e.NODE_ID ?? defaultNodeId(),
    logLevel: e.LOG_LEVEL,
    redisUrl: e.REDIS_URL,
    redis,
    redisKeyPrefix: e.REDIS_KEY_PREFIX,
    nodeTtlMs: e.NODE_TTL_MS,
    jwt: {
      secret: e.SIGNALING_JWT_SECRET ?? (secretGenerated ? randomBytes(32).toString('base64url') : undefined),
      jwksUrl: e.SIGNALING_JWKS_URL,
      secretGenerated,
    },
    tokenPolicy: {
      issuer: e.SIGNALING_JWT_ISSUER,
      audience: e.SIGNALING_JWT_AUDIENCE,
      maxLifetimeSeconds: e.SIGNALING_JWT_MAX_LIFETIME_SECONDS,
      clockSkewSeconds: e.SIGNALING_JWT_CLOCK_SKEW_SECONDS,
      jwksCooldownMs: e.SIGNALING_JWKS_COOLDOWN_MS,
      jwksCacheMaxAgeMs: e.SIGNALING_JWKS_CACHE_MAX_AGE_MS,
    },
    adminToken: e.SIGNALING_ADMIN_TOKEN ?? (adminTokenGenerated ? randomBytes(24).toString('base64url') : undefined),
    adminTokenGenerated,
    allowedOrigins: e.SIGNALING_ALLOWED_ORIGINS,
    drainTimeoutMs: e.DRAIN_TIMEOUT_MS,
    backendUrl: e.BACKEND_URL,
    backendAccess: {
      token: e.BACKEND_TOKEN,
      failureMode: e.BACKEND_FAILURE_MODE,
      timeoutMs: e.BACKEND_ACCESS_TIMEOUT_MS,
      retries: e.BACKEND_ACCESS_RETRIES,
      cacheTtlMs: e.BACKEND_ACCESS_CACHE_TTL_MS,
      circuit: {
        errorThresholdPercentage: e.BACKEND_CIRCUIT_ERROR_PERCENT,
        volumeThreshold: e.BACKEND_CIRCUIT_VOLUME_THRESHOLD,
        rollingWindowMs: e.BACKEND_CIRCUIT_WINDOW_MS,
        resetTimeoutMs: e.BACKEND_CIRCUIT_RESET_MS,
      },
    },
    webhooks:
      e.BACKEND_URL && e.BACKEND_WEBHOOK_SECRET
        ? {
            secret: e.BACKEND_WEBHOOK_SECRET,
            timeoutMs: e.BACKEND_WEBHOOK_TIMEOUT_MS,
            maxAttempts: e.BACKEND_WEBHOOK_MAX_ATTEMPTS,
            retryBaseMs: e.BACKEND_WEBHOOK_RETRY_BASE_MS,
            retryMaxMs: e.BACKEND_WEBHOOK_RETRY_MAX_MS,
            queueMax: e.BACKEND_WEBHOOK_QUEUE_MAX,
            partitions: e.BACKEND_WEBHOOK_PARTITIONS,
            leaseMs: e.BACKEND_WEBHOOK_LEASE_MS,
          }
        : undefined,
    sentryDsn: e.SENTRY_DSN,
    sentryEnvironment: e.SENTRY_ENVIRONMENT,
    telemetry: {
      otlpEndpoint: e.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? e.OTEL_EXPORTER_OTLP_ENDPOINT,
      serviceName: e.OTEL_SERVICE_NAME,
      enabled: tracingWanted((name) => environment[name]),
    },
    maxPayloadBytes: e.MAX_PAYLOAD_BYTES,
    rooms: {
      replayMaxEvents: e.REPLAY_LOG_MAX_EVENTS,
      replayMaxAgeMs: e.REPLAY_LOG_MAX_AGE_MS,
      resumeMaxReplayEvents: e.RESUME_MAX_REPLAY_EVENTS,
      resumeMaxReplayBytes: e.RESUME_MAX_REPLAY_BYTES,
      largeRoomThreshold: e.LARGE_ROOM_THRESHOLD,
      participantCountIntervalMs: e.PARTICIPANT_COUNT_INTERVAL_MS,
      maxParticipants: e.MAX_PARTICIPANTS_PER_ROOM,
      joinParticipantsLimit: e.JOIN_PARTICIPANTS_LIMIT,
      emptyGraceMs: e.ROOM_EMPTY_GRACE_MS,
      resumeGraceMs: e.SESSION_RESUME_GRACE_MS,
      kickBanMs: e.KICK_BAN_MS,
    },
    rateLimits: {
      enabled: e.RATE_LIMITS_ENABLED,
      ip: { points: e.RATE_LIMIT_IP_CONNECTIONS, durationMs: e.RATE_LIMIT_IP_WINDOW_MS },
      connection: { points: e.RATE_LIMIT_CONNECTION_MESSAGES, durationMs: e.RATE_LIMIT_CONNECTION_WINDOW_MS },
      user: { points: e.RATE_LIMIT_USER_MESSAGES, durationMs: e.RATE_LIMIT_USER_WINDOW_MS },
      methods: {
        'chat.send': { points: e.RATE_LIMIT_CHAT_MESSAGES, durationMs: e.RATE_LIMIT_CHAT_WINDOW_MS },
        'alert.publish': { points: e.RATE_LIMIT_ALERT_MESSAGES, durationMs: e.RATE_LIMIT_ALERT_WINDOW_MS },
        'room.join': { points: e.RATE_LIMIT_JOIN_MESSAGES, durationMs: e.RATE_LIMIT_JOIN_WINDOW_MS },
        'room.history': { points: e.RATE_LIMIT_HISTORY_MESSAGES, durationMs: e.RATE_LIMIT_HISTORY_WINDOW_MS },
      },
      chatByRole: chatLimitsByRole(e),
      abuseCloseAfterRejections: e.ABUSE_CLOSE_AFTER_REJECTIONS,
    },
    trustedProxies: e.TRUSTED_PROXIES ?? [],
    maxConnectionsPerUser: e.MAX_CONNECTIONS_PER_USER,
    heartbeatIntervalMs: e.HEARTBEAT_INTERVAL_MS,
    slowConsumer: { maxBufferedBytes: e.SLOW_CONSUMER_MAX_BUFFERED_BYTES, graceMs: e.SLOW_CONSUMER_GRACE_MS },
    media: {
      enabled: e.MEDIA_ENABLED,
      numWorkers: e.MEDIASOUP_NUM_WORKERS,
      listenIp: e.RTC_LISTEN_IP,
      announcedAddress: e.RTC_ANNOUNCED_ADDRESS,
      pipeAnnouncedAddress: e.RTC_PIPE_ANNOUNCED_ADDRESS,
      pipeSrtp: e.RTC_PIPE_SRTP,
      rtcBasePort: e.RTC_BASE_PORT,
      plainTransports: e.SFU_PLAIN_TRANSPORTS,
      plainAllowedCidrs: e.SFU_PLAIN_ALLOWED_CIDRS ?? ['127.0.0.0/8', '::1/128'],
      consumersPerRouter: e.SFU_CONSUMER_BUDGET,
      maxTransportsPerParticipant: e.SFU_MAX_TRANSPORTS_PER_PARTICIPANT,
      maxProducersPerParticipant: e.SFU_MAX_PRODUCERS_PER_PARTICIPANT,
      maxConsumersPerParticipant: e.SFU_MAX_CONSUMERS_PER_PARTICIPANT,
    },
  });
}

/**
 * Which Redis the variables name. Cluster seeds win over Sentinels, Sentinels over a plain URL;
 * with seeds or Sentinels, `REDIS_URL` only carries credentials and TLS (`rediss://`).
 */
function redisTargetOf(e: Env): RedisTarget | undefined {
  const sentinels = e.REDIS_SENTINELS;
  const name = e.REDIS_SENTINEL_NAME;
  if (!e.REDIS_CLUSTER_NODES && (sentinels === undefined) !== (name === undefined)) {
    const missing = sentinels === undefined ? 'REDIS_SENTINELS' : 'REDIS_SENTINEL_NAME';
    const other = sentinels === undefined ? 'REDIS_SENTINEL_NAME' : 'REDIS_SENTINELS';
    throw new ConfigError(`invalid configuration:\n  ${missing}: required with ${other} (Sentinel mode needs both)`);
  }
  if (e.REDIS_CLUSTER_NODES) return { mode: 'cluster', nodes: e.REDIS_CLUSTER_NODES, url: e.REDIS_URL };
  if (sentinels && name) return { mode: 'sentinel', sentinels, name, url: e.REDIS_URL };
  return e.REDIS_URL ? { mode: 'single', url: e.REDIS_URL } : undefined;
}

/** Per-role `chat.send` limits (same window as the global one); undefined when no role has its own. */
function chatLimitsByRole(e: Env): Partial<Record<Role, Limit>> | undefined {
  const points: Partial<Record<Role, number | undefined>> = {
    presenter: e.RATE_LIMIT_CHAT_PRESENTER_MESSAGES,
    moderator: e.RATE_LIMIT_CHAT_MODERATOR_MESSAGES,
    trader: e.RATE_LIMIT_CHAT_TRADER_MESSAGES,
  };
  const limits: Partial<Record<Role, Limit>> = {};
  for (const [role, value] of Object.entries(points) as [Role, number | undefined][]) {
    if (value !== undefined) limits[role] = { points: value, durationMs: e.RATE_LIMIT_CHAT_WINDOW_MS };
  }
  return Object.keys(limits).length > 0 ? limits : undefined;
}

/** Names of every variable {@link loadConfig} reads, for documentation. */
export const CONFIG_VARIABLES: readonly string[] = Object.freeze(Object.keys(envSchema.shape));

/** A Standard Webhooks secret: `whsec_` and 24 to 64 bytes in base64. */
function isWebhookSecret(value: string): boolean {
  const encoded = value.startsWith('whsec_') ? value.slice('whsec_'.length) : '';
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(encoded) || encoded.length % 4 !== 0) return false;
  const bytes = Buffer.from(encoded, 'base64').length;
  return bytes >= 24 && bytes <= 64;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}
