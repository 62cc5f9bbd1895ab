/**
 * A newcomer's run: from a fresh clone of this repository's HEAD, the README's start command
 * brings up a node, and a client connects with the token it prints.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { TradingRoomClient } from '../client/index.js';
import { nodeSocketFactory } from '../client/node.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

describe('README start command on a fresh clone', () => {
  const dir = mkdtempSync(join(tmpdir(), 'trading-room-clone-'));
  let child: ChildProcess | undefined;

  afterAll(() => {
    if (child && child.exitCode === null) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('starts a node that accepts the printed trader token', { timeout: 300_000 }, async () => {
    execFileSync('git', ['clone', '--quiet', ROOT, dir]);
    const port = await freePort();
    const output: string[] = [];
    child = spawn('./scripts/up.sh', [], {
      cwd: dir,
      env: { ...process.env, PORT: String(port), RTC_BASE_PORT: '0', LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout?.on('data', (chunk: Buffer) => output.push(chunk.toString()));
    child.stderr?.on('data', (chunk: Buffer) => output.push(chunk.toString()));

    const token = await new Promise<string>((resolve, reject) => {
      const timer = setInterval(() => {
        const match = /trader token:\s+(\S+)/.exec(output.join(''));
        if (match?.[1]) {
          clearInterval(timer);
          resolve(match[1]);
        } else if (child?.exitCode !== null) {
          clearInterval(timer);
          reject(new Error(`start command exited ${child?.exitCode}:\n${output.join('')}`));
        }
      }, 200);
    });
    expect(output.join('')).toContain(`ws://localhost:${port}/ws`);

    const client = new TradingRoomClient({ url: `ws://127.0.0.1:${port}/ws`, token, createSocket: nodeSocketFactory });
    const joined = await client.connect();
    expect(joined.role).toBe('trader');
    expect(joined.roomId).toBe('demo');
    const sent = await client.request('chat.send', { text: 'hello from a newcomer' });
    expect(sent.seq).toBeGreaterThan(0);
    client.close();

    const exited = new Promise<number | null>((resolve) => child?.once('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
  });
});
