/**
 * Whether tracing starts, from the standard OpenTelemetry variables alone. Shared by the preload
 * (which starts the SDK before anything else is imported) and the configuration (which checks
 * the values and reports what the node does).
 */

/** Reads one environment variable (the preload: OpenTelemetry's reader; config: its environment). */
export type EnvReader = (name: string) => string | undefined;

/** The default `service.name` when `OTEL_SERVICE_NAME` is not set. */
export const DEFAULT_SERVICE_NAME = 'trading-room-signaling';

/**
 * Tracing is on unless `OTEL_SDK_DISABLED` is true or `OTEL_TRACES_EXPORTER` is `none`; with no
 * `OTEL_TRACES_EXPORTER` it takes an OTLP endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT` or
 * `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) to turn it on: a node without one exports nothing and
 * pays nothing (the API stays a no-op).
 */
export function tracingWanted(read: EnvReader): boolean {
  if (isTrue(read('OTEL_SDK_DISABLED'))) return false;
  const exporters = (read('OTEL_TRACES_EXPORTER') ?? '')
    .split(',')
    .map((name) => name.trim())
    .filter((name) => name !== '' && name !== 'null');
  if (exporters.length > 0) return !(exporters.length === 1 && exporters[0] === 'none');
  return Boolean(read('OTEL_EXPORTER_OTLP_ENDPOINT')?.trim() || read('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT')?.trim());
}

function isTrue(value: string | undefined): boolean {
  return ['true', '1', 'yes'].includes((value ?? '').trim().toLowerCase());
}
