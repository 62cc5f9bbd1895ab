/**
 * Reference: the same room chat on Socket.IO 4 with the Redis adapter (@socket.io/redis-adapter
 * on ioredis), the usual way to scale Socket.IO across processes. WebSocket transport only, no
 * compression, no auth beyond a non-empty `token` query parameter. `room.join` joins the room
 * named by the `room` query parameter; `chat.send` broadcasts `chat.message` (the same fields as
 * trading-room's event) to the room through the adapter and acknowledges with `{ok, seq}` (the
 * `seq` counts per process: Socket.IO has no room-wide order across servers).
 *
 * Redis, one of:
 * - `REDIS_URL`: one server; the classic adapter (`createAdapter`: PUBLISH, every server
 *   PSUBSCRIBEs to all rooms), or with `SOCKETIO_ADAPTER=sharded` the sharded adapter.
 * - `REDIS_CLUSTER_NODES=host:port,…`: a Redis Cluster through an ioredis `Cluster` with sharded
 *   subscribers, and the sharded adapter (`createShardedAdapter`, Redis ≥ 7: SPUBLISH to one
 *   channel per room, each server SSUBSCRIBEs to the rooms it has members in).
 *
 *   REDIS_URL=redis://127.0.0.1:6379 PORT=8091 HOST=127.0.0.1 node --import tsx load-tests/baselines/socketio-server.ts
 */
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import { Server } from 'socket.io';
import { createAdapter, createShardedAdapter } from '@socket.io/redis-adapter';
import { Cluster, Redis } from 'ioredis';

const port = Number(process.env.PORT ?? 8091);
const host = process.env.HOST ?? '127.0.0.1';
const redisUrl = process.env.REDIS_URL;
const clusterNodes = process.env.REDIS_CLUSTER_NODES;
const sharded = clusterNodes !== undefined || process.env.SOCKETIO_ADAPTER === 'sharded';
if (!redisUrl && !clusterNodes) {
  process.stderr.write('socketio-server: REDIS_URL or REDIS_CLUSTER_NODES is required\n');
  process.exit(2);
}

function openRedis(): { pub: Redis | Cluster; sub: Redis | Cluster } {
  if (clusterNodes) {
    const seeds = clusterNodes.split(',').map((address) => {
      const [seedHost = '127.0.0.1', seedPort = '6379'] = address.trim().split(':');
      return { host: seedHost, port: Number(seedPort) };
    });
    const pub = new Cluster(seeds, { shardedSubscribers: true });
    return { pub, sub: pub.duplicate() };
  }
  const pub = new Redis(redisUrl as string, { lazyConnect: false, maxRetriesPerRequest: 3 });
  return { pub, sub: pub.duplicate() };
}

const { pub, sub } = openRedis();
const seqs = new Map<string, number>();

const httpServer = createServer((_req, res) => {
  res.writeHead(200, { 'content-type': 'text/plain' }).end('socket.io baseline\n');
});
const io = new Server(httpServer, {
  transports: ['websocket'],
  perMessageDeflate: false,
  httpCompression: false,
  serveClient: false,
  maxHttpBufferSize: 64 * 1024,
  adapter: sharded ? createShardedAdapter(pub, sub) : createAdapter(pub, sub),
});

io.use((socket, next) => {
  const token = socket.handshake.query.token;
  if (typeof token !== 'string' || token === '') return next(new Error('unauthorized'));
  next();
});

type Ack = (body: unknown) => void;

io.on('connection', (socket) => {
  const q = socket.handshake.query;
  const userId = typeof q.user === 'string' ? q.user : 'anonymous';
  const roomId = typeof q.room === 'string' ? q.room : 'bench';
  const participantId = randomUUID();
  let joined = false;
  socket.on('room.join', (_data: unknown, ack?: Ack) => {
    void socket.join(roomId);
    joined = true;
    ack?.({ ok: true, participantId, roomId });
  });
  socket.on('chat.send', (data: { text?: unknown } | undefined, ack?: Ack) => {
    if (!joined || typeof data?.text !== 'string') {
      ack?.({ ok: false, error: { code: 'BAD_REQUEST' } });
      return;
    }
    const seq = (seqs.get(roomId) ?? 0) + 1;
    seqs.set(roomId, seq);
    const messageId = randomUUID();
    io.to(roomId).emit(
      'chat.message',
      { messageId, from: { participantId, userId, name: userId }, text: data.text, ts: Date.now() },
      seq,
    );
    ack?.({ ok: true, messageId, seq });
  });
});

if (pub instanceof Cluster) {
  await pub.ping(); // routed to some master: the Cluster client is connected and knows the slots
} else {
  await Promise.all([pub.ping(), sub.ping()]);
}
httpServer.listen(port, host);

const shutdown = (): void => {
  void io.close();
  pub.disconnect();
  sub.disconnect();
  process.exit(0);
};
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
