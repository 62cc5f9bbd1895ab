/**
 * Baseline: the least a WebSocket server can do for room chat. Plain `ws`, no auth beyond a
 * non-empty `token` query parameter, rooms in a Map, and on `chat.send` the broadcast is encoded
 * once (one JSON.stringify, one Buffer), framed once, and that one frame buffer is written to
 * every socket of the room. It speaks trading-room's wire format (`room.join`, `chat.send`,
 * `{"event":"chat.message",...,"seq":n}` with the same fields), so the same clients drive it
 * and the bytes on the wire are the same.
 *
 *   PORT=8090 HOST=127.0.0.1 node --import tsx load-tests/baselines/bare-ws-server.ts
 *
 * BARE_MODE=preframed (default): frame once with ws's `Sender.frame`, `socket.write` per client.
 * BARE_MODE=send: `ws.send(buffer)` per client (ws frames each copy's header itself).
 */
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { Duplex } from 'node:stream';
import * as wsModule from 'ws';
import { WebSocketServer, WebSocket } from 'ws';

/** ws's public frame builder (`Sender.frame`), missing from @types/ws. */
interface FrameOptions {
  fin: boolean;
  opcode: number;
  mask: boolean;
  readOnly: boolean;
  rsv1: boolean;
}
const { Sender } = wsModule as unknown as { Sender: { frame(data: Buffer, options: FrameOptions): Buffer[] } };

const port = Number(process.env.PORT ?? 8090);
const host = process.env.HOST ?? '127.0.0.1';
const mode = process.env.BARE_MODE === 'send' ? 'send' : 'preframed';

interface Client {
  readonly ws: WebSocket;
  readonly socket: Duplex;
  readonly participantId: string;
  readonly userId: string;
  readonly roomId: string;
  joined: boolean;
}

interface Room {
  readonly members: Set<Client>;
  seq: number;
}

const rooms = new Map<string, Room>();
const wss = new WebSocketServer({
  noServer: true,
  perMessageDeflate: false,
  clientTracking: false,
  maxPayload: 64 * 1024,
});

const server = createServer((_req, res) => {
  res.writeHead(200, { 'content-type': 'text/plain' }).end('bare-ws baseline\n');
});

server.on('upgrade', (req, socket, head) => {
  socket.on('error', () => {});
  const url = new URL(req.url ?? '/', 'http://localhost');
  const token = url.searchParams.get('token');
  if (!token) {
    socket.end('HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    return;
  }
  const userId = url.searchParams.get('user') ?? 'anonymous';
  const roomId = url.searchParams.get('room') ?? 'bench';
  wss.handleUpgrade(req, socket, head, (ws) => {
    const client: Client = { ws, socket, participantId: randomUUID(), userId, roomId, joined: false };
    ws.on('message', (data, isBinary) => onMessage(client, data as Buffer, isBinary));
    ws.on('error', () => {});
    ws.on('close', () => rooms.get(roomId)?.members.delete(client));
  });
});

function reply(client: Client, id: unknown, ok: boolean, body: unknown): void {
  const key = ok ? 'data' : 'error';
  client.ws.send(`{"id":${JSON.stringify(id ?? null)},"ok":${ok},"${key}":${JSON.stringify(body)}}`);
}

function onMessage(client: Client, data: Buffer, isBinary: boolean): void {
  let request: { id?: unknown; method?: unknown; data?: { text?: unknown } };
  try {
    if (isBinary) throw new Error('binary');
    request = JSON.parse(data.toString()) as typeof request;
  } catch {
    reply(client, null, false, { code: 'BAD_REQUEST', message: 'frame is not valid JSON' });
    return;
  }
  if (request.method === 'room.join') {
    let room = rooms.get(client.roomId);
    if (!room) rooms.set(client.roomId, (room = { members: new Set(), seq: 0 }));
    room.members.add(client);
    client.joined = true;
    reply(client, request.id, true, { participantId: client.participantId, roomId: client.roomId });
    return;
  }
  if (request.method === 'chat.send' && client.joined && typeof request.data?.text === 'string') {
    const room = rooms.get(client.roomId) as Room;
    const seq = ++room.seq;
    const messageId = randomUUID();
    const event = {
      event: 'chat.message',
      data: {
        messageId,
        from: { participantId: client.participantId, userId: client.userId, name: client.userId },
        text: request.data.text,
        ts: Date.now(),
      },
      seq,
    };
    const payload = Buffer.from(JSON.stringify(event));
    if (mode === 'send') {
      for (const member of room.members) member.ws.send(payload, { binary: false });
    } else {
      const frame = Buffer.concat(
        Sender.frame(payload, { fin: true, opcode: 1, mask: false, readOnly: true, rsv1: false }),
      );
      for (const member of room.members) if (member.ws.readyState === WebSocket.OPEN) member.socket.write(frame);
    }
    reply(client, request.id, true, { messageId, seq });
    return;
  }
  reply(client, request.id, false, { code: 'BAD_REQUEST', message: 'unsupported request' });
}

server.listen(port, host);
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
