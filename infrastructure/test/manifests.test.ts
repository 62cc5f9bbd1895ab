/**
 * The deploy artefacts in infrastructure/ against the real tools that consume them and the node
 * that runs behind them: nginx -t accepts the load balancer config; the Kubernetes manifests (base
 * and production overlay) validate as their kinds with kubernetes-models; the Dockerfile parses
 * with dockerfile-ast; the compose file parses. Every probe path, port, signal and timing in them
 * is checked against the config schema (loadConfig on the very environment each artefact gives
 * the node) and against a running node: each probe path answers what the probe expects, the
 * Dockerfile's HEALTHCHECK command passes against it, SIGTERM to node as PID 1 (the Dockerfile's
 * exec-form ENTRYPOINT) drains it, and X-Forwarded-For through nginx reaches a node that trusts
 * only nginx.
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DockerfileParser, type Instruction } from 'dockerfile-ast';
import { ConfigMap, Secret, Service } from 'kubernetes-models/v1';
import { Deployment } from 'kubernetes-models/apps/v1';
import { Ingress } from 'kubernetes-models/networking.k8s.io/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import { PriorityClass } from 'kubernetes-models/scheduling.k8s.io/v1';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { parse as parseYaml } from 'yaml';
import { loadConfig, type Config } from '../../signaling/src/config.js';
import { eventually } from '../../test-support/async.js';
import { freePort, spawnNode, type ChildNode } from '../../test-support/child-node.js';
import { ADMIN_TOKEN, TEST_SECRET, testToken } from '../../test-support/harness.js';
import {
  NGINX_TEMPLATE,
  TestNginx,
  nginxConfigTest,
  nginxDir,
  upstreamLines,
  writeNginxConfig,
} from '../../test-support/nginx.js';
import { kustomizeBuild, readYamlDocuments, type KubeObject } from './kustomize.js';

const ROOT = join(import.meta.dirname, '..', '..');
const INFRA = join(ROOT, 'infrastructure');
const run = promisify(execFile);

/** The schema's defaults (nothing set). */
const DEFAULTS = loadConfig({});

// --------------------------------------------------------------------------------------------
// Kubernetes

const MODELS: Readonly<Record<string, new (data: never) => { validate(): void }>> = {
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'apps/v1/Deployment': Deployment,
  'networking.k8s.io/v1/Ingress': Ingress,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'scheduling.k8s.io/v1/PriorityClass': PriorityClass,
};

interface Probe {
  httpGet: { path: string; port: string | number };
  periodSeconds: number;
  failureThreshold: number;
  timeoutSeconds: number;
}

