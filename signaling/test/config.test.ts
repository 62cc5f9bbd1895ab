/** `loadConfig`: values, defaults, freezing, and a ConfigError naming each bad variable. */
import { describe, expect, it } from 'vitest';
import { CONFIG_VARIABLES, loadConfig } from '../src/config.js';
import { ConfigError } from '../src/errors.js';

const SECRET = 'a-secret-of-at-least-32-characters-0123';

function configError(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error(`loadConfig accepted ${JSON.stringify(env)}`);
}

describe('loadConfig', () => {
  it('applies the documented defaults', () => {
    const config = loadConfig({});
    expect(config.env).toBe('development');
    expect(config.host).toBe('0.0.0.0');
    expect(config.port).toBe(8080);
    expect(config.logLevel).toBe('info');
    expect(config.redisUrl).toBeUndefined();
    expect(config.drainTimeoutMs).toBe(25_000);
    expect(config.maxPayloadBytes).toBe(64 * 1024);
    expect(config.allowedOrigins).toBeUndefined();
    expect(config.trustedProxies).toEqual([]);
    expect(config.maxConnectionsPerUser).toBe(5);
    expect(config.nodeId).toMatch(/^[A-Za-z0-9._-]{1,64}$/);
    expect(config.rooms).toEqual({
      replayMaxEvents: 10_000,
      replayMaxAgeMs: 15 * 60_000,
      resumeMaxReplayEvents: 2000,
      resumeMaxReplayBytes: 1024 * 1024,
      largeRoomThreshold: 200,
      participantCountIntervalMs: 1000,
      maxParticipants: 10_000,
      joinParticipantsLimit: 100,
      emptyGraceMs: 30_000,
      resumeGraceMs: 10_000,
      kickBanMs: 10 * 60_000,
    });
    expect(config.rateLimits).toEqual({
      enabled: true,
      ip: { points: 20, durationMs: 60_000 },
      connection: { points: 100, durationMs: 10_000 },
      user: { points: 500, durationMs: 60_000 },
      methods: {
        'chat.send': { points: 5, durationMs: 5_000 },
        'alert.publish': { points: 10, durationMs: 60_000 },
        'room.join': { points: 10, durationMs: 60_000 },
        'room.history': { points: 10, durationMs: 60_000 },
      },
      abuseCloseAfterRejections: 200,
    });
    expect(config.media.enabled).toBe(true);
    expect(config.media.plainTransports).toBe(false);
    expect(config.media.plainAllowedCidrs).toEqual(['127.0.0.0/8', '::1/128']);
    expect(config.media.maxConsumersPerParticipant).toBe(16);
    expect(config.telemetry).toEqual({
      otlpEndpoint: undefined,
      serviceName: 'trading-room-signaling',
      enabled: false,
    });
    expect(config.redis).toBeUndefined();
    expect(config.redisKeyPrefix).toBe('trading-room');
    expect(config.nodeTtlMs).toBe(10_000);
  });

  it('parses good values of every kind', () => {
    const config = loadConfig({
      NODE_ENV: 'production',
      HOST: '127.0.0.1',
      PORT: '9000',
      NODE_ID: 'node-a.1_x',
      LOG_LEVEL: 'warn',
      REDIS_URL: 'redis://redis:6379/0',
      SIGNALING_JWT_SECRET: SECRET,
      SIGNALING_ADMIN_TOKEN: 'admin-token-0123456789',
      SIGNALING_ALLOWED_ORIGINS: 'https://a.example, https://b.example ,',
      DRAIN_TIMEOUT_MS: '0',
      BACKEND_URL: 'https://backend.example/api',
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://otel:4318',
      MAX_PAYLOAD_BYTES: '1024',
      LARGE_ROOM_THRESHOLD: '3',
      RATE_LIMITS_ENABLED: 'no',
      RATE_LIMIT_CHAT_MESSAGES: '7',
      RATE_LIMIT_CHAT_WINDOW_MS: '2000',
      TRUSTED_PROXIES: '10.0.0.0/8, 192.168.1.1, ::1, fd00::/8',
      MEDIA_ENABLED: '0',
      RTC_LISTEN_IP: '::',
      SFU_PLAIN_TRANSPORTS: 'yes',
      SFU_PLAIN_ALLOWED_CIDRS: '127.0.0.1, 10.20.0.0/16, fd00::/8',
    });
    expect(config.env).toBe('production');
    expect(config.host).toBe('127.0.0.1');
    expect(config.port).toBe(9000);
    expect(config.nodeId).toBe('node-a.1_x');
    expect(config.logLevel).toBe('warn');
    expect(config.redisUrl).toBe('redis://redis:6379/0');
    expect(config.jwt).toEqual({ secret: SECRET, jwksUrl: undefined, secretGenerated: false });
    expect(config.adminToken).toBe('admin-token-0123456789');
    expect(config.adminTokenGenerated).toBe(false);
    expect(config.allowedOrigins).toEqual(['https://a.example', 'https://b.example']);
    expect(config.drainTimeoutMs).toBe(0);
    expect(config.backendUrl).toBe('https://backend.example/api');
    expect(config.telemetry.enabled).toBe(true);
    expect(config.maxPayloadBytes).toBe(1024);
    expect(config.rooms.largeRoomThreshold).toBe(3);
    expect(config.rateLimits.enabled).toBe(false);
    expect(config.rateLimits.methods['chat.send']).toEqual({ points: 7, durationMs: 2000 });
    expect(config.trustedProxies).toEqual(['10.0.0.0/8', '192.168.1.1', '::1', 'fd00::/8']);
    expect(config.media.enabled).toBe(false);
    expect(config.media.listenIp).toBe('::');
    expect(config.media.plainTransports).toBe(true);
    expect(config.media.plainAllowedCidrs).toEqual(['127.0.0.1', '10.20.0.0/16', 'fd00::/8']);
  });

  describe('Redis', () => {
    it('names a single Redis by its URL', () => {
      const config = loadConfig({ REDIS_URL: 'rediss://:pw@redis.internal:6380/2', REDIS_KEY_PREFIX: 'tr-prod' });
      expect(config.redis).toEqual({ mode: 'single', url: 'rediss://:pw@redis.internal:6380/2' });
      expect(config.redisKeyPrefix).toBe('tr-prod');
    });

    it('names a Redis Cluster by its seeds, which win over Sentinels; the URL keeps credentials and TLS', () => {
      const config = loadConfig({
        REDIS_CLUSTER_NODES: '10.0.0.1:7000, redis-b ,[fd00::2]:7002,',
        REDIS_SENTINELS: 'sentinel-a:26379',
        REDIS_URL: 'rediss://app:pw@ignored:1',
        NODE_TTL_MS: '3000',
      });
      expect(config.redis).toEqual({
        mode: 'cluster',
        nodes: [
          { host: '10.0.0.1', port: 7000 },
          { host: 'redis-b', port: 6379 },
          { host: 'fd00::2', port: 7002 },
        ],
        url: 'rediss://app:pw@ignored:1',
      });
      expect(config.nodeTtlMs).toBe(3000);
      expect(Object.isFrozen(config.redis)).toBe(true);
    });

    it('names a Sentinel-managed master by the Sentinels and the master name', () => {
      const config = loadConfig({ REDIS_SENTINELS: 's1:26379,s2:26380', REDIS_SENTINEL_NAME: 'mymaster' });
      expect(config.redis).toEqual({
        mode: 'sentinel',
        sentinels: [
          { host: 's1', port: 26379 },
          { host: 's2', port: 26380 },
        ],
        name: 'mymaster',
        url: undefined,
      });
    });

    it('needs REDIS_SENTINELS and REDIS_SENTINEL_NAME together, naming the missing one', () => {
      expect(configError({ REDIS_SENTINELS: 's1:26379' }).message).toMatch(/REDIS_SENTINEL_NAME: required/);
      expect(configError({ REDIS_SENTINEL_NAME: 'mymaster' }).message).toMatch(/REDIS_SENTINELS: required/);
    });

    it('never shows credentials written into the seed lists', () => {
      for (const name of ['REDIS_CLUSTER_NODES', 'REDIS_SENTINELS']) {
        const error = configError({
          [name]: 'redis://app:hunter2@10.0.0.1:7000,ops:letmein@10.0.0.2:7001',
          REDIS_SENTINEL_NAME: 'm',
        });
        expect(error.message).toContain(name);
        expect(error.message).toContain('REDIS_URL'); // where credentials belong
        expect(error.message).not.toContain('hunter2');
        expect(error.message).not.toContain('letmein');
      }
    });
  });

  it('treats empty strings as unset and ignores unknown variables', () => {
    const config = loadConfig({ PORT: '', REDIS_URL: '', SOMETHING_ELSE: 'x' });
    expect(config.port).toBe(8080);
    expect(config.redisUrl).toBeUndefined();
  });

  it('returns a deeply frozen object', () => {
    const config = loadConfig({});
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.rooms)).toBe(true);
    expect(Object.isFrozen(config.rateLimits.methods['chat.send'])).toBe(true);
    expect(() => {
      (config as { port: number }).port = 1;
    }).toThrow(TypeError);
    expect(() => {
      (config.rooms as { largeRoomThreshold: number }).largeRoomThreshold = 1;
    }).toThrow(TypeError);
  });

  it('generates a JWT secret and an admin token outside production', () => {
    const a = loadConfig({ NODE_ENV: 'development' });
    const b = loadConfig({ NODE_ENV: 'development' });
    expect(a.jwt.secretGenerated).toBe(true);
    expect(a.jwt.secret?.length).toBeGreaterThanOrEqual(32);
    expect(a.adminTokenGenerated).toBe(true);
    expect(a.adminToken?.length).toBeGreaterThanOrEqual(16);
    expect(b.jwt.secret).not.toBe(a.jwt.secret);
    expect(b.adminToken).not.toBe(a.adminToken);
  });

  it('does not generate a secret when a JWKS URL verifies tokens', () => {
    const config = loadConfig({ SIGNALING_JWKS_URL: 'https://backend.example/.well-known/jwks.json' });
    expect(config.jwt).toEqual({
      secret: undefined,
      jwksUrl: 'https://backend.example/.well-known/jwks.json',
      secretGenerated: false,
    });
  });

  it('fails in production without a secret or a JWKS URL, naming SIGNALING_JWT_SECRET', () => {
    expect(configError({ NODE_ENV: 'production' }).message).toContain('SIGNALING_JWT_SECRET');
    expect(() => loadConfig({ NODE_ENV: 'production', SIGNALING_JWKS_URL: 'https://b.example/jwks' })).not.toThrow();
  });

  it('generates no admin token in production (the admin API stays off)', () => {
    const config = loadConfig({ NODE_ENV: 'production', SIGNALING_JWT_SECRET: SECRET });
    expect(config.adminToken).toBeUndefined();
    expect(config.adminTokenGenerated).toBe(false);
  });

  const badValues: [string, string][] = [
    ['NODE_ENV', 'staging'],
    ['PORT', 'abc'],
    ['PORT', '70000'],
    ['PORT', '-1'],
    ['PORT', '80.5'],
    ['PORT', ' 80'],
    ['NODE_ID', 'node id with spaces'],
    ['NODE_ID', 'x'.repeat(65)],
    ['LOG_LEVEL', 'verbose'],
    ['REDIS_URL', 'not a url'],
    ['REDIS_URL', 'localhost:6379'],
    ['REDIS_URL', 'http://redis:6379'],
    ['REDIS_CLUSTER_NODES', 'redis-a:70000'],
    ['REDIS_CLUSTER_NODES', 'redis-a:7000:1'],
    ['REDIS_CLUSTER_NODES', ' , '],
    ['REDIS_SENTINELS', 'sentinel:port'],
    ['REDIS_SENTINEL_NAME', 'my master'],
    ['REDIS_KEY_PREFIX', 'tr{x}'],
    ['REDIS_KEY_PREFIX', 'x'.repeat(65)],
    ['NODE_TTL_MS', '100'],
    ['SIGNALING_JWT_SECRET', 'too-short'],
    ['SIGNALING_JWKS_URL', 'jwks.json'],
    ['SIGNALING_ADMIN_TOKEN', 'short'],
    ['DRAIN_TIMEOUT_MS', '1.5'],
    ['DRAIN_TIMEOUT_MS', '3600001'],
    ['BACKEND_URL', 'backend:3000'],
    ['SENTRY_DSN', 'nope'],
    ['OTEL_EXPORTER_OTLP_ENDPOINT', 'otel:4318'],
    ['OTEL_SDK_DISABLED', 'maybe'],
    ['MAX_PAYLOAD_BYTES', '10'],
    ['REPLAY_LOG_MAX_EVENTS', '0'],
    ['REPLAY_LOG_MAX_AGE_MS', '999'],
    ['RESUME_MAX_REPLAY_EVENTS', '0'],
    ['RESUME_MAX_REPLAY_BYTES', '1023'],
    ['LARGE_ROOM_THRESHOLD', '0'],
    ['PARTICIPANT_COUNT_INTERVAL_MS', '5'],
    ['JOIN_PARTICIPANTS_LIMIT', '-3'],
    ['ROOM_EMPTY_GRACE_MS', 'soon'],
    ['RATE_LIMITS_ENABLED', 'enabled'],
    ['RATE_LIMIT_IP_CONNECTIONS', '0'],
    ['RATE_LIMIT_IP_WINDOW_MS', '10'],
    ['RATE_LIMIT_CHAT_MESSAGES', '1e3'],
    ['TRUSTED_PROXIES', 'proxy.internal'],
    ['TRUSTED_PROXIES', '999.1.1.1'],
    ['TRUSTED_PROXIES', '10.0.0.0/33'],
    ['TRUSTED_PROXIES', 'fd00::/129'],
    ['MAX_CONNECTIONS_PER_USER', '0'],
    ['HEARTBEAT_INTERVAL_MS', '50'],
    ['MEDIA_ENABLED', 'on'],
    ['MEDIASOUP_NUM_WORKERS', '65'],
    ['RTC_LISTEN_IP', '300.1.1.1'],
    ['RTC_BASE_PORT', '65536'],
    ['SFU_CONSUMER_BUDGET', '0'],
    ['SFU_PLAIN_ALLOWED_CIDRS', 'localhost'],
    ['SFU_PLAIN_ALLOWED_CIDRS', '127.0.0.0/8/1'],
    ['SFU_MAX_CONSUMERS_PER_PARTICIPANT', '0'],
  ];

  it.each(badValues)('rejects %s=%j with a ConfigError naming it', (name, value) => {
    const error = configError({ [name]: value });
    expect(error.name).toBe('ConfigError');
    expect(error.message).toContain(name);
  });

  it('names every bad variable at once', () => {
    const message = configError({ PORT: 'x', LOG_LEVEL: 'loud', MEDIA_ENABLED: 'perhaps' }).message;
    expect(message).toContain('PORT');
    expect(message).toContain('LOG_LEVEL');
    expect(message).toContain('MEDIA_ENABLED');
  });

  it('does not echo secret values in the error', () => {
    const error = configError({ SIGNALING_JWT_SECRET: 'leaky-secret', SIGNALING_ADMIN_TOKEN: 'leaky-admin' });
    expect(error.message).toContain('SIGNALING_JWT_SECRET');
    expect(error.message).toContain('SIGNALING_ADMIN_TOKEN');
    expect(error.message).not.toContain('leaky-secret');
    expect(error.message).not.toContain('leaky-admin');
  });

  it('lists every variable it reads, including the contract ones', () => {
    for (const name of [
      'PORT',
      'NODE_ID',
      'REDIS_URL',
      'SIGNALING_JWT_SECRET',
      'SIGNALING_JWKS_URL',
      'SIGNALING_ADMIN_TOKEN',
      'DRAIN_TIMEOUT_MS',
      'BACKEND_URL',
      'SENTRY_DSN',
    ]) {
      expect(CONFIG_VARIABLES).toContain(name);
    }
    expect(Object.isFrozen(CONFIG_VARIABLES)).toBe(true);
  });
});
