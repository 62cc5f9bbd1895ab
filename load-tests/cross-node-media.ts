/**
 * Cross-node media benchmark: what a pipe between two nodes costs a viewer and a node.
 *
 * Two media services stand for two nodes (each its own mediasoup worker, 1 each), wired as
 * signaling wires nodes (the origin answers the viewer node's pipe request, the pipes' events are
 * relayed); the pipe between them is the real one: a PipeTransport pair over UDP on 127.0.0.1.
 * A 1 Mbit/s VP8 RTP stream (`lib/media-rtp.ts`: 125 pkt/s of 1,012 B, the send time in each
 * packet) goes into a producer on node A's comedia plain transport.
 *
 * - **Latency**: one viewer on A, one on B (through the pipe), same stream, same run: the delay
 *   from the send time in the packet to its arrival at each viewer's socket, quantiles of each,
 *   and the difference B − A (what the pipe adds). Aim: under 2 ms on loopback.
 * - **Cost**: CPU of the workers over a window for `--viewers` viewers on the origin node (case
 *   `origin`), the same number on node B fed through the pipe (case `pipe`), and none (case
 *   `idle`: the ingest alone). The pipe's overhead is the CPU the `pipe` case spends beyond the
 *   `origin` case (A's pipe consumer + B's pipe ingest), reported in viewer equivalents (per-viewer
 *   CPU on the origin) and as a share of one worker's core — the node's capacity, since a worker
 *   forwards until its core is busy. Aim: under 5 %. Cases are interleaved, `--rounds` times.
 *
 *   scripts/with-node.sh npx tsx load-tests/cross-node-media.ts [--viewers=100] \
 *     [--measure-seconds=5] [--rounds=3]
 *
 * Everything on 127.0.0.1. The machine is shared: the report notes its load (busy share of all
 * cores outside this process and the workers) beside each window.
 */
import dgram from 'node:dgram';
import type { AddressInfo } from 'node:net';

import type { types } from 'mediasoup';
import pino from 'pino';

import { MediaService } from '../sfu/src/media-service.js';
import type { PipeOrigin } from '../sfu/src/media-types.js';
import { fmt, median, table, verdict, writeReport } from './lib/report.js';
import {
  isKeyFrameRequest,
  KEY_FRAME_EVERY,
  machineJiffies,
  PACKET_BYTES,
  PACKET_INTERVAL_MS,
  PACKETS_PER_FRAME,
  SOURCE_SSRC,
  sourcePacket,
  vp8RtpParameters,
  VP8_PAYLOAD_TYPE,
} from './lib/media-rtp.js';

const args = process.argv.slice(2);
const arg = (name: string): string | undefined =>
  args.find((a) => a.startsWith(`--${name}=`))?.slice(`--${name}=`.length);
const VIEWERS = Number(arg('viewers') ?? 100);
const MEASURE_SECONDS = Number(arg('measure-seconds') ?? 5);
const ROUNDS = Number(arg('rounds') ?? 3);
const ROOM = 'cross-node';
const SINKS = 8;

const nowMs = (): number => performance.timeOrigin + performance.now();
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The stream's source: 125 packets a second, a key frame every 50 frames and on PLI/FIR. */
class Source {
  readonly socket = dgram.createSocket('udp4');
  #timer: NodeJS.Timeout | undefined;
  #index = 0;
  #keyFrameDue = true;

  constructor() {
    this.socket.on('message', (message) => {
      if (isKeyFrameRequest(message)) this.#keyFrameDue = true;
    });
  }

