/**
 * JSON logs (pino). Every line written inside a span carries its `trace_id` and `span_id`, so a
 * log line leads to its trace and back. Tokens, `Authorization` headers and what people wrote
 * (chat text, alert notes, the arguments of a failed Redis command) never reach the log.
 */
import { trace } from '@opentelemetry/api';
import { pino, type Logger } from 'pino';

/** Paths pino replaces with `[redacted]`. */
const REDACTED_PATHS = [
  'token',
  '*.token',
  'authorization',
  '*.authorization',
  'headers.authorization',
  '*.headers.authorization',
  'text',
  '*.text',
  'note',
  '*.note',
  // ioredis errors carry the failed command, arguments (message frames) included.
  'err.command.args',
  'err.cause.command.args',
];

export function createLogger(options: { level: string; nodeId: string }, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level: options.level,
      base: { node: options.nodeId },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
      mixin: traceFields,
    },
    destination,
  );
}

/** The active span's ids, when there is a valid one. */
function traceFields(): Record<string, string> {
  const span = trace.getActiveSpan();
  if (!span) return {};
  const { traceId, spanId } = span.spanContext();
  return trace.isSpanContextValid(span.spanContext()) ? { trace_id: traceId, span_id: spanId } : {};
}
