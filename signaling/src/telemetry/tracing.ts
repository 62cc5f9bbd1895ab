/**
 * The OpenTelemetry SDK of a node, configured by the standard `OTEL_*` variables only: started by
 * the preload (`instrumentation.ts`) before the application is imported, so the HTTP, undici and
 * ioredis instrumentations patch those modules before anything holds them. Without an exporter
 * to send to, nothing starts and the API stays a no-op.
 */
import { createRequire, syncBuiltinESMExports } from 'node:module';
import type { TextMapPropagator } from '@opentelemetry/api';
import type { Instrumentation } from '@opentelemetry/instrumentation';
import type { SpanProcessor } from '@opentelemetry/sdk-trace';
import { DEFAULT_SERVICE_NAME } from './tracing-settings.js';

export interface TracingOptions {
  /** `service.instance.id`: the node id. */
  readonly nodeId: string;
  /** `service.version`: the package's version. */
  readonly version: string;
  /** Replaces the exporters `OTEL_TRACES_EXPORTER` names (tests: an in-memory exporter). */
  readonly spanProcessors?: SpanProcessor[];
  /** Default: the HTTP, undici and ioredis instrumentations. */
  readonly instrumentations?: Instrumentation[];
  readonly propagator?: TextMapPropagator;
}

export interface Tracing {
  /** Exports what has ended so far (the drain calls it before the process exits). */
  forceFlush(): Promise<void>;
  shutdown(): Promise<void>;
}

let running: Tracing | undefined;

/** The tracing this process started, if any. */
export function activeTracing(): Tracing | undefined {
  return running;
}

/**
 * Starts the SDK and registers it globally (once per process; later calls return the first).
 * The sampler, exporter, endpoint and protocol come from `OTEL_*` unless `spanProcessors` is
 * given; `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` win over the defaults here.
 */
export async function startTracing(options: TracingOptions): Promise<Tracing> {
  if (running) return running;
  const [{ NodeSDK }, resources] = await Promise.all([
    import('@opentelemetry/sdk-node'),
    import('@opentelemetry/resources'),
  ]);
  const instrumentations = options.instrumentations ?? (await defaultInstrumentations());
  const sdk = new NodeSDK({
    resource: resources.defaultResource().merge(
      resources.resourceFromAttributes({
        'service.name': DEFAULT_SERVICE_NAME,
        'service.version': options.version,
        'service.instance.id': options.nodeId,
      }),
    ),
    // No `serviceinstance` detector: the node id is the instance. `env` last, so it wins.
    resourceDetectors: [resources.processDetector, resources.hostDetector, resources.envDetector],
    instrumentations,
    // Metrics are Prometheus (`/metrics`), logs are pino on stdout: only traces go out here.
    metricReaders: [],
    logRecordProcessors: [],
    ...(options.spanProcessors ? { spanProcessors: options.spanProcessors } : {}),
    ...(options.propagator ? { textMapPropagator: options.propagator } : {}),
  });
  sdk.start();
  applyPatchesToEsm();
  // The SDK's provider behind the API's proxy: it has the `forceFlush` the proxy lacks.
  const api = await import('@opentelemetry/api');
  const global = api.trace.getTracerProvider();
  const provider = (global instanceof api.ProxyTracerProvider ? global.getDelegate() : global) as {
    forceFlush?: () => Promise<void>;
  };
  running = {
    forceFlush: async () => {
      await provider.forceFlush?.();
    },
    shutdown: () => sdk.shutdown(),
  };
  return running;
}

/**
 * HTTP (incoming requests but health checks and metrics scrapes, outgoing ones only inside a
 * traced request), undici (`fetch`, the backend's access checks among them; likewise) and ioredis
 * (likewise): no other module is patched.
 */
async function defaultInstrumentations(): Promise<Instrumentation[]> {
  const [{ HttpInstrumentation }, { UndiciInstrumentation }, { IORedisInstrumentation }] = await Promise.all([
    import('@opentelemetry/instrumentation-http'),
    import('@opentelemetry/instrumentation-undici'),
    import('@opentelemetry/instrumentation-ioredis'),
  ]);
  return [
    new HttpInstrumentation({
      ignoreIncomingRequestHook: (request) => /^\/(health|metrics)\b/.test(request.url ?? ''),
      requireParentforOutgoingSpans: true,
    }),
    new UndiciInstrumentation({ requireParentforSpans: true }),
    // The command name only: the publish script's arguments are message frames (chat text).
    new IORedisInstrumentation({ requireParentSpan: true, dbStatementSerializer: (command) => command }),
  ];
}

/**
 * The instrumentations patch modules as `require` loads them. The application is ESM: loading
 * the patched CommonJS modules once here (their prototypes are shared with every later `import`)
 * and syncing the built-ins' ESM exports makes the patches reach it without a loader hook that
 * would intercept every module.
 */
function applyPatchesToEsm(): void {
  const require = createRequire(import.meta.url);
  for (const name of ['node:http', 'node:https', 'ioredis']) require(name);
  syncBuiltinESMExports();
}
