/**
 * Checks the operator's Artillery scenario without Artillery: the YAML has the shape Artillery
 * runs (a target, phases, the processor, scenarios whose steps are functions the processor
 * exports), and the processor's own logic works against a real trading-room node — tokens it
 * mints are accepted, users join, traders' chat reaches the room, a presenter's alert goes
 * out, and when the node drains every user gets `server.draining` and tries to reconnect.
 *
 *   scripts/with-node.sh npx tsx load-tests/artillery/check-processor.ts
 */
import { EventEmitter } from 'node:events';
import { readFileSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { sleep, type ServerProcess } from '../lib/processes.js';
import { writeReport } from '../lib/report.js';
import { BENCH_SECRET, start, tradingRoomTarget } from '../lib/scenario.js';
import { mdTable } from '../lib/summaries.js';

type Step = (context: Context, events: EventEmitter, done: (error?: Error) => void) => void;
interface Context {
  vars: Record<string, unknown>;
}

const HERE = dirname(fileURLToPath(import.meta.url));
const SCENARIO = join(HERE, 'trading-room.yml');
const USERS = 6;
const SESSION_SECONDS = 4;

function fail(message: string): never {
  throw new Error(`artillery scenario check: ${message}`);
}

/** The scenario's structure; returns the processor path and the function steps. */
function checkScenario(): { processor: string; steps: string[] } {
  const doc = parse(readFileSync(SCENARIO, 'utf8')) as {
    config?: { target?: unknown; processor?: unknown; phases?: unknown };
    scenarios?: { name?: unknown; flow?: { function?: unknown }[] }[];
  };
  if (typeof doc.config?.target !== 'string') fail('config.target must be a URL');
  if (typeof doc.config.processor !== 'string') fail('config.processor must name the processor file');
  const processor = join(HERE, doc.config.processor);
  if (!existsSync(processor)) fail(`processor ${doc.config.processor} does not exist`);
  const phases = doc.config.phases;
  if (!Array.isArray(phases) || phases.length === 0) fail('config.phases must list at least one phase');
  for (const phase of phases as Record<string, unknown>[]) {
    if (typeof phase.duration !== 'number' || typeof phase.arrivalRate !== 'number') {
      fail(`phase ${JSON.stringify(phase)} needs a numeric duration and arrivalRate`);
    }
  }
  if (!Array.isArray(doc.scenarios) || doc.scenarios.length === 0) fail('scenarios must not be empty');
  const steps: string[] = [];
  for (const scenario of doc.scenarios) {
    if (!Array.isArray(scenario.flow) || scenario.flow.length === 0)
      fail(`scenario ${String(scenario.name)} has no flow`);
    for (const step of scenario.flow) {
      if (typeof step.function !== 'string')
        fail(`scenario ${String(scenario.name)}: every step is a processor function`);
      steps.push(step.function);
    }
  }
  return { processor, steps };
}

async function main(): Promise<void> {
  const started = Date.now();
  const { processor, steps } = checkScenario();
  const exported = createRequire(import.meta.url)(processor) as Record<string, unknown>;
  for (const name of new Set(steps)) {
    if (typeof exported[name] !== 'function') fail(`the processor does not export ${name}`);
  }
  const fn = (name: string): Step => exported[name] as Step;
  process.stdout.write(`scenario OK: ${steps.length} steps over ${new Set(steps).size} processor functions\n`);

  const server: ServerProcess = await start(tradingRoomTarget('trading-room', { DRAIN_TIMEOUT_MS: '3000' }));
  const counters = new Map<string, number>();
  const events = new EventEmitter();
  events.on('counter', (name: string, value: number) => counters.set(name, (counters.get(name) ?? 0) + value));
  events.on('histogram', (name: string) => counters.set(`${name} samples`, (counters.get(`${name} samples`) ?? 0) + 1));
  const errors: string[] = [];
  try {
    const base = {
      target: `ws://127.0.0.1:${server.port}`,
      TRADING_ROOM_JWT_SECRET: BENCH_SECRET,
      TRADING_ROOM_ROOMS: '1',
      TRADING_ROOM_SESSION_SECONDS: String(SESSION_SECONDS),
    };
    const sessions = Array.from({ length: USERS }, (_, i) => {
      const context: Context = { vars: { ...base } };
      const flow = i === 0 ? ['setPresenter', 'mintToken', 'runSession'] : ['mintToken', 'runSession'];
      return flow.reduce<Promise<void>>(
        (previous, name) =>
          previous.then(
            () => new Promise<void>((resolve, reject) => fn(name)(context, events, (e) => (e ? reject(e) : resolve()))),
          ),
        Promise.resolve(),
      );
    });
    const settled = Promise.allSettled(sessions);
    // Traders chat every 2 s; drain the node halfway through.
    const until = Date.now() + 10_000;
    while ((counters.get('trading_room.joined') ?? 0) < USERS && Date.now() < until) await sleep(50);
    await sleep(1500);
    const drained = await fetch(`http://127.0.0.1:${server.port}/admin/drain`, {
      method: 'POST',
      headers: { authorization: 'Bearer bench-admin-token-0123456789' },
    });
    if (drained.status !== 202) errors.push(`POST /admin/drain answered ${drained.status}`);
    for (const result of await settled) if (result.status === 'rejected') errors.push(String(result.reason));
  } finally {
    await server.stop();
  }
  const count = (name: string): number => counters.get(name) ?? 0;
  const expectations: [string, boolean][] = [
    [`every user joined (${count('trading_room.joined')} of ${USERS})`, count('trading_room.joined') >= USERS],
    ['traders chatted', count('trading_room.chat_sent') >= USERS - 1],
    ['the presenter published an alert', count('trading_room.alert_sent') >= 1],
    ['chat reached the room', count('trading_room.messages_received') >= USERS],
    ['every user saw the drain notice', count('trading_room.drain_notices') >= USERS],
    ['users reconnected after the drain', count('trading_room.reconnects') >= USERS],
    ['no session failed', errors.length === 0],
  ];
  for (const [what, ok] of expectations) process.stdout.write(`  ${ok ? 'ok  ' : 'FAIL'} ${what}\n`);
  const failed = expectations.filter(([, ok]) => !ok).map(([what]) => what);
  const path = writeReport('artillery-check', {
    counters: Object.fromEntries(counters),
    errors,
    verdicts: { processorAgainstANode: failed.length ? `FAIL (${failed.join('; ')})` : 'PASS (every expectation met)' },
    markdown: [
      `The scenario file parses and names only processor functions; ${USERS} users (one presenter) ran the processor's ` +
        `session against a real node for ${SESSION_SECONDS} s, the node drained halfway:`,
      mdTable(
        ['counter', 'value'],
        [...counters].map(([k, v]) => [k, v]),
      ),
    ],
    durationSeconds: Math.round((Date.now() - started) / 1000),
  });
  process.stdout.write(`report: ${path}\n`);
  if (failed.length) {
    process.stderr.write(`failed: ${failed.join('; ')}\n${errors.join('\n')}\n`);
    process.exit(1);
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