interface PodContainer {
  name: string;
  image: string;
  env: { name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[];
  envFrom: { configMapRef?: { name: string }; secretRef?: { name: string } }[];
  ports: { name?: string; containerPort: number; hostPort?: number; protocol?: string }[];
  startupProbe: Probe;
  readinessProbe: Probe;
  livenessProbe: Probe;
  lifecycle: { preStop: { exec?: { command: string[] }; sleep?: { seconds: number } } };
  resources: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext: Record<string, unknown> & { capabilities?: { drop?: string[] } };
}

interface PodSpec {
  terminationGracePeriodSeconds: number;
  securityContext: Record<string, unknown>;
  affinity?: { podAntiAffinity?: Record<string, unknown> };
  containers: PodContainer[];
}

function find(objects: readonly KubeObject[], kind: string, name = 'trading-room'): KubeObject {
  const o = objects.find((x) => x.kind === kind && x.metadata.name === name);
  if (!o) throw new Error(`no ${kind}/${name}`);
  return o;
}

function podSpecOf(objects: readonly KubeObject[]): PodSpec {
  return (find(objects, 'Deployment').spec as { template: { spec: PodSpec } }).template.spec;
}

/** Seconds the preStop hook holds the pod before SIGTERM. */
function preStopSeconds(c: PodContainer): number {
  const { exec, sleep } = c.lifecycle.preStop;
  if (sleep) return sleep.seconds;
  const [command, seconds] = exec?.command ?? [];
  if (command !== 'sleep' || !/^\d+$/.test(seconds ?? '')) throw new Error('preStop must sleep N seconds');
  return Number(seconds);
}

/**
 * The environment the node container gets: its ConfigMaps and Secrets (the example Secret stands
 * in for the real one) in envFrom order, then `env` (downward API fields given sample values).
 */
function containerEnv(objects: readonly KubeObject[], c: PodContainer): Record<string, string> {
  const secrets = [...objects, ...(readYamlDocuments(join(INFRA, 'k8s/base/secret.example.yaml')) as KubeObject[])];
  const env: Record<string, string> = {};
  for (const from of c.envFrom) {
    if (from.configMapRef) Object.assign(env, find(objects, 'ConfigMap', from.configMapRef.name).data);
    if (from.secretRef) Object.assign(env, find(secrets, 'Secret', from.secretRef.name).stringData);
  }
  const sample: Record<string, string> = {
    'metadata.name': 'trading-room-5d8f7c9b6-x2x9k',
    'status.hostIP': '10.1.2.3',
  };
  for (const e of c.env) {
    const field = e.valueFrom?.fieldRef?.fieldPath;
    env[e.name] = e.value ?? (field ? (sample[field] ?? '') : '');
  }
  return env;
}

function nodeContainer(objects: readonly KubeObject[]): PodContainer {
  const c = podSpecOf(objects).containers.find((x) => x.name === 'node');
  if (!c) throw new Error('no container "node"');
  return c;
}

/** The port number a probe's named (or numbered) port refers to. */
function probePort(c: PodContainer, probe: Probe): number {
  const { port } = probe.httpGet;
  if (typeof port === 'number') return port;
  const named = c.ports.find((p) => p.name === port);
  if (!named) throw new Error(`probe port ${port} is not a container port`);
  return named.containerPort;
}

/** Every worker's WebRTC port (base + i) for a configuration and worker count. */
function rtcPorts(config: Config, workers: number): number[] {
  return Array.from({ length: workers }, (_, i) => config.media.rtcBasePort + i);
}

const LAYOUTS = { base: join(INFRA, 'k8s/base'), production: join(INFRA, 'k8s/overlays/production') } as const;

describe('Kubernetes manifests', () => {
  for (const [layout, dir] of Object.entries(LAYOUTS)) {
    describe(layout, () => {
      const objects = kustomizeBuild(dir);
      const c = nodeContainer(objects);
      const pod = podSpecOf(objects);
      const env = containerEnv(objects, c);
      const config = loadConfig(env);

      it('every object validates as its kind (kubernetes-models)', () => {
        const kinds = objects.map((o) => `${o.apiVersion}/${o.kind}`);
        expect(kinds).toEqual(expect.arrayContaining(Object.keys(MODELS).filter((k) => !/Secret|Priority/.test(k))));
        for (const o of objects) {
          const Model = MODELS[`${o.apiVersion}/${o.kind}`];
          expect(Model, `a model for ${o.apiVersion}/${o.kind}`).toBeDefined();
          if (Model) expect(() => new Model(o as never).validate(), `${o.kind}/${o.metadata.name}`).not.toThrow();
        }
      });

      it('the container environment is a valid node configuration', () => {
        expect(config.env).toBe('production');
        expect(config.redis, 'Redis is configured').toBeDefined();
        expect(config.nodeId).toBe(env.NODE_ID);
        expect(config.media.announcedAddress).toBe('10.1.2.3');
      });

      it('probes are separate, on the node’s paths and port; timings fit the drain', () => {
        const http = c.ports.find((p) => p.name === 'http');
        expect(http?.containerPort).toBe(config.port);
        expect(c.startupProbe.httpGet.path).toBe('/health/startup');
        expect(c.readinessProbe.httpGet.path).toBe('/health/ready');
        expect(c.livenessProbe.httpGet.path).toBe('/health/live');
        for (const probe of [c.startupProbe, c.readinessProbe, c.livenessProbe]) {
          expect(probePort(c, probe)).toBe(config.port);
        }
        // The grace period covers preStop, the whole drain window and the shutdown after it.
        const preStop = preStopSeconds(c);
        expect(preStop).toBeGreaterThanOrEqual(c.readinessProbe.periodSeconds);
        expect(pod.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(preStop + config.drainTimeoutMs / 1000 + 5);
        // Liveness never fires during a drain: it stays 200 then, and it gives slow loops time.
        expect(c.livenessProbe.periodSeconds * c.livenessProbe.failureThreshold).toBeGreaterThanOrEqual(20);
      });

      it('runs as non-root on a read-only root filesystem without capabilities', () => {
        expect(pod.securityContext).toMatchObject({ runAsNonRoot: true });
        expect(pod.securityContext.runAsUser).not.toBe(0);
        expect(c.securityContext).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true });
        expect(c.securityContext.capabilities?.drop).toEqual(['ALL']);
        expect(c.resources.requests?.cpu).toBeDefined();
        expect(c.resources.requests?.memory).toBeDefined();
        expect(c.resources.limits?.memory).toBeDefined();
        expect(pod.affinity?.podAntiAffinity).toBeDefined();
      });

      it('exposes every worker’s WebRTC port, UDP and TCP, on the host; announces the node’s IP', () => {
        const workers = config.media.numWorkers;
        expect(workers, 'MEDIASOUP_NUM_WORKERS is set, so the ports are known').toBeDefined();
        for (const port of rtcPorts(config, workers ?? 0)) {
          for (const protocol of ['UDP', 'TCP']) {
            expect(c.ports, `${port}/${protocol}`).toContainEqual(
              expect.objectContaining({ containerPort: port, hostPort: port, protocol }),
            );
          }
        }
        expect(config.media.listenIp).toBe('0.0.0.0');
        expect(c.env).toContainEqual({
          name: 'RTC_ANNOUNCED_ADDRESS',
          valueFrom: { fieldRef: { fieldPath: 'status.hostIP' } },
        });
      });

      it('Service, Ingress, PDB and HPA point at the Deployment’s pods and port', () => {
        const labels = (
          find(objects, 'Deployment').spec as { template: { metadata: { labels: Record<string, string> } } }
        ).template.metadata.labels;
        const service = find(objects, 'Service').spec as {
          selector: Record<string, string>;
          ports: { targetPort: string }[];
        };
        expect(labels).toMatchObject(service.selector);
        expect(service.ports[0]?.targetPort).toBe('http');
        const pdb = find(objects, 'PodDisruptionBudget').spec as { selector: { matchLabels: Record<string, string> } };
        expect(labels).toMatchObject(pdb.selector.matchLabels);
        const ingress = find(objects, 'Ingress');
        const annotations = ingress.metadata.annotations as Record<string, string>;
        expect(Number(annotations['nginx.ingress.kubernetes.io/proxy-read-timeout']) * 1000).toBeGreaterThan(
          2 * config.heartbeatIntervalMs,
        );
        expect(annotations['nginx.ingress.kubernetes.io/upstream-hash-by']).toBe('$arg_room');
        expect(annotations['nginx.ingress.kubernetes.io/proxy-next-upstream']).toContain('http_503');
        const paths = (ingress.spec as { rules: { http: { paths: { path: string }[] } }[] }).rules.flatMap((r) =>
          r.http.paths.map((p) => p.path),
        );
        expect(paths).toContain('/ws');
        const hpa = find(objects, 'HorizontalPodAutoscaler').spec as {
          scaleTargetRef: { name: string };
          metrics: { type: string; resource?: { name: string }; pods?: { metric: { name: string } } }[];
        };
        expect(hpa.scaleTargetRef.name).toBe('trading-room');
        expect(hpa.metrics.map((m) => m.resource?.name ?? m.pods?.metric.name)).toEqual([
          'cpu',
          'trading_room_connections',
        ]);
      });
    });
  }

  it('the production overlay patches what it says: Sentinel, image, replicas, resources, TLS', () => {
    const objects = kustomizeBuild(LAYOUTS.production);
    const c = nodeContainer(objects);
    const config = loadConfig(containerEnv(objects, c));
    expect(config.redis).toMatchObject({ mode: 'sentinel', name: 'mymaster' });
    expect(c.image).toBe('registry.example.com/trading-room:0.1.0');
    expect(c.resources.requests?.cpu).toBe('3');
    expect(c.readinessProbe.httpGet.path, 'the merge keeps the base’s probes').toBe('/health/ready');
    expect((find(objects, 'Deployment').spec as { replicas: number }).replicas).toBe(4);
    expect(
      objects.filter((o) => o.kind !== 'PriorityClass').every((o) => o.metadata.namespace === 'trading-room'),
    ).toBe(true);
    expect((find(objects, 'Ingress').spec as { tls: unknown[] }).tls).toHaveLength(1);
  });

  it('the Prometheus Kubernetes scrape job finds the production pods and their metrics port', () => {
    const objects = kustomizeBuild(LAYOUTS.production);
    const template = (
      find(objects, 'Deployment').spec as {
        template: { metadata: { labels: Record<string, string>; annotations: Record<string, string> } };
      }
    ).template.metadata;
    const job = (
      readYamlDocuments(join(INFRA, 'prometheus/kubernetes-sd.yml'))[0] as {
        scrape_configs: {
          kubernetes_sd_configs: { namespaces: { names: string[] } }[];
          relabel_configs: { source_labels?: string[]; regex?: string; action?: string }[];
        }[];
      }
    ).scrape_configs[0];
    expect(job?.kubernetes_sd_configs[0]?.namespaces.names).toContain(find(objects, 'Deployment').metadata.namespace);
    const keep = (label: string): string | undefined =>
      job?.relabel_configs.find((r) => r.action === 'keep' && r.source_labels?.[0] === label)?.regex;
    expect(keep('__meta_kubernetes_pod_label_app_kubernetes_io_name')).toBe(template.labels['app.kubernetes.io/name']);
    expect(keep('__meta_kubernetes_pod_annotation_prometheus_io_scrape')).toBe(
      template.annotations['prometheus.io/scrape'],
    );
    const config = loadConfig(containerEnv(objects, nodeContainer(objects)));
    expect(Number(template.annotations['prometheus.io/port'])).toBe(config.port);
    expect(template.annotations['prometheus.io/path']).toBe('/metrics');
  });

  it('the Redis examples are valid Sentinel and Cluster configurations', () => {
    const base = containerEnv(kustomizeBuild(LAYOUTS.base), nodeContainer(kustomizeBuild(LAYOUTS.base)));
    const sentinel = readYamlDocuments(join(INFRA, 'k8s/examples/redis-sentinel.yaml'))[0] as ConfigMap;
    const cluster = readYamlDocuments(join(INFRA, 'k8s/examples/redis-cluster.yaml'))[0] as ConfigMap;
    for (const example of [sentinel, cluster]) new ConfigMap(example).validate();
    expect(loadConfig({ ...base, ...sentinel.data }).redis).toMatchObject({ mode: 'sentinel' });
    expect(loadConfig({ ...base, ...cluster.data }).redis).toMatchObject({ mode: 'cluster' });
    const adapter = readYamlDocuments(join(INFRA, 'k8s/examples/prometheus-adapter-rules.yaml'))[0] as ConfigMap;
    new ConfigMap(adapter).validate();
    const rules = parseYaml(adapter.data?.['config.yaml'] ?? '') as { rules: { name: { as: string } }[] };
    expect(rules.rules.map((r) => r.name.as)).toContain('trading_room_connections');
  });
});

