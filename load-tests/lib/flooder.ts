/**
 * The flooder: one abusive client, run as its own process (so its send loop does not stall the
 * receivers' event loop). It joins, then writes junk and chat frames as fast as the socket takes
 * them, paced to at most FLOOD_RATE frames/s; when the server closes it, it reconnects (as an
 * attacker would), until FLOOD_DURATION_MS or FLOOD_MAX_FRAMES. Prints one JSON line of counts.
 *
 * Environment: FLOOD_URL (ws://127.0.0.1:…), FLOOD_LOCAL_ADDRESS, FLOOD_RATE (50000),
 * FLOOD_DURATION_MS (10000, at most 60000), FLOOD_MAX_FRAMES (rate × duration).
 */
import WebSocket from 'ws';

const url = process.env.FLOOD_URL ?? '';
if (!url.startsWith('ws://127.') && !url.startsWith('ws://localhost')) {
  process.stderr.write('flooder: FLOOD_URL must be a loopback ws:// URL\n');
  process.exit(2);
}
const localAddress = process.env.FLOOD_LOCAL_ADDRESS;
const rate = Math.min(50_000, Number(process.env.FLOOD_RATE ?? 50_000));
const durationMs = Math.min(60_000, Number(process.env.FLOOD_DURATION_MS ?? 10_000));
const maxFrames = Math.min(Number(process.env.FLOOD_MAX_FRAMES ?? Infinity), Math.ceil((rate * durationMs) / 1000));
const MAX_BUFFERED = 256 * 1024;

const counts = {
  framesSent: 0,
  connections: 0,
  upgradesRefused: 0,
  refusedStatus: {} as Record<string, number>,
  closeCodes: {} as Record<string, number>,
  received: 0,
  rateLimitedReplies: 0,
  okReplies: 0,
  otherErrorReplies: 0,
  seconds: 0,
};

const started = performance.now();
const deadline = started + durationMs;
let n = 0;

function frame(): string {
  n++;
  return n % 2 === 0 ? `{"id":${n},"method":"chat.send","data":{"text":"flood ${n}"}}` : `junk ${n} {{{ not json`;
}

function connectOnce(): Promise<void> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, {
      perMessageDeflate: false,
      skipUTF8Validation: true,
      handshakeTimeout: 5000,
      ...(localAddress ? { localAddress } : {}),
    });
    let timer: NodeJS.Timeout | undefined;
    let refused = false;
    const finish = (): void => {
      clearTimeout(timer);
      // Back off a little after a refused upgrade; reconnect at once after a close.
      if (refused) setTimeout(resolve, 100);
      else resolve();
    };
    ws.on('error', () => {});
    ws.once('unexpected-response', (_req, res) => {
      refused = true;
      counts.upgradesRefused++;
      const status = String(res.statusCode);
      counts.refusedStatus[status] = (counts.refusedStatus[status] ?? 0) + 1;
      res.resume();
      ws.terminate();
      setTimeout(resolve, 1000); // in case no 'close' follows
    });
    ws.on('message', (data: Buffer) => {
      counts.received++;
      if (data[2] !== 0x69 /* {"i */) return;
      const text = data.toString();
      if (text.includes('"ok":true')) counts.okReplies++;
      else if (text.includes('RATE_LIMITED')) counts.rateLimitedReplies++;
      else counts.otherErrorReplies++;
    });
    ws.once('close', (code) => {
      if (!refused) counts.closeCodes[String(code)] = (counts.closeCodes[String(code)] ?? 0) + 1;
      finish();
    });
    ws.once('open', () => {
      counts.connections++;
      ws.send('{"id":0,"method":"room.join","data":{}}');
      const pump = (): void => {
        if (ws.readyState !== WebSocket.OPEN) return;
        const now = performance.now();
        if (now >= deadline || counts.framesSent >= maxFrames) {
          ws.close(1000);
          return;
        }
        const allowed = Math.min(512, Math.floor(((now - started) * rate) / 1000) - counts.framesSent);
        for (let i = 0; i < allowed && ws.bufferedAmount < MAX_BUFFERED; i++) {
          ws.send(frame());
          counts.framesSent++;
        }
        timer = setTimeout(pump, ws.bufferedAmount >= MAX_BUFFERED ? 2 : 0);
      };
      pump();
    });
  });
}

while (performance.now() < deadline && counts.framesSent < maxFrames) await connectOnce();
counts.seconds = (performance.now() - started) / 1000;
process.stdout.write(JSON.stringify(counts) + '\n');
process.exit(0);
