/**
 * Webhooks benchmark: fan-out throughput with webhooks on ÷ off, same clients, same machine, same
 * run. Two nodes (a node alone, in-memory outbox), both with `BACKEND_URL` (the reference receiver,
 * in this process, on the load generator's core: its access check admits every join on both), one
 * also with `BACKEND_WEBHOOK_SECRET`, sending webhooks — the only difference between them. Each
 * has one room of 1,000 joined participants; the presenter sends chat as fast as acknowledged (as
 * `fanout.ts`) and, at the same time, one alert per `CHAT_PER_ALERT` chat messages — each alert a webhook on the node
 * that has them on, so the outbox delivers throughout the measured windows (5 % of the messages
 * are webhooks, far more than in a real room, whatever the machine's speed). Windows take turns between the two
 * nodes for several rounds; the ratio is the median of the per-round ratios. At the end every
 * acknowledged alert must have reached the receiver (verified, de-duplicated).
 *
 *   scripts/with-node.sh npx tsx load-tests/backend-webhooks.ts [--quick]
 *
 * Target: deliveries/s ratio (webhooks on ÷ off) >= 0.95.
 */
import { randomBytes } from 'node:crypto';
import { AccessTable } from '../backend-bridge/src/reference-receiver/access.js';
import { createReferenceReceiver } from '../backend-bridge/src/reference-receiver/server.js';
import { webhookInbox } from '../backend-bridge/src/reference-receiver/webhooks.js';
import { closeAll, stats, type BenchClient } from './lib/clients.js';
import { pinSelf, sleep, type ServerProcess } from './lib/processes.js';
import { fmt, median, table, verdict, writeReport } from './lib/report.js';
import {
  chatText,
  identities,
  interleavedRounds,
  measureThroughput,
  presenterOf,
  publicEnv,
  setupRoom,
  start,
  tradingRoomTarget,
  type RoomSetup,
  type Target,
  type Throughput,
} from './lib/scenario.js';

const QUICK = process.argv.includes('--quick');
const PARTICIPANTS = QUICK ? 100 : 1000;
const WARM = QUICK ? 20 : 100;
const ROUNDS = QUICK ? 1 : 5;
const MAX_EXTRA_ROUNDS = QUICK ? 0 : 3;
const MAX_FOREIGN_CPU = 0.25;
const BUDGET_MS = 150_000;
const TARGET_RATIO = 0.95;
/** One alert (a webhook, with webhooks on) per this many chat messages. */
const CHAT_PER_ALERT = 20;
const WINDOW = { window: 16, maxInFlightDeliveries: 32 * PARTICIPANTS, maxMessages: 20_000, text: chatText(80) };
const JIT_WARMUP = { ...WINDOW, warmupMs: QUICK ? 300 : 1500, measureMs: 500 };
const MEASURE = { ...WINDOW, warmupMs: QUICK ? 200 : 500, measureMs: QUICK ? 800 : 2500 };

interface Live {
  readonly target: Target;
  readonly server: ServerProcess;
  readonly setup: RoomSetup;
  alertsAcked: number;
}

/**
 * Sends one alert from the presenter per `CHAT_PER_ALERT` chat messages the room received (the
 * pump's progress, read from the delivery counter), so webhooks are the same share of the traffic
 * however fast the machine is; counts the acknowledged ones.
 */
function alertTrickle(live: Live): () => Promise<void> {
  const presenter: BenchClient = presenterOf(live.setup.clients);
  const receivers = live.setup.clients.length;
  const start = stats.chatDelivered;
  let running = true;
  let alerts = 0;
  const sent: Promise<void>[] = [];
  const loop = (async () => {
    while (running) {
      const messages = (stats.chatDelivered - start) / receivers;
      for (; alerts < messages / CHAT_PER_ALERT; alerts++) {
        sent.push(
          presenter.request('alert.publish', { symbol: 'BENCH', action: 'watch', price: alerts + 1 }).then((reply) => {
            if (reply.ok) live.alertsAcked++;
          }),
        );
      }
      await sleep(20);
    }
  })();
  return async () => {
    running = false;
    await loop;
    await Promise.all(sent);
  };
}

async function measure(live: Live): Promise<Throughput> {
  const stop = alertTrickle(live);
  try {
    return await measureThroughput(live.server, live.setup.clients, presenterOf(live.setup.clients), MEASURE);
  } finally {
    await stop();
  }
}