// --------------------------------------------------------------------------------------------
// Dockerfile

const DOCKERFILE = join(INFRA, 'docker/Dockerfile');

/** The instructions of the final stage (after the last FROM). */
function runtimeStage(): Instruction[] {
  const all = DockerfileParser.parse(readFileSync(DOCKERFILE, 'utf8')).getInstructions();
  const lastFrom = all.map((i) => i.getKeyword()).lastIndexOf('FROM');
  return all.slice(lastFrom);
}

function instruction(stage: Instruction[], keyword: string): Instruction {
  const found = stage.filter((i) => i.getKeyword() === keyword);
  expect(found, keyword).toHaveLength(1);
  return found[0] as Instruction;
}

/** The exec-form JSON array after `prefix` in an instruction's arguments. */
function execForm(i: Instruction, prefix = ''): string[] {
  const text = (i.getArgumentsContent() ?? '').replace(/\\\n/g, ' ');
  const start = text.indexOf('[', text.indexOf(prefix) + prefix.length);
  return JSON.parse(text.slice(start)) as string[];
}

/** The runtime image's ENV, as the node sees it. */
function imageEnv(stage: Instruction[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const i of stage.filter((x) => x.getKeyword() === 'ENV')) {
    for (const p of (
      i as unknown as { getProperties(): { getName(): string; getValue(): string | null }[] }
    ).getProperties()) {
      env[p.getName()] = p.getValue() ?? '';
    }
  }
  return env;
}

