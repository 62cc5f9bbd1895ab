/**
 * The preload of a node (`node --import ./dist/signaling/src/instrumentation.js …/main.js`):
 * starts OpenTelemetry before the application is imported, so the HTTP, undici and ioredis
 * instrumentations see those modules first. Configured by the standard `OTEL_*` variables only;
 * without an exporter to send to (no `OTEL_EXPORTER_OTLP_ENDPOINT`, no `OTEL_TRACES_EXPORTER`)
 * or with `OTEL_SDK_DISABLED=true` it loads nothing else and tracing costs nothing.
 */
import { tracingWanted, type EnvReader } from './telemetry/tracing-settings.js';

// The preload runs before the configuration exists (config.ts checks these same variables).
// eslint-disable-next-line no-restricted-syntax
const environment = process.env;
const read: EnvReader = (name) => environment[name]?.trim() || undefined;

if (tracingWanted(read)) {
  const [{ startTracing }, { VERSION }, { defaultNodeId }] = await Promise.all([
    import('./telemetry/tracing.js'),
    import('./package-info.js'),
    import('./node-id.js'),
  ]);
  await startTracing({ nodeId: read('NODE_ID') ?? defaultNodeId(), version: VERSION });
}
