/** The parent's handle on the RTP source child process (`media-source.ts`). */
import { fork, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { SourceReply, SourceRequest } from './media-source.js';

type MarkReply = Extract<SourceReply, { type: 'mark' }>;

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, '..', '..');

export class SourceProcess {
  readonly #child: ChildProcess;
  readonly #waiting: ((reply: SourceReply) => void)[] = [];
  #exited = false;
  #markId = 0;

  private constructor(child: ChildProcess) {
    this.#child = child;
    child.on('message', (reply) => this.#waiting.shift()?.(reply as SourceReply));
    child.once('exit', () => {
      this.#exited = true;
    });
  }

  /** Forks the source and connects its sockets to the sinks. */
  static async start(sinkPorts: readonly number[]): Promise<SourceProcess> {
    const child = fork(join(HERE, 'media-source.ts'), [], {
      cwd: ROOT,
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const source = new SourceProcess(child);
    const ready = new Promise<SourceReply>((resolve) => source.#waiting.push(resolve));
    const timeout = new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error('RTP source did not start in 20 s')), 20_000).unref(),
    );
    await Promise.race([ready, timeout]);
    await source.request({ type: 'init', sinkPorts: [...sinkPorts] });
    return source;
  }

  get pid(): number {
    return this.#child.pid ?? 0;
  }

  request(request: SourceRequest): Promise<SourceReply> {
    if (this.#exited) return Promise.reject(new Error('RTP source exited'));
    return new Promise((resolve) => {
      this.#waiting.push(resolve);
      this.#child.send(request);
    });
  }

  async mark(): Promise<MarkReply> {
    const id = ++this.#markId;
    const reply = await this.request({ type: 'mark', id });
    if (reply.type !== 'mark' || reply.id !== id)
      throw new Error(`unexpected reply from the RTP source: ${reply.type}`);
    return reply;
  }

  stop(): void {
    if (this.#exited) return;
    this.#child.disconnect();
    this.#child.kill('SIGTERM');
  }
}
