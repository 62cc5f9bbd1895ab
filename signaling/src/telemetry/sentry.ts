/**
 * Error reporting to Sentry (`SENTRY_DSN`): unhandled errors and every `INTERNAL` answer, tagged
 * with the method, room and user, linked to the request's trace. Sentry does not set up
 * OpenTelemetry here (`enableOpenTelemetrySetup: false`, its default) and patches no module:
 * tracing is ours, Sentry only gets events. What leaves the process is scrubbed first — tokens,
 * `Authorization` and cookie headers, query strings, message bodies — in events and breadcrumbs.
 */
import type { SpanContext } from '@opentelemetry/api';
import type { Breadcrumb, ErrorEvent } from '@sentry/node';

export interface SentryOptions {
  readonly dsn: string;
  readonly release: string;
  readonly environment: string;
  readonly serverName: string;
}

export interface ErrorReporter {
  report(error: unknown, tags: Record<string, string | undefined>, trace?: SpanContext): void;
  /** Sends what is queued; resolves false when `timeoutMs` passed first. */
  flush(timeoutMs: number): Promise<boolean>;
  close(timeoutMs: number): Promise<void>;
}

export async function startSentry(options: SentryOptions): Promise<ErrorReporter> {
  const Sentry = await import('@sentry/node');
  Sentry.init({
    dsn: options.dsn,
    release: options.release,
    environment: options.environment,
    serverName: options.serverName,
    // Nothing personal or request-borne is collected in the first place; `beforeSend` is the net.
    dataCollection: {
      userInfo: false,
      cookies: false,
      httpHeaders: false,
      httpBodies: [],
      urlQueryParams: false,
      databaseQueryData: false,
      queues: false,
      stackFrameVariables: false,
    },
    enableOpenTelemetrySetup: false,
    enableRuntimeChannelInjection: false,
    // Errors only: no HTTP, fetch or console wrappers (they would see URLs and log lines).
    defaultIntegrations: false,
    integrations: [
      Sentry.eventFiltersIntegration(),
      Sentry.functionToStringIntegration(),
      Sentry.linkedErrorsIntegration(),
      Sentry.dedupeIntegration(),
      Sentry.onUncaughtExceptionIntegration(),
      Sentry.onUnhandledRejectionIntegration(),
      Sentry.contextLinesIntegration(),
      Sentry.nodeContextIntegration(),
    ],
    beforeSend: (event) => scrubEvent(event),
    beforeBreadcrumb: (breadcrumb) => scrubBreadcrumb(breadcrumb),
  });
  return {
    report(error, tags, trace) {
      Sentry.withScope((scope) => {
        for (const [key, value] of Object.entries(tags)) if (value !== undefined) scope.setTag(key, value);
        if (trace) {
          scope.setPropagationContext({
            traceId: trace.traceId,
            propagationSpanId: trace.spanId,
            sampled: (trace.traceFlags & 1) === 1,
            sampleRand: Math.random(),
          });
        }
        Sentry.captureException(error);
      });
    },
    flush: (timeoutMs) => Sentry.flush(timeoutMs),
    close: async (timeoutMs) => {
      await Sentry.close(timeoutMs);
    },
  };
}

/** Keys whose values never leave the process: credentials and what people wrote. */
const SECRET_KEY =
  /^(token|access_?token|refresh_?token|authorization|cookie|set-cookie|password|secret|text|note|body|args|query_string)$/i;
/** A JWT (three base64url parts, the first a JSON header). */
const JWT = /eyJ[\w-]+\.[\w-]+\.[\w-]*/g;
const BEARER = /\b(Bearer|Basic)\s+[^\s"',]+/gi;
const QUERY = /(\b(?:https?|wss?):\/\/[^\s?#"']*)\?[^\s#"']*/gi;
const TOKEN_PARAM = /([?&]token=)[^&\s"']*/gi;
const REDACTED = '[redacted]';

/** The event with its secrets and bodies removed (request data, messages, extras, breadcrumbs). */
export function scrubEvent(event: ErrorEvent): ErrorEvent {
  if (event.request) {
    delete event.request.cookies;
    delete event.request.data;
    delete event.request.query_string;
    if (event.request.url) event.request.url = event.request.url.split('?')[0];
  }
  return scrubValue(event) as ErrorEvent;
}

export function scrubBreadcrumb(breadcrumb: Breadcrumb): Breadcrumb {
  return scrubValue(breadcrumb) as Breadcrumb;
}

/** Walks a JSON-like value: secret keys redacted, strings cleaned of tokens and query strings. */
function scrubValue(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return scrubString(value);
  if (value === null || typeof value !== 'object' || depth > 12) return value;
  if (Array.isArray(value)) return value.map((item) => scrubValue(item, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value as Record<string, unknown>)) {
    if (item === undefined) continue;
    if (SECRET_KEY.test(key)) out[key] = REDACTED;
    // Breadcrumb and context `data` keeps its shape (secrets inside go); a body in it does not.
    else if (key === 'data' && (item === null || typeof item !== 'object' || Array.isArray(item))) out[key] = REDACTED;
    else out[key] = scrubValue(item, depth + 1);
  }
  return out;
}

function scrubString(text: string): string {
  return text
    .replace(JWT, REDACTED)
    .replace(BEARER, `$1 ${REDACTED}`)
    .replace(TOKEN_PARAM, `$1${REDACTED}`)
    .replace(QUERY, '$1');
}