/** EXPOSE entries as `port/protocol`, ranges expanded. */
function exposed(stage: Instruction[]): Set<string> {
  const out = new Set<string>();
  for (const arg of instruction(stage, 'EXPOSE').getArguments()) {
    const m = /^(\d+)(?:-(\d+))?(?:\/(tcp|udp))?$/.exec(arg.getValue());
    if (!m) throw new Error(`EXPOSE ${arg.getValue()}`);
    for (let p = Number(m[1]); p <= Number(m[2] ?? m[1]); p++) out.add(`${p}/${m[3] ?? 'tcp'}`);
  }
  return out;
}

describe('Dockerfile', () => {
  const stage = runtimeStage();
  const env = imageEnv(stage);
  const config = loadConfig({ ...env, SIGNALING_JWT_SECRET: TEST_SECRET });

  it('parses; multi-stage on Node 24 slim; the runtime stage runs the build’s entry point as a non-root user', () => {
    const froms = DockerfileParser.parse(readFileSync(DOCKERFILE, 'utf8')).getFROMs();
    expect(froms.length).toBeGreaterThanOrEqual(2);
    expect(readFileSync(DOCKERFILE, 'utf8')).toMatch(/ARG NODE_IMAGE=node:24-[a-z]+-slim/);
    const user = instruction(stage, 'USER').getArgumentsContent() ?? '';
    expect(user.split(':')[0]).not.toMatch(/^(root|0)$/);
    expect(user).toMatch(/^\d+:\d+$/); // numeric: runAsNonRoot can verify it
    const [binary, ...args] = execForm(instruction(stage, 'ENTRYPOINT'));
    expect(binary).toBe('node');
    // tsc's outDir (dist) + rootDir (.) maps signaling/src/main.ts to dist/signaling/src/main.js;
    // every file the entry point names (the script, `--import` preloads) is one tsc emits.
    const tsconfig = JSON.parse(readFileSync(join(ROOT, 'tsconfig.json'), 'utf8')) as {
      compilerOptions: { outDir: string };
    };
    const outDir = `${tsconfig.compilerOptions.outDir}/`;
    expect(args.at(-1)).toBe(`${outDir}signaling/src/main.js`);
    const files = args.filter((_, i) => i === args.length - 1 || args[i - 1] === '--import');
    for (const file of files) {
      const source = file.replace(/^\.\//, '').replace(outDir, '').replace(/\.js$/, '.ts');
      expect(existsSync(join(ROOT, source)), `${file} is built from ${source}`).toBe(true);
    }
    expect(instruction(stage, 'STOPSIGNAL').getArgumentsContent()).toBe('SIGTERM');
    // The same command as `npm start` (which only adds the project's Node on PATH).
    const start = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: { start: string } })
      .scripts.start;
    expect([binary, ...args].join(' ')).toBe(start.replace(/^scripts\/with-node\.sh /, ''));
  });

  it('has the build argument for the offline worker build, naming the script it runs', () => {
    const text = readFileSync(DOCKERFILE, 'utf8');
    expect(text).toMatch(/ARG MEDIASOUP_WORKER=prebuilt/);
    expect(text).toContain('scripts/setup-mediasoup-worker.sh --offline');
    expect(existsSync(join(ROOT, 'scripts/setup-mediasoup-worker.sh'))).toBe(true);
  });

  it('exposes the node’s HTTP port and every worker’s WebRTC port (UDP and TCP) for its configuration', () => {
    expect(config.port).toBe(DEFAULTS.port);
    expect(config.media.rtcBasePort).toBe(DEFAULTS.media.rtcBasePort);
    expect(config.media.listenIp).toBe('0.0.0.0');
    const ports = exposed(stage);
    const expected = [`${config.port}/tcp`];
    for (const p of rtcPorts(config, config.media.numWorkers ?? 0)) expected.push(`${p}/udp`, `${p}/tcp`);
    expect(config.media.numWorkers).toBeGreaterThan(0);
    expect([...ports].sort()).toEqual(expected.sort());
  });

  it('.dockerignore keeps local builds, modules and secrets out of the context', () => {
    const ignored = readFileSync(join(ROOT, '.dockerignore'), 'utf8').split('\n');
    for (const entry of ['.git', '**/node_modules', '**/dist', '.local', '.env']) expect(ignored).toContain(entry);
    // …but not what the build stage copies.
    for (const copied of ['package.json', 'package-lock.json', 'scripts', 'signaling', 'sfu', 'tsconfig.json']) {
      expect(ignored).not.toContain(copied);
    }
  });
});