  start(ip: string, port: number): void {
    const started = performance.now();
    const tick = (): void => {
      // Catch up on the schedule (a timer fires late under load), never burst more than a frame.
      const due = Math.floor((performance.now() - started) / PACKET_INTERVAL_MS);
      for (let n = 0; this.#index <= due && n < PACKETS_PER_FRAME; n++) {
        const frame = Math.floor(this.#index / PACKETS_PER_FRAME);
        const firstOfFrame = this.#index % PACKETS_PER_FRAME === 0;
        const keyFrame = firstOfFrame && (this.#keyFrameDue || frame % KEY_FRAME_EVERY === 0);
        if (keyFrame) this.#keyFrameDue = false;
        const packet = sourcePacket(this.#index++, keyFrame, nowMs());
        packet.writeUInt32BE(SOURCE_SSRC, 8);
        this.socket.send(packet, port, ip);
      }
      this.#timer = setTimeout(tick, PACKET_INTERVAL_MS / 2);
    };
    tick();
  }

  close(): void {
    clearTimeout(this.#timer);
    this.socket.close();
  }
}

/** A viewer's socket: packets received and their delay since the send time in them (ms). */
class Sink {
  readonly socket = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 * 1024 * 1024 });
  received = 0;
  delays: number[] = [];
  recording = false;

  static async open(): Promise<Sink> {
    const sink = new Sink();
    await new Promise<void>((resolve) => sink.socket.bind(0, '127.0.0.1', resolve));
    sink.socket.on('message', (message) => {
      // RTP only (not RTCP); the consumer may add header extensions, the trailer stays at the end.
      // Probation padding of the bandwidth estimator has its own payload type: not the stream.
      if (message.length < PACKET_BYTES || ((message[1] ?? 0) & 0x7f) !== VP8_PAYLOAD_TYPE) return;
      sink.received += 1;
      if (sink.recording) sink.delays.push(nowMs() - message.readDoubleBE(message.length - 12));
    });
    return sink;
  }

  get port(): number {
    return (this.socket.address() as AddressInfo).port;
  }
}

/**
 * RTP capabilities without transport-cc and REMB: plain viewers never send the feedback, and the
 * estimator's probation would make the two cases send different amounts of padding.
 */
function withoutBwe(capabilities: types.RtpCapabilities): types.RtpCapabilities {
  return {
    codecs: capabilities.codecs?.map((codec) => ({
      ...codec,
      rtcpFeedback: codec.rtcpFeedback?.filter((fb) => fb.type !== 'transport-cc' && fb.type !== 'goog-remb'),
    })),
    headerExtensions: capabilities.headerExtensions?.filter((ext) => !/transport-wide-cc|abs-send-time/.test(ext.uri)),
  };
}

function quantile(values: readonly number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number;
}

async function workerCpuMs(media: MediaService): Promise<number> {
  return (await media.workerUsage()).reduce((sum, w) => sum + w.cpuTimeMs, 0);
}

async function main(): Promise<void> {
  const logger = pino({ level: 'error' });
  const options = { numWorkers: 1, listenIp: '127.0.0.1', rtcBasePort: 0, plainTransportsEnabled: true, logger };
  const nodeA = await MediaService.create({ ...options, consumersPerRouter: 10_000 });
  const nodeB = await MediaService.create({ ...options, consumersPerRouter: 10_000 });
  const source = new Source();
  const sinks: Sink[] = [];
  try {
    // Signaling's part, in-process: the pipes' events relayed to the other node.
    nodeA.on('pipeclosed', (e) => e.direction === 'out' && nodeB.closePipeIn(e.roomId, e.producerId, 'origin-closed'));
    nodeA.on('pipepaused', (e) => void nodeB.setPipeInPaused(e.roomId, e.producerId, e.paused));
    nodeB.on('pipeclosed', (e) => e.direction === 'in' && nodeA.closePipeOut(e.roomId, e.producerId, 'node-b'));

    const ingest = await nodeA.createPlainTransport(ROOM, 'presenter', { direction: 'send', comedia: true });
    const { producerId } = await nodeA.produce(ROOM, 'presenter', {
      transportId: ingest.transportId,
      kind: 'video',
      source: 'camera',
      rtpParameters: vp8RtpParameters(SOURCE_SSRC) as never,
    });
    const origin: PipeOrigin = { nodeId: 'node-a', open: (end) => nodeA.pipeOut(ROOM, producerId, 'node-b', end) };
    source.start(ingest.ip, ingest.port);
    for (let i = 0; i < SINKS; i++) sinks.push(await Sink.open());

    let viewerCount = 0;
    /** `count` viewers on `node` (through the pipe on B), spread over the sinks; returns their ids. */
    const addViewers = async (node: MediaService, count: number, sinkOf: (i: number) => Sink): Promise<string[]> => {
      const rtpCapabilities = withoutBwe(await node.getRouterRtpCapabilities(ROOM));
      const ids: string[] = [];
      for (let i = 0; i < count; i++) {
        const participantId = `viewer-${viewerCount++}`;
        const transport = await node.createPlainTransport(ROOM, participantId, { direction: 'recv' });
        await node.connectPlainTransport(ROOM, participantId, {
          transportId: transport.transportId,
          ip: '127.0.0.1',
          port: sinkOf(i).port,
        });
        const consumer = await node.consume(
          ROOM,
          participantId,
          { transportId: transport.transportId, producerId, rtpCapabilities },
          node === nodeB ? origin : undefined,
        );
        await node.resumeConsumer(ROOM, participantId, consumer.consumerId);
        ids.push(participantId);
      }
      return ids;
    };
    const removeViewers = (node: MediaService, ids: readonly string[]): void => {
      for (const id of ids) node.closeParticipant(ROOM, id);
    };

    // ---- latency: one viewer on each node, same stream ----
    const [sinkA, sinkB] = [await Sink.open(), await Sink.open()] as [Sink, Sink];
    sinks.push(sinkA, sinkB);
    const latencyViewers = [
      { node: nodeA, ids: await addViewers(nodeA, 1, () => sinkA) },
      { node: nodeB, ids: await addViewers(nodeB, 1, () => sinkB) },
    ];
    await sleep(1000);
    sinkA.recording = sinkB.recording = true;
    await sleep(MEASURE_SECONDS * 1000);
    sinkA.recording = sinkB.recording = false;
    for (const v of latencyViewers) removeViewers(v.node, v.ids);
    const latency = {
      originMs: { p50: quantile(sinkA.delays, 0.5), p99: quantile(sinkA.delays, 0.99), packets: sinkA.delays.length },
      pipeMs: { p50: quantile(sinkB.delays, 0.5), p99: quantile(sinkB.delays, 0.99), packets: sinkB.delays.length },
    };
    const addedP50 = latency.pipeMs.p50 - latency.originMs.p50;
    const addedP99 = latency.pipeMs.p99 - latency.originMs.p99;

    // ---- cost: N viewers on the origin, on the other node through the pipe, and none ----
    type Window = { case: string; cpuA: number; cpuB: number; delivered: number; otherLoad: number };
    const windows: Window[] = [];
    const measure = async (name: string): Promise<void> => {
      await sleep(1500); // key frames reached every viewer, the pipe is warm
      const received = sinks.reduce((n, s) => n + s.received, 0);
      const [a0, b0, m0, self0] = [
        await workerCpuMs(nodeA),
        await workerCpuMs(nodeB),
        machineJiffies(),
        process.cpuUsage(),
      ];
      await sleep(MEASURE_SECONDS * 1000);
      const [a1, b1, m1, self1] = [
        await workerCpuMs(nodeA),
        await workerCpuMs(nodeB),
        machineJiffies(),
        process.cpuUsage(self0),
      ];
      const seconds = MEASURE_SECONDS;
      const cpuA = (a1 - a0) / 1000 / seconds;
      const cpuB = (b1 - b0) / 1000 / seconds;
      const selfCpu = (self1.user + self1.system) / 1e6 / seconds;
      const machineBusy =
        ((m1.busy - m0.busy) / Math.max(1, m1.total - m0.total)) * (await import('node:os')).availableParallelism();
      windows.push({
        case: name,
        cpuA,
        cpuB,
        delivered: (sinks.reduce((n, s) => n + s.received, 0) - received) / seconds,
        otherLoad: Math.max(0, machineBusy - cpuA - cpuB - selfCpu),
      });
    };
    for (let round = 0; round < ROUNDS; round++) {
      await measure('idle');
      const onA = await addViewers(nodeA, VIEWERS, (i) => sinks[i % SINKS] as Sink);
      await measure('origin');
      removeViewers(nodeA, onA);
      const onB = await addViewers(nodeB, VIEWERS, (i) => sinks[i % SINKS] as Sink);
      await measure('pipe');
      removeViewers(nodeB, onB);
    }
    const mean = (name: string, key: 'cpuA' | 'cpuB' | 'delivered' | 'otherLoad'): number =>
      median(windows.filter((w) => w.case === name).map((w) => w[key]));
    const idle = mean('idle', 'cpuA');
    const originCpu = mean('origin', 'cpuA') + mean('origin', 'cpuB');
    const pipeCpu = mean('pipe', 'cpuA') + mean('pipe', 'cpuB');
    const perViewer = (mean('origin', 'cpuA') - idle) / VIEWERS;
    const overhead = pipeCpu - originCpu;
    const overheadViewers = overhead / perViewer;
    const expectedRate = VIEWERS * (1000 / PACKET_INTERVAL_MS);

    console.log(`\ncross-node media: ${VIEWERS} viewers, ${MEASURE_SECONDS} s windows, ${ROUNDS} rounds\n`);
    console.log(
      table(
        ['viewer', 'delay p50 ms', 'delay p99 ms', 'packets'],
        [
          ['on the origin (A)', latency.originMs.p50, latency.originMs.p99, latency.originMs.packets],
          ['through the pipe (B)', latency.pipeMs.p50, latency.pipeMs.p99, latency.pipeMs.packets],
        ],
      ),
    );
    console.log(`\nadded by the pipe: p50 ${fmt(addedP50)} ms, p99 ${fmt(addedP99)} ms  ${verdict(addedP50, 2, '<=')}`);
    console.log(
      '\n' +
        table(
          ['case', 'worker A cores', 'worker B cores', 'delivered pkt/s', 'of expected', 'other load cores'],
          ['idle', 'origin', 'pipe'].map((name) => [
            name,
            mean(name, 'cpuA'),
            mean(name, 'cpuB'),
            mean(name, 'delivered'),
            name === 'idle' ? '-' : fmt(mean(name, 'delivered') / expectedRate),
            mean(name, 'otherLoad'),
          ]),
        ),
    );
    console.log(
      `\nper viewer on the origin: ${fmt(perViewer * 1e6)} µs CPU per second; pipe overhead ${fmt(overhead * 1000)} ms CPU per second` +
        ` = ${fmt(overheadViewers)} viewer equivalents = ${fmt(overhead * 100)} % of a worker's core  ${verdict(overhead, 0.05, '<=')}`,
    );
    const path = writeReport('cross-node-media', {
      config: { viewers: VIEWERS, measureSeconds: MEASURE_SECONDS, rounds: ROUNDS, streamKbps: 1000 },
      latency: { ...latency, addedP50Ms: addedP50, addedP99Ms: addedP99 },
      windows,
      cost: {
        perViewerCores: perViewer,
        originCores: originCpu,
        pipeCores: pipeCpu,
        pipeOverheadCores: overhead,
        pipeOverheadViewerEquivalents: overheadViewers,
        pipeShareOfWorkerCore: overhead,
        pipeToOriginCpuRatio: pipeCpu / originCpu,
      },
      verdicts: { addedLatency: verdict(addedP50, 2, '<='), pipeShare: verdict(overhead, 0.05, '<=') },
    });
    console.log(`\nreport: ${path}`);
  } finally {
    source.close();
    for (const sink of sinks) sink.socket.close();
    await nodeA.close();
    await nodeB.close();
  }
}

const hardExit = setTimeout(() => {
  console.error('cross-node media benchmark: hard exit after 10 minutes');
  process.exit(2);
}, 600_000);
hardExit.unref();
main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
