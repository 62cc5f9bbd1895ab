/** Small helpers shared by the gateway / limits / drain / client tests. */
import WebSocket from 'ws';
import { UpgradeRefused } from '../../../test-support/harness.js';

/** Resolves with the refusal of an upgrade that must be refused. */
export async function refusal(promise: Promise<unknown>): Promise<UpgradeRefused> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof UpgradeRefused) return error;
    throw error;
  }
  throw new Error('the upgrade was accepted; expected a refusal');
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A deferred value. */
export function deferred<T = void>(): { promise: Promise<T>; resolve(v: T): void; reject(e: unknown): void } {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Opens a `ws` client with extra options (autoPong off, …); rejects on a refused upgrade. */
export function openSocket(url: string, options: WebSocket.ClientOptions = {}): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false, ...options });
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) => {
      res.resume();
      reject(new UpgradeRefused(res.statusCode ?? 0, res.headers, ''));
      ws.terminate();
    });
    ws.once('error', reject);
  });
}

/** Asserts `seqs` are consecutive integers, reporting the first break. */
export function consecutiveBreak(seqs: readonly number[]): string | undefined {
  for (let i = 1; i < seqs.length; i++) {
    if (seqs[i] !== (seqs[i - 1] as number) + 1) return `seq ${seqs[i - 1]} followed by ${seqs[i]} at index ${i}`;
  }
  return undefined;
}