// --------------------------------------------------------------------------------------------
// compose

interface ComposeService {
  image?: string;
  environment?: Record<string, string>;
  ports?: string[];
  volumes?: string[];
  stop_grace_period?: string;
  stop_signal?: string;
  networks?: Record<string, { ipv4_address?: string }> | string[];
  depends_on?: Record<string, { condition: string }>;
  command?: string[];
}

/** A compose duration (`35s`, `1m30s`) in ms. */
function durationMs(value: string): number {
  let ms = 0;
  for (const [, n, unit] of value.matchAll(/(\d+)(ms|s|m|h)/g)) {
    ms += Number(n) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[unit as 'ms' | 's' | 'm' | 'h'];
  }
  return ms;
}

/** Compose's interpolation for the forms the file uses: `${VAR:-default}` → default. */
function interpolate(value: string): string {
  return value.replace(/\$\{[A-Z0-9_]+:-([^}]*)\}/g, '$1');
}

describe('compose stack', () => {
  const compose = parseYaml(readFileSync(join(INFRA, 'compose.yaml'), 'utf8'), { merge: true }) as {
    services: Record<string, ComposeService>;
  };
  const services = compose.services;
  const nodes = Object.entries(services).filter(([name]) => /^node-\d+$/.test(name));
  const nodeEnv = (s: ComposeService): Record<string, string> =>
    Object.fromEntries(Object.entries(s.environment ?? {}).map(([k, v]) => [k, interpolate(String(v))]));

  it('has Redis, three nodes, nginx, Prometheus, Grafana and a trace collector', () => {
    expect(nodes.map(([name]) => name)).toEqual(['node-1', 'node-2', 'node-3']);
    for (const name of ['redis', 'nginx', 'prometheus', 'grafana', 'jaeger'])
      expect(services[name], name).toBeDefined();
  });

  it('each node’s environment is a valid configuration; grace period above the drain; SIGTERM', () => {
    const ids = new Set<string>();
    for (const [name, s] of nodes) {
      const config = loadConfig(nodeEnv(s));
      ids.add(config.nodeId);
      expect(config.redis, name).toMatchObject({ mode: 'single', url: 'redis://redis:6379' });
      expect(s.stop_signal).toBe('SIGTERM');
      expect(durationMs(s.stop_grace_period ?? '0s'), name).toBeGreaterThanOrEqual(config.drainTimeoutMs + 5000);
      // Traces go to a service of the stack.
      expect(new URL(config.telemetry.otlpEndpoint ?? '').hostname).toBe('jaeger');
    }
    expect(ids.size).toBe(3);
  });

  it('each node publishes its own WebRTC ports on the same host ports, UDP and TCP', () => {
    const published = new Set<string>();
    for (const [name, s] of nodes) {
      const config = loadConfig(nodeEnv(s));
      const ports = rtcPorts(config, config.media.numWorkers ?? 0);
      const range = `${ports[0]}-${ports.at(-1)}`;
      expect(s.ports, name).toEqual([`${range}:${range}/udp`, `${range}:${range}/tcp`]);
      for (const p of ports) {
        expect(published.has(String(p)), `${p} published twice`).toBe(false);
        published.add(String(p));
      }
    }
  });

  it('nodes trust only nginx’s fixed address; nginx renders the template with the compose upstreams', () => {
    const nginx = services.nginx as ComposeService;
    const address = (nginx.networks as Record<string, { ipv4_address: string }>)['trading-room']?.ipv4_address;
    for (const [, s] of nodes) expect(loadConfig(nodeEnv(s)).trustedProxies).toEqual([address]);
    const env = nginx.environment ?? {};
    const mounts = new Map((nginx.volumes ?? []).map((v) => [v.split(':')[1], v.split(':')[0] as string]));
    expect(mounts.get('/etc/nginx/templates')).toBe('./nginx/templates');
    expect(mounts.get('/etc/nginx/nginx.conf'), 'the main file the tests run').toBe('./nginx/nginx.conf');
    expect(existsSync(join(INFRA, 'nginx/templates/trading-room.conf.template'))).toBe(true);
    const upstreamFile = env.NGINX_UPSTREAMS ?? '';
    const hostDir = mounts.get(upstreamFile.slice(0, upstreamFile.lastIndexOf('/')));
    const upstreams = readFileSync(
      join(INFRA, hostDir ?? '', upstreamFile.slice(upstreamFile.lastIndexOf('/') + 1)),
      'utf8',
    );
    const servers = [...upstreams.matchAll(/^server ([\w-]+):(\d+) /gm)].map((m) => `${m[1]}:${m[2]}`);
    expect(servers).toEqual(nodes.map(([name, s]) => `${name}:${loadConfig(nodeEnv(s)).port}`));
  });

  it('Prometheus scrapes the compose nodes with the rules loaded; Grafana reads that Prometheus and the dashboards', () => {
    const prometheus = services.prometheus as ComposeService & { command: string[] };
    const mounts = new Map((prometheus.volumes ?? []).map((v) => [v.split(':')[1], v.split(':')[0] as string]));
    const configFlag = prometheus.command.find((a) => a.startsWith('--config.file='))?.split('=')[1] ?? '';
    const configDir = configFlag.slice(0, configFlag.lastIndexOf('/'));
    const hostDir = join(INFRA, mounts.get(configDir) ?? 'missing');
    const config = parseYaml(readFileSync(join(hostDir, configFlag.slice(configDir.length + 1)), 'utf8')) as {
      rule_files: string[];
      scrape_configs: { metrics_path?: string; static_configs: { targets: string[] }[] }[];
    };
    for (const file of config.rule_files) expect(existsSync(join(hostDir, file)), file).toBe(true);
    const job = config.scrape_configs[0];
    expect(job?.metrics_path ?? '/metrics').toBe('/metrics');
    expect(job?.static_configs.flatMap((c) => c.targets)).toEqual(
      nodes.map(([name, s]) => `${name}:${loadConfig(nodeEnv(s)).port}`),
    );

    const grafana = services.grafana as ComposeService;
    const gMounts = new Map((grafana.volumes ?? []).map((v) => [v.split(':')[1], v.split(':')[0] as string]));
    const provisioning = join(INFRA, gMounts.get('/etc/grafana/provisioning') ?? 'missing');
    const datasource = readYamlDocuments(join(provisioning, 'datasources/prometheus.yml'))[0] as {
      datasources: { url: string }[];
    };
    const port = /--web\.listen-address=:(\d+)/.exec(prometheus.command.join(' '))?.[1] ?? '9090';
    expect(datasource.datasources[0]?.url).toBe(`http://prometheus:${port}`);
    const dashboards = readYamlDocuments(join(provisioning, 'dashboards/trading-room.yml'))[0] as {
      providers: { options: { path: string } }[];
    };
    const dashboardDir = gMounts.get(dashboards.providers[0]?.options.path ?? 'missing');
    expect(dashboardDir, 'the provisioned dashboard folder is mounted').toBeDefined();
    expect(existsSync(join(INFRA, dashboardDir ?? '', 'trading-room.json'))).toBe(true);
  });

  it('every mounted host path exists', () => {
    for (const [name, s] of Object.entries(services)) {
      for (const volume of s.volumes ?? []) {
        const host = volume.split(':')[0] ?? '';
        if (host.startsWith('.')) expect(existsSync(join(INFRA, host)), `${name}: ${host}`).toBe(true);
      }
    }
  });
});

