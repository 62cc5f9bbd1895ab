/**
 * Tracing (OpenTelemetry) and error reporting (Sentry) as the node sees them. Tracing is started
 * by the preload (`instrumentation.ts`, from the `OTEL_*` variables) before the node exists; the
 * node flushes it when it drains. Sentry starts here when `SENTRY_DSN` is set. Without either,
 * spans are no-ops and errors only go to the log.
 */
import type { SpanContext } from '@opentelemetry/api';
import type { Logger } from 'pino';
import type { Config } from './config.js';
import { activeTracing } from './telemetry/tracing.js';
import type { ErrorReporter } from './telemetry/sentry.js';

export interface Telemetry {
  /** Reports an unexpected error with tags, linked to the trace of the request it broke. */
  reportError(error: unknown, context: Record<string, string | undefined>, trace?: SpanContext): void;
  /** Sends queued spans and error reports (the drain calls it early, the shutdown again). */
  flush(timeoutMs: number): Promise<void>;
  /** Flushes and stops the error reporter; safe to call twice. Tracing is flushed, not stopped. */
  shutdown(): Promise<void>;
}

export async function startTelemetry(config: Config, log: Logger, version: string): Promise<Telemetry> {
  let reporter: ErrorReporter | undefined;
  if (activeTracing()) log.info({ serviceName: config.telemetry.serviceName }, 'OpenTelemetry tracing on');
  if (config.sentryDsn) {
    const { startSentry } = await import('./telemetry/sentry.js');
    reporter = await startSentry({
      dsn: config.sentryDsn,
      release: `${config.telemetry.serviceName}@${version}`,
      environment: config.sentryEnvironment ?? config.env,
      serverName: config.nodeId,
    });
    log.info('Sentry error reporting on');
  }

  const flush = async (timeoutMs: number): Promise<void> => {
    await Promise.allSettled([activeTracing()?.forceFlush(), reporter?.flush(timeoutMs)]);
  };
  let stopped = false;
  return {
    reportError(error, context, trace) {
      reporter?.report(error, context, trace);
    },
    flush,
    async shutdown() {
      if (stopped) return;
      stopped = true;
      await Promise.allSettled([activeTracing()?.forceFlush(), reporter?.close(2000)]);
    },
  };
}
