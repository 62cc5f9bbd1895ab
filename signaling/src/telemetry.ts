/**
 * Tracing (OpenTelemetry) and error reporting (Sentry), both optional: the OTel SDK starts when
 * `OTEL_EXPORTER_OTLP_ENDPOINT` is set, Sentry when `SENTRY_DSN` is. Without them spans are
 * no-ops and errors only go to the log.
 */
import type { Logger } from 'pino';
import type { Config } from './config.js';

export interface Telemetry {
  reportError(error: unknown, context: Record<string, string | undefined>): void;
  /** Flushes and stops exporters; safe to call twice. */
  shutdown(): Promise<void>;
}

export async function startTelemetry(config: Config, log: Logger): Promise<Telemetry> {
  const stops: (() => Promise<unknown>)[] = [];
  let capture: ((error: unknown, context: Record<string, string | undefined>) => void) | undefined;

  if (config.telemetry.enabled) {
    const [{ NodeSDK }, { getNodeAutoInstrumentations }] = await Promise.all([
      import('@opentelemetry/sdk-node'),
      import('@opentelemetry/auto-instrumentations-node'),
    ]);
    const sdk = new NodeSDK({
      serviceName: config.telemetry.serviceName,
      instrumentations: [getNodeAutoInstrumentations({ '@opentelemetry/instrumentation-fs': { enabled: false } })],
    });
    sdk.start();
    stops.push(() => sdk.shutdown());
    log.info({ endpoint: config.telemetry.otlpEndpoint }, 'OpenTelemetry tracing on');
  }

  if (config.sentryDsn) {
    const Sentry = await import('@sentry/node');
    Sentry.init({ dsn: config.sentryDsn, environment: config.env, serverName: config.nodeId });
    capture = (error, context) =>
      Sentry.withScope((scope) => {
        for (const [key, value] of Object.entries(context)) if (value !== undefined) scope.setTag(key, value);
        Sentry.captureException(error);
      });
    stops.push(() => Sentry.close(2000));
    log.info('Sentry error reporting on');
  }

  let stopped = false;
  return {
    reportError(error, context) {
      capture?.(error, context);
    },
    async shutdown() {
      if (stopped) return;
      stopped = true;
      await Promise.allSettled(stops.map((stop) => stop()));
    },
  };
}