// --------------------------------------------------------------------------------------------
// nginx

describe('nginx load balancer config', () => {
  const dirs: string[] = [];
  afterAll(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });
  const tempDir = (): string => {
    const dir = nginxDir();
    dirs.push(dir);
    return dir;
  };

  it('nginx -t accepts the template rendered with loopback upstreams', async () => {
    const dir = tempDir();
    const upstreams = upstreamLines([{ port: 18081 }, { port: 18082 }, { port: 18083 }]);
    const output = await nginxConfigTest(dir, writeNginxConfig(dir, { port: await freePort(), upstreams }));
    expect(output).toMatch(/syntax is ok/);
    expect(output).toMatch(/test is successful/);
  });

  it('nginx -t accepts the compose stack’s upstream file (its service names read as loopback)', async () => {
    const dir = tempDir();
    const compose = readFileSync(join(INFRA, 'nginx/upstreams/compose.conf'), 'utf8');
    const upstreams = compose.replace(/^server node-\d+:/gm, 'server 127.0.0.1:');
    expect(upstreams).not.toBe(compose);
    await nginxConfigTest(dir, writeNginxConfig(dir, { port: await freePort(), upstreams }));
  });

  it('nginx -t refuses a broken rendering (the check can fail)', async () => {
    const dir = tempDir();
    const config = writeNginxConfig(dir, { port: await freePort(), upstreams: 'server 127.0.0.1:1 max_fails=;\n' });
    await expect(nginxConfigTest(dir, config)).rejects.toThrow(/refused/);
  });

  it('upgrades WebSockets, hashes on the room, keeps sockets past the heartbeat, retries refusals', () => {
    const text = readFileSync(NGINX_TEMPLATE, 'utf8');
    expect(text).toMatch(/hash \$arg_room consistent;/);
    expect(text).toMatch(/proxy_set_header Upgrade \$http_upgrade;/);
    expect(text).toMatch(/proxy_set_header Connection \$trading_room_connection;/);
    expect(text).toMatch(/proxy_next_upstream [^;]*http_503/);
    expect(text).toMatch(/proxy_set_header X-Forwarded-For \$remote_addr;/);
    const read = /location = \/ws \{[^}]*proxy_read_timeout (\d+)s;/.exec(text);
    expect(Number(read?.[1]) * 1000).toBeGreaterThan(2 * DEFAULTS.heartbeatIntervalMs);
    expect(readFileSync(join(INFRA, 'nginx/upstreams/compose.conf'), 'utf8')).toMatch(
      /max_fails=\d+ fail_timeout=\d+s/,
    );
  });
});

// --------------------------------------------------------------------------------------------
// Against running nodes