async function main(): Promise<void> {
  const started = Date.now();
  const pinning = pinSelf();
  const secret = `whsec_${randomBytes(32).toString('base64')}`;
  const receiver = createReferenceReceiver({
    access: new AccessTable({ otherRooms: { allowed: true } }),
    webhookSecret: secret,
  });
  await receiver.listen(0, '127.0.0.1');
  const inbox = webhookInbox(receiver);
  if (!inbox) throw new Error('the receiver has no webhook inbox');
  const env = {
    RATE_LIMITS_ENABLED: 'false',
    MAX_CONNECTIONS_PER_USER: '100000',
    RATE_LIMIT_IP_CONNECTIONS: '1000000',
  };
  // Both nodes have the backend (its access check on every join): they differ by the webhook secret
  // alone, so the ratio is the webhooks' cost and nothing else.
  const backend = { ...env, BACKEND_URL: receiver.url };
  const targets = [
    tradingRoomTarget('webhooks off', backend),
    tradingRoomTarget('webhooks on', { ...backend, BACKEND_WEBHOOK_SECRET: secret }),
  ];
  process.stdout.write(
    `${PARTICIPANTS} participants, chat as fast as acknowledged plus one alert per ${CHAT_PER_ALERT} messages; pinning: ${pinning}\n`,
  );
  const warmIds = await identities({ count: WARM, room: 'warmup', prefix: 'warm-' });
  const roomIds = await identities({ count: PARTICIPANTS, room: 'bench', prefix: 'user-', presenterIndex: 0 });
  const lives: Live[] = [];
  let measured;
  try {
    for (const target of targets) {
      const server = await start(target);
      try {
        lives.push({
          target,
          server,
          setup: await setupRoom(target, server, warmIds, roomIds, QUICK ? 1500 : 4000),
          alertsAcked: 0,
        });
      } catch (error) {
        process.stderr.write(`${target.name} failed; server output:\n${server.tail()}\n`);
        await server.stop();
        throw error;
      }
    }
    for (const live of lives)
      await measureThroughput(live.server, live.setup.clients, presenterOf(live.setup.clients), JIT_WARMUP);
    measured = await interleavedRounds({
      targets: lives,
      name: (live) => live.target.name,
      order: 'alternate',
      measure,
      rounds: ROUNDS,
      maxExtraRounds: MAX_EXTRA_ROUNDS,
      maxForeignCpu: MAX_FOREIGN_CPU,
      extraRoundsUntil: started + BUDGET_MS,
    });
  } finally {
    for (const live of lives) {
      await closeAll(live.setup.clients);
      await closeAll(live.setup.warm);
      await live.server.stop();
    }
  }
  const [off, on] = lives as [Live, Live];
  // Every alert the node with webhooks acknowledged reached the receiver (its drain flushes the rest).
  const alertWebhooks = inbox.received.filter((w) => w.type === 'alert.published').length;
  await receiver.stop();

  const offRounds = measured.counted(off);
  const onRounds = measured.counted(on);
  const ratios = onRounds.map((t, i) => t.deliveriesPerSecond / (offRounds[i] as Throughput).deliveriesPerSecond);
  const cpuRatios = onRounds.map(
    (t, i) => t.deliveriesPerServerCpuSecond / (offRounds[i] as Throughput).deliveriesPerServerCpuSecond,
  );
  const ratio = median(ratios);
  const cpuRatio = median(cpuRatios);
  const row = (live: Live, rounds: readonly Throughput[]): (string | number)[] => [
    live.target.name,
    median(rounds.map((t) => t.deliveriesPerSecond)),
    median(rounds.map((t) => t.deliveriesPerServerCpuSecond)),
    median(rounds.map((t) => t.serverCpu)),
    median(rounds.map((t) => t.messagesPerSecond)),
    rounds.reduce((a, t) => a + t.missing, 0),
    live.alertsAcked,
  ];
  process.stdout.write(
    '\n' +
      table(
        ['node', 'deliv/s', 'deliv/CPU-s', 'srv CPU', 'msg/s', 'missing', 'alerts acked'],
        [row(off, offRounds), row(on, onRounds)],
      ) +
      '\n\n',
  );
  const verdicts = {
    deliveries: verdict(ratio, TARGET_RATIO, '>='),
    deliveriesPerCpu: `${fmt(cpuRatio)} (deliveries per server CPU-second, on ÷ off)`,
    webhooksComplete: `${alertWebhooks} of ${on.alertsAcked} acknowledged alerts reached the receiver as webhooks`,
  };
  process.stdout.write(
    `webhooks on / off deliveries/s (median of ${ratios.length} paired rounds): ${verdicts.deliveries}\n`,
  );
  process.stdout.write(`${verdicts.deliveriesPerCpu}\n${verdicts.webhooksComplete}\n`);
  const path = writeReport('backend-webhooks', {
    quick: QUICK,
    pinning,
    participants: PARTICIPANTS,
    chatMessagesPerAlert: CHAT_PER_ALERT,
    targets: lives.map((l) => ({ name: l.target.name, env: publicEnv(l.target) })),
    rounds: {
      off: measured.all(off),
      on: measured.all(on),
      counted: measured.roundsCounted,
      contended: measured.contended,
    },
    ratios: { deliveries: ratios, deliveriesPerCpu: cpuRatios },
    alerts: {
      acknowledged: on.alertsAcked,
      webhooksReceived: alertWebhooks,
      duplicates: inbox.duplicates,
      rejected: inbox.rejected,
    },
    verdicts,
    durationSeconds: Math.round((Date.now() - started) / 1000),
  });
  process.stdout.write(`report: ${path}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
});
