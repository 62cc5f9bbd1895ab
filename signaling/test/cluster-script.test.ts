/**
 * `scripts/cluster.sh`, as a newcomer runs it: Redis and three nodes come up on free ports (media
 * on, so their WebRTC ports must not collide), each answers `/health` with its bus on Redis, the
 * printed tokens work on every node, and Ctrl-C (SIGINT) stops every process it started.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { TradingRoomClient } from '../client/index.js';
import { nodeSocketFactory } from '../client/node.js';
import { eventually } from '../../test-support/async.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('scripts/cluster.sh', () => {
  let script: ChildProcess | undefined;
  const pids: number[] = [];

  afterAll(async () => {
    // After a failure: Ctrl-C lets the script stop what it started (its children have their own session).
    if (script && script.exitCode === null && script.signalCode === null) {
      const exit = new Promise((resolve) => script?.once('exit', resolve));
      script.kill('SIGINT');
      await Promise.race([exit, new Promise((resolve) => setTimeout(resolve, 30_000))]);
      if (script.exitCode === null && script.signalCode === null) script.kill('SIGKILL');
    }
    for (const pid of pids.filter(isRunning)) process.kill(pid, 'SIGKILL');
  }, 40_000);

  it('starts Redis and three nodes that share it, and Ctrl-C stops them all', { timeout: 180_000 }, async () => {
    let output = '';
    script = spawn('scripts/cluster.sh', ['--for-seconds', '600'], {
      cwd: ROOT,
      env: { ...process.env, MEDIASOUP_NUM_WORKERS: '1', LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    script.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    script.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => script?.once('exit', (code) => resolve(code)));
    await eventually(
      () => {
        if (script?.exitCode !== null) throw new Error(`cluster.sh exited ${script?.exitCode}:\n${output}`);
        return output.includes('stopping by itself in 600 s');
      },
      150_000,
      'the cluster summary',
    );

    const nodes = [...output.matchAll(/node-(\d+) {2}http:\/\/localhost:(\d+) .* pid (\d+)/g)].map((m) => ({
      nodeId: `node-${m[1]}`,
      url: `http://127.0.0.1:${m[2]}`,
      pid: Number(m[3]),
    }));
    expect(nodes.map((n) => n.nodeId)).toEqual(['node-1', 'node-2', 'node-3']);
    const redisPid = Number(/redis:\/\/127\.0\.0\.1:\d+ \(pid (\d+)/.exec(output)?.[1]);
    pids.push(redisPid, ...nodes.map((n) => n.pid));
    const adminToken = /admin token: +(\S+)/.exec(output)?.[1] as string;
    const demoTokens = [...output.matchAll(/demo \(trader-\d+\): +\S+\?token=(\S+)/g)].map((m) => m[1] as string);
    expect(demoTokens).toHaveLength(3);

    const rtcPorts = new Set<number>();
    for (const [i, node] of nodes.entries()) {
      const health = (await (await fetch(`${node.url}/health`)).json()) as {
        nodeId: string;
        bus: unknown;
        media: { state: string; ports: { udp: number }[] };
      };
      expect(health).toMatchObject({
        nodeId: node.nodeId,
        bus: { kind: 'redis', state: 'ok' },
        media: { state: 'ok' },
      });
      for (const p of health.media.ports) rtcPorts.add(p.udp);

      const listed = (await (
        await fetch(`${node.url}/admin/nodes`, { headers: { Authorization: `Bearer ${adminToken}` } })
      ).json()) as { nodes: { nodeId: string; alive: boolean }[] };
      expect(listed.nodes.filter((n) => n.alive).map((n) => n.nodeId)).toEqual(['node-1', 'node-2', 'node-3']);

      const client = new TradingRoomClient({
        url: `${node.url.replace('http', 'ws')}/ws`,
        token: demoTokens[i] as string,
        createSocket: nodeSocketFactory,
      });
      const joined = await client.connect();
      expect(joined).toMatchObject({ roomId: 'demo', role: 'trader' });
      client.close();
    }
    expect(rtcPorts.size).toBe(3);

    script.kill('SIGINT');
    expect(await exited).toBe(130);
    expect(pids.filter(isRunning)).toEqual([]);
  });
});
