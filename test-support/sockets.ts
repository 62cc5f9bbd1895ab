/** Sockets in tests: refused upgrades, raw `ws` clients with options, and seq-order checks. */
import WebSocket from 'ws';
import { UpgradeRefused } from './harness.js';

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

export { deferred, sleep } from './async.js';

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
