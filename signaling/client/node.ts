/**
 * Node-only socket factory for the SDK, on `ws`: it can send `Authorization` headers and sees
 * refused upgrades (status and `Retry-After`), which the standard WebSocket API hides.
 */
import WebSocket from 'ws';
import type { SocketFactory, WebSocketLike } from './index.js';

export const nodeSocketFactory: SocketFactory = (url) => {
  const socket = new WebSocket(url, { perMessageDeflate: false });
  const like = socket as unknown as WebSocketLike & { upgradeRefusal?: WebSocketLike['upgradeRefusal'] };
  socket.on('unexpected-response', (_request, response) => {
    const retryAfter = Number(response.headers['retry-after']);
    like.upgradeRefusal = {
      status: response.statusCode ?? 0,
      retryAfterMs: Number.isFinite(retryAfter) ? retryAfter * 1000 : undefined,
    };
    response.resume();
    socket.terminate();
  });
  return like;
};
