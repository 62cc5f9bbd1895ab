/**
 * Draining a node with media on, as a real child process with a real SIGTERM: the media keeps
 * flowing through the drain window. A presenter's opus over plain RTP reaches a moderator's tap
 * until shortly before the deadline, a client still there can still create transports, and the
 * node closes its rooms and then the SFU, exiting 0 after the deadline.
 */
import { afterAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { eventually } from '../../test-support/async.js';
import { RawSocket } from '../../test-support/harness.js';
import { spawnNode, type ChildNode } from '../../test-support/child-node.js';
import {
  consumeToSink,
  MEDIA_ENV,
  publishOpus,
  rawParticipant,
  type MediaParticipant,
} from '../../test-support/media-flow.js';
import { RtpSender, type RtpSink } from '../../test-support/rtp.js';
import type { JoinResult } from '../client/index.js';
import type { Role } from '../src/protocol/common.js';

const ROOM = 'drain-media-room';
const DRAIN_TIMEOUT_MS = 4000;
/** RTP must still be arriving this close to the deadline. */
const FLOWING_UNTIL_BEFORE_DEADLINE_MS = 700;

const nodes: ChildNode[] = [];
const sockets: WebSocket[] = [];
const senders: RtpSender[] = [];
const sinks: RtpSink[] = [];
afterAll(async () => {
  for (const sender of senders) sender.close();
  for (const sink of sinks) sink.close();
  for (const ws of sockets) ws.terminate();
  await Promise.all(nodes.map((n) => n.kill()));
});

/** A raw socket joined to {@link ROOM}: it ignores `server.draining` and stays to the deadline. */
async function joinRaw(node: ChildNode, userId: string, role: Role): Promise<{ raw: RawSocket } & MediaParticipant> {
  const token = await node.token(userId, { roomId: ROOM, role });
  const ws = new WebSocket(`${node.wsUrl}?token=${token}`, { perMessageDeflate: false });
  sockets.push(ws);
  const raw = new RawSocket(ws);
  await raw.opened;
  const joined = await raw.request('room.join', {});
  expect(joined, `join of ${userId}`).toMatchObject({ ok: true });
  return { raw, ...rawParticipant(raw, joined.data as JoinResult) };
}

describe('drain on SIGTERM with media on', () => {
  it(
    'keeps RTP flowing to a viewer and transports coming until the deadline, then exits 0',
    {
      timeout: 60_000,
    },
    async () => {
      const node = await spawnNode({ ...MEDIA_ENV, DRAIN_TIMEOUT_MS: String(DRAIN_TIMEOUT_MS) });
      nodes.push(node);
      expect((await node.health()).media, 'media must be up').toMatchObject({ state: 'ok', workersAlive: 2 });

      const presenter = await joinRaw(node, 'drain-presenter', 'presenter');
      const moderator = await joinRaw(node, 'drain-moderator', 'moderator');
      const sender = new RtpSender(0x5eed);
      senders.push(sender);
      const { producerId } = await publishOpus(presenter, sender);
      const { sink } = await consumeToSink(moderator, producerId, sinks);
      await eventually(() => sink.received >= 10, 5000, 'RTP at the tap before the drain');

      const sigtermAt = Date.now();
      node.signal('SIGTERM');
      const notice = await moderator.raw.waitFor((m) => m.event === 'server.draining');
      const { deadline } = notice.data as { deadline: number };
      expect(Math.abs(deadline - (sigtermAt + DRAIN_TIMEOUT_MS))).toBeLessThan(500);

      // RTP keeps arriving, window after window, until shortly before the deadline.
      let transportChecked = false;
      let lastGrowthAt = Date.now();
      while (Date.now() < deadline - FLOWING_UNTIL_BEFORE_DEADLINE_MS) {
        const before = sink.received;
        await eventually(
          () => sink.received >= before + 5,
          1000,
          `RTP at the tap ${Date.now() - sigtermAt} ms into the drain`,
        );
        lastGrowthAt = Date.now();
        if (!transportChecked) {
          // A client still on the node can still set up media.
          const transport = await moderator.client.request('sfu.createTransport', { direction: 'recv' });
          expect(transport.transportId).toEqual(expect.any(String));
          transportChecked = true;
        }
      }
      expect(transportChecked).toBe(true);
      expect(lastGrowthAt).toBeGreaterThanOrEqual(deadline - FLOWING_UNTIL_BEFORE_DEADLINE_MS);
      expect(node.alive).toBe(true);

      // At the deadline the stragglers are closed with 1012, then the rooms and the SFU; exit 0.
      const closed = await moderator.raw.closed;
      expect(closed.code).toBe(1012);
      const exit = await node.exited;
      expect(exit.code).toBe(0);
      expect(exit.at).toBeGreaterThanOrEqual(deadline);
      expect(exit.at - sigtermAt).toBeLessThan(DRAIN_TIMEOUT_MS + 5000);
      expect(node.crashLines()).toEqual([]);
      expect(node.logs().some((l) => l.msg === 'media worker died')).toBe(false);
    },
  );
});
