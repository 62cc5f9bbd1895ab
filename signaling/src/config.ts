/**
 * Configuration, parsed once from the environment into a frozen, typed object. Nothing else in
 * the code base reads `process.env`. A bad value stops start-up with a {@link ConfigError} that
 * names the variable and the form it expects.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { z } from 'zod';
import { ConfigError } from './errors.js';
import { isCidr } from './net/cidr.js';
import { parseHostPort } from './bus/create-room-bus.js';
import type { HostPort, RedisTarget } from './bus/redis-connections.js';

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
const SECRET_VARIABLES = new Set(['SIGNALING_JWT_SECRET', 'SIGNALING_ADMIN_TOKEN', 'REDIS_URL', 'SENTRY_DSN']);

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
  SIGNALING_ADMIN_TOKEN: z.string().min(16, 'expected at least 16 characters').optional(),
  SIGNALING_ALLOWED_ORIGINS: list.optional(),
  DRAIN_TIMEOUT_MS: int(0, 3_600_000).default(25_000),
  BACKEND_URL: httpUrl.optional(),
  SENTRY_DSN: url.optional(),
  OTEL_EXPORTER_OTLP_ENDPOINT: httpUrl.optional(),
  OTEL_SERVICE_NAME: z.string().min(1).default('trading-room'),
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
  readonly adminToken: string | undefined;
  readonly adminTokenGenerated: boolean;
  readonly allowedOrigins: readonly string[] | undefined;
  readonly drainTimeoutMs: number;
  readonly backendUrl: string | undefined;
  readonly sentryDsn: string | undefined;
  /** OpenTelemetry: the SDK starts when an OTLP endpoint is set (it reads its other OTEL_* itself). */
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
  const redis = redisTargetOf(e);
  const secretGenerated = !e.SIGNALING_JWT_SECRET && !e.SIGNALING_JWKS_URL;
  const adminTokenGenerated = !e.SIGNALING_ADMIN_TOKEN && !production;

  return deepFreeze({
    env: e.NODE_ENV,
    host: e.HOST,
    port: e.PORT,
    nodeId:
      e.NODE_ID ??
      `${hostname()
        .replace(/[^A-Za-z0-9._-]/g, '-')
        .slice(0, 40)}-${process.pid}`,
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
    adminToken: e.SIGNALING_ADMIN_TOKEN ?? (adminTokenGenerated ? randomBytes(24).toString('base64url') : undefined),
    adminTokenGenerated,
    allowedOrigins: e.SIGNALING_ALLOWED_ORIGINS,
    drainTimeoutMs: e.DRAIN_TIMEOUT_MS,
    backendUrl: e.BACKEND_URL,
    sentryDsn: e.SENTRY_DSN,
    telemetry: {
      otlpEndpoint: e.OTEL_EXPORTER_OTLP_ENDPOINT,
      serviceName: e.OTEL_SERVICE_NAME,
      enabled: !e.OTEL_SDK_DISABLED && e.OTEL_EXPORTER_OTLP_ENDPOINT !== undefined,
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

/** Names of every variable {@link loadConfig} reads, for documentation. */
export const CONFIG_VARIABLES: readonly string[] = Object.freeze(Object.keys(envSchema.shape));

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}
