/**
 * A minimal Chrome DevTools Protocol client for a server started with `--inspect=127.0.0.1:PORT`:
 * forces full garbage collections (`HeapProfiler.collectGarbage`) and reads the V8 heap usage,
 * so memory per connection can be measured without garbage in it. Only loopback.
 */
import WebSocket from 'ws';

export class Inspector {
  readonly #ws: WebSocket;
  readonly #pending = new Map<number, (result: unknown) => void>();
  #next = 0;

  private constructor(ws: WebSocket) {
    this.#ws = ws;
    ws.on('message', (data: Buffer) => {
      const message = JSON.parse(data.toString()) as { id?: number; result?: unknown; error?: unknown };
      if (message.id === undefined) return;
      const done = this.#pending.get(message.id);
      this.#pending.delete(message.id);
      done?.(message.error ? Promise.reject(new Error(JSON.stringify(message.error))) : message.result);
    });
  }

  static async connect(port: number, timeoutMs = 10_000): Promise<Inspector> {
    const until = Date.now() + timeoutMs;
    let lastError: unknown;
    while (Date.now() < until) {
      try {
        const targets = (await (await fetch(`http://127.0.0.1:${port}/json/list`)).json()) as {
          webSocketDebuggerUrl: string;
        }[];
        const url = targets[0]?.webSocketDebuggerUrl;
        if (!url) throw new Error('no inspector target');
        const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 256 * 1024 * 1024 });
        await new Promise<void>((resolve, reject) => {
          ws.once('open', () => resolve());
          ws.once('error', reject);
        });
        return new Inspector(ws);
      } catch (error) {
        lastError = error;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    throw new Error(`inspector on 127.0.0.1:${port} not reachable`, { cause: lastError });
  }

  call<T>(method: string, params: Record<string, unknown> = {}, timeoutMs = 30_000): Promise<T> {
    const id = ++this.#next;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`${method} timed out`));
      }, timeoutMs);
      this.#pending.set(id, (result) => {
        clearTimeout(timer);
        Promise.resolve(result).then((r) => resolve(r as T), reject);
      });
      this.#ws.send(JSON.stringify({ id, method, params }));
    });
  }

  /** Two full, memory-reducing collections; then the V8 heap's used bytes. */
  async collectGarbage(): Promise<number> {
    await this.call('HeapProfiler.collectGarbage');
    await this.call('HeapProfiler.collectGarbage');
    const usage = await this.call<{ usedSize: number }>('Runtime.getHeapUsage');
    return usage.usedSize;
  }

  close(): void {
    this.#ws.close();
  }
}
