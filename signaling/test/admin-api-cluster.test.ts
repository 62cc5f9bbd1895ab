/**
 * The admin API across two node processes on one real Redis: a room with participants on both
 * nodes seen whole from either node (by role, by node, connected), pages of rooms merged from
 * both nodes in id order, both nodes with their state and load, and a drain of one node asked of
 * the other (through the cluster RPC) that the drained node carries out.
 */
import { describe, expect, it } from 'vitest';
import { eventually } from '../../test-support/async.js';
import { useCluster, type TestCluster } from '../../test-support/cluster.js';
import { GENEROUS_LIMITS } from '../../test-support/room-helpers.js';
import type { AdminNode, AdminRoom, AdminRoomDetail } from '../src/http/admin-service.js';

const ADMIN = { admin: true } as const;

async function adminGet<T>(cluster: TestCluster, node: number, path: string): Promise<T> {
  const response = await cluster.node(node).http(path, ADMIN);
  expect(response.status, `${path} on node ${node + 1}`).toBe(200);
  return (await response.json()) as T;
}

describe('admin API over two nodes', { timeout: 90_000 }, () => {
  const cluster = useCluster({
    nodes: 2,
    nodeTtlMs: 1500,
    env: { ...GENEROUS_LIMITS, DRAIN_TIMEOUT_MS: '3000', SESSION_RESUME_GRACE_MS: '0' },
  });

  it('shows a room with participants on both nodes from either node', async () => {
    const c = cluster();
    const roomId = 'split-room';
    await c.joined('split-presenter', { node: 0, roomId, role: 'presenter' });
    await c.joined('split-trader-1', { node: 0, roomId });
    const { client: moderator } = await c.joined('split-moderator', { node: 1, roomId, role: 'moderator' });
    await moderator.request('chat.send', { text: 'from node 2' });

    for (const node of [0, 1]) {
      const { rooms } = await adminGet<{ rooms: AdminRoom[] }>(c, node, '/admin/rooms');
      expect(rooms.find((r) => r.roomId === roomId)).toMatchObject({
        participants: 3,
        participantsByRole: { presenter: 1, moderator: 1, trader: 1 },
        participantsByNode: { 'node-1': 2, 'node-2': 1 },
        connected: 3,
        nodes: ['node-1', 'node-2'],
      });
      const detail = await adminGet<AdminRoomDetail>(c, node, `/admin/rooms/${roomId}`);
      expect(detail.participantDetails.map((p) => `${p.userId}:${p.role}:${p.nodeId}:${p.connected}`).sort()).toEqual([
        'split-moderator:moderator:node-2:true',
        'split-presenter:presenter:node-1:true',
        'split-trader-1:trader:node-1:true',
      ]);
      expect(detail.unreachableNodes).toEqual([]);
    }
    await eventually(
      async () =>
        (await adminGet<{ rooms: AdminRoom[] }>(c, 0, '/admin/rooms')).rooms.find((r) => r.roomId === roomId)
          ?.chatMessagesPerMinute === 1,
      10_000,
      'the chat rate of the room',
    );
  });

  it('pages through the rooms of both nodes once each, in id order', async () => {
    const c = cluster();
    const own = ['pg-1', 'pg-3', 'pg-5', 'pg-6'];
    const other = ['pg-2', 'pg-4', 'pg-6', 'pg-7'];
    for (const roomId of own) await c.joined(`${roomId}-a`, { node: 0, roomId });
    for (const roomId of other) await c.joined(`${roomId}-b`, { node: 1, roomId });
    const seen: AdminRoom[] = [];
    let query = '/admin/rooms?limit=2';
    for (let pages = 0; pages < 20; pages++) {
      const page = await adminGet<{ rooms: AdminRoom[]; nextCursor: string | null }>(c, 1, query);
      expect(page.rooms.length).toBeLessThanOrEqual(2);
      seen.push(...page.rooms);
      if (page.nextCursor === null) break;
      query = `/admin/rooms?limit=2&cursor=${encodeURIComponent(page.nextCursor)}`;
    }
    const pgRooms = seen.filter((r) => r.roomId.startsWith('pg-'));
    expect(pgRooms.map((r) => r.roomId)).toEqual(['pg-1', 'pg-2', 'pg-3', 'pg-4', 'pg-5', 'pg-6', 'pg-7']);
    expect(pgRooms.find((r) => r.roomId === 'pg-6')).toMatchObject({
      participants: 2,
      participantsByNode: { 'node-1': 1, 'node-2': 1 },
    });
    const all = seen.map((r) => r.roomId);
    expect(new Set(all).size).toBe(all.length);
  });

  it('lists both nodes with what each reports of itself', async () => {
    const c = cluster();
    const { nodes } = await adminGet<{ nodes: AdminNode[] }>(c, 0, '/admin/nodes');
    expect(nodes.map((n) => n.nodeId)).toEqual(['node-1', 'node-2']);
    for (const n of nodes) {
      expect(n).toMatchObject({
        state: 'running',
        alive: true,
        drainOverdue: false,
        detail: { nodeId: n.nodeId, drainState: 'RUNNING', redis: { state: 'ok', mode: 'single' } },
      });
    }
    const first = await adminGet<{ nodes: AdminNode[]; nextCursor: string }>(c, 1, '/admin/nodes?limit=1');
    expect(first.nodes.map((n) => n.nodeId)).toEqual(['node-1']);
    const second = await adminGet<{ nodes: AdminNode[]; nextCursor: string | null }>(
      c,
      1,
      `/admin/nodes?limit=1&cursor=${encodeURIComponent(first.nextCursor)}`,
    );
    expect(second.nodes.map((n) => n.nodeId)).toEqual(['node-2']);
    expect(second.nextCursor).toBeNull();
  });

  it('drains another node through the cluster RPC', async () => {
    const c = cluster();
    expect((await c.node(0).http('/admin/nodes/node-2/drain', { method: 'POST' })).status).toBe(401);
    const unknown = await c.node(0).http('/admin/nodes/node-9/drain', { method: 'POST', ...ADMIN });
    expect(unknown.status).toBe(404);

    const answer = await c.node(0).http('/admin/nodes/node-2/drain', { method: 'POST', ...ADMIN });
    expect(answer.status).toBe(202);
    expect(await answer.json()).toEqual({ nodeId: 'node-2', state: 'DRAINING', deadline: expect.any(Number) });
    expect((await c.node(1).http('/health/ready')).status).toBe(503);
    const { nodes } = await adminGet<{ nodes: AdminNode[] }>(c, 0, '/admin/nodes');
    expect(nodes.find((n) => n.nodeId === 'node-2')).toMatchObject({ state: 'draining' });
    // The drained node closes at its deadline and leaves the cluster cleanly.
    await c.node(1).waitForExit(30_000);
    await eventually(
      async () => {
        const listed = (await adminGet<{ nodes: AdminNode[] }>(c, 0, '/admin/nodes')).nodes;
        return listed.every((n) => n.nodeId !== 'node-2' || !n.alive);
      },
      15_000,
      'node-2 gone from the live nodes',
    );
    const again = await c.node(0).http('/admin/nodes/node-2/drain', { method: 'POST', ...ADMIN });
    expect(again.status).toBe(404);
  });
});