describe('against a running node', { timeout: 60_000 }, () => {
  let node: ChildNode;
  const objects = kustomizeBuild(LAYOUTS.base);
  const c = nodeContainer(objects);
  const k8sEnv = containerEnv(objects, c);
  beforeAll(async () => {
    // The manifests' environment, minus what only the cluster has (Redis, the pod's address).
    const { REDIS_URL: _redis, HOST: _host, PORT: _port, ...env } = k8sEnv;
    node = await spawnNode({
      ...env,
      NODE_ENV: 'production',
      MEDIA_ENABLED: 'true',
      SIGNALING_ADMIN_TOKEN: ADMIN_TOKEN,
      SIGNALING_JWT_SECRET: TEST_SECRET,
      RTC_ANNOUNCED_ADDRESS: '127.0.0.1',
    });
  }, 60_000);
  afterAll(async () => {
    await node?.kill();
  });

  it('every probe path answers 200 while running; readiness 503 and liveness 200 once draining', async () => {
    for (const probe of [c.startupProbe, c.readinessProbe, c.livenessProbe]) {
      expect((await node.http(probe.httpGet.path)).status, probe.httpGet.path).toBe(200);
    }
    // The Dockerfile's HEALTHCHECK command, run as Docker would (PORT from the image's ENV).
    const [, ...check] = execForm(instruction(runtimeStage(), 'HEALTHCHECK'), 'CMD');
    await run(process.execPath, check, { env: { PORT: String(node.port) } });
    await expect(run(process.execPath, check, { env: { PORT: String(await freePort()) } })).rejects.toThrow();

    const health = (await node.health()) as { media: { state: string; ports: { udp: number; tcp: number }[] } };
    const config = loadConfig(k8sEnv);
    // Worker i listens on base + i (+ k × workers when another node on this machine took it).
    expect(health.media.state).toBe('ok');
    expect(health.media.ports).toHaveLength(config.media.numWorkers ?? 0);
    for (const [i, ports] of health.media.ports.entries()) {
      for (const port of [ports.udp, ports.tcp]) {
        expect((port - config.media.rtcBasePort - i) % (config.media.numWorkers ?? 1), `worker ${i}: ${port}`).toBe(0);
      }
    }

    // A connected client keeps the drain going (with none the node would exit at once).
    const ws = new WebSocket(`ws://127.0.0.1:${node.port}/ws?token=${await testToken('probe-client')}`);
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    // The HPA's custom metric (through the Prometheus Adapter) is a series the node serves.
    const adapter = readYamlDocuments(join(INFRA, 'k8s/examples/prometheus-adapter-rules.yaml'))[0] as ConfigMap;
    const rules = parseYaml(adapter.data?.['config.yaml'] ?? '') as { rules: { seriesQuery: string }[] };
    const series = /^(\w+)\{/.exec(rules.rules[0]?.seriesQuery ?? '')?.[1] ?? '';
    expect(await node.metric(series), series).toBeDefined();

    expect((await node.http('/admin/drain', { method: 'POST', admin: true })).status).toBe(202);
    expect((await node.http(c.readinessProbe.httpGet.path)).status).toBe(503);
    expect((await node.http(c.livenessProbe.httpGet.path)).status).toBe(200);
    expect((await node.http(c.startupProbe.httpGet.path)).status).toBe(200);
    ws.terminate();
  });
});

describe('signals', { timeout: 60_000 }, () => {
  it('node as PID 1 (the Dockerfile’s exec-form ENTRYPOINT) drains on the image’s STOPSIGNAL and exits 0', async () => {
    const signal = instruction(runtimeStage(), 'STOPSIGNAL').getArgumentsContent() as NodeJS.Signals;
    const port = await freePort();
    // A new PID namespace: node is its PID 1, as in a container without --init.
    const child = spawn(
      'unshare',
      ['--pid', '--fork', '--kill-child', process.execPath, '--import', 'tsx', 'signaling/src/main.ts'],
      {
        cwd: ROOT,
        env: {
          PATH: process.env.PATH ?? '',
          HOME: process.env.HOME ?? '/tmp',
          NODE_ENV: 'production',
          HOST: '127.0.0.1',
          PORT: String(port),
          MEDIA_ENABLED: 'false',
          SIGNALING_JWT_SECRET: TEST_SECRET,
          DRAIN_TIMEOUT_MS: String(DEFAULTS.drainTimeoutMs),
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (output += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (output += d));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      await eventually(
        async () => (await fetch(`http://127.0.0.1:${port}/health/ready`).catch(() => undefined))?.status === 200,
        30_000,
        'the node to be ready',
      );
      // The node's host PID: unshare's only child.
      const children = readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(/\s+/);
      expect(children).toHaveLength(1);
      const pid = Number(children[0]);
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      expect(/^NSpid:\s+\d+\s+(\d+)$/m.exec(status)?.[1], 'node is PID 1 in its namespace').toBe('1');

      // A client is connected when the signal comes: it is told to move.
      const ws = new WebSocket(`ws://127.0.0.1:${port}/ws?token=${await testToken('pid1-client')}`);
      const frames: string[] = [];
      ws.on('message', (data) => frames.push(String(data)));
      await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
      ws.send(JSON.stringify({ id: 1, method: 'room.join', data: {} }));
      await eventually(() => frames.some((f) => f.includes('"id":1')), 10_000, 'the join');

      process.kill(pid, signal);
      await eventually(() => frames.some((f) => f.includes('"server.draining"')), 10_000, 'server.draining');
      expect((await fetch(`http://127.0.0.1:${port}/health/ready`)).status).toBe(503);
      ws.close();
      expect(await exited, output).toBe(0);
      expect(output).toMatch(/signal received: draining/);
    } finally {
      child.kill('SIGKILL');
    }
  });
});

// --------------------------------------------------------------------------------------------
// X-Forwarded-For through nginx

describe('X-Forwarded-For through nginx', { timeout: 60_000 }, () => {
  let node: ChildNode;
  let nginx: TestNginx;
  beforeAll(async () => {
    // The node trusts only nginx (which connects from 127.0.0.1) and allows 2 upgrades per IP.
    node = await spawnNode({
      TRUSTED_PROXIES: '127.0.0.1',
      RATE_LIMIT_IP_CONNECTIONS: '2',
      RATE_LIMIT_IP_WINDOW_MS: '60000',
    });
    nginx = await TestNginx.start([{ port: node.port }]);
  }, 60_000);
  afterAll(async () => {
    await nginx?.close();
    await node?.kill();
  });

  /** One upgrade through nginx from `localAddress`; resolves with 101 or the refusal's status. */
  async function upgrade(localAddress: string, userId: string, headers: Record<string, string> = {}): Promise<number> {
    const ws = new WebSocket(`${nginx.wsUrl('xff')}&token=${await testToken(userId)}`, { localAddress, headers });
    return new Promise((resolve, reject) => {
      ws.once('open', () => {
        ws.close();
        resolve(101);
      });
      ws.once('unexpected-response', (_request, response) => {
        response.resume();
        resolve(response.statusCode ?? 0);
        ws.terminate();
      });
      ws.once('error', reject);
    });
  }

  it('the node limits each client address separately, and a client cannot forge its address', async () => {
    // Client A (127.0.0.2) uses up its two upgrades, the second with a forged header.
    expect(await upgrade('127.0.0.2', 'xff-a1')).toBe(101);
    expect(await upgrade('127.0.0.2', 'xff-a2', { 'X-Forwarded-For': '127.0.0.77' })).toBe(101);
    expect(await upgrade('127.0.0.2', 'xff-a3', { 'X-Forwarded-For': '127.0.0.78' })).toBe(429);
    // Client B (127.0.0.3) is someone else to the node, although every socket comes from nginx.
    expect(await upgrade('127.0.0.3', 'xff-b1')).toBe(101);
    // nginx passed all four on (the refusal is the node's, not nginx's).
    await eventually(() => nginx.accessLog().length === 4, 10_000, 'four access-log lines');
    expect(nginx.accessLog().map((e) => e.upstreamStatuses)).toEqual([['101'], ['101'], ['429'], ['101']]);
  });
});

// --------------------------------------------------------------------------------------------
// Readiness through nginx's passive checks

describe('a draining node behind nginx (passive health checks)', { timeout: 60_000 }, () => {
  let nodes: ChildNode[] = [];
  let nginx: TestNginx;
  beforeAll(async () => {
    nodes = await Promise.all([spawnNode(), spawnNode()]);
    nginx = await TestNginx.start(nodes.map((n) => ({ port: n.port })));
  }, 60_000);
  afterAll(async () => {
    await nginx?.close();
    await Promise.all(nodes.map((n) => n.kill()));
  });

  it('nginx stops sending new clients to a node whose readiness turned 503, after one refused attempt', async () => {
    const [draining, serving] = nodes as [ChildNode, ChildNode];
    // A client keeps the draining node alive; then its drain starts (readiness 503).
    const kept = new WebSocket(`${draining.wsUrl}?token=${await testToken('keeps-it-open')}`);
    await new Promise((resolve, reject) => kept.once('open', resolve).once('error', reject));
    expect((await draining.http('/admin/drain', { method: 'POST', admin: true })).status).toBe(202);
    expect((await draining.http('/health/ready')).status).toBe(503);

    // New clients of many rooms (some hash to the draining node) all get in, on the other node.
    const rooms = Array.from({ length: 20 }, (_, i) => `passive-${i}`);
    for (const room of rooms) {
      const ws = new WebSocket(`${nginx.wsUrl(room)}&token=${await testToken(`user-${room}`)}`);
      await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
      ws.close();
    }
    await eventually(() => nginx.accessLog().length >= rooms.length, 10_000, 'the access log');
    const entries = nginx.accessLog();
    const drainingAddress = `127.0.0.1:${draining.port}`;
    const servingAddress = `127.0.0.1:${serving.port}`;
    expect(entries.map((e) => e.upstreams.at(-1))).toEqual(rooms.map(() => servingAddress));
    // The refusal is a failed attempt (max_fails=1): the node leaves the ring for fail_timeout,
    // so exactly one client's upgrade (the first whose room hashes there; with 20 rooms on two
    // nodes some do) was tried there first and retried on the other node; nobody saw it.
    const triedDraining = entries.filter((e) => e.upstreams.includes(drainingAddress));
    expect(triedDraining).toHaveLength(1);
    expect(triedDraining[0]?.upstreamStatuses).toEqual(['503', '101']);
    expect(entries.every((e) => e.status === 101)).toBe(true);
    kept.terminate();
  });
});
