/**
 * The origin's "producer closed" (`media.pipeClosed` over the cluster RPC) never reaches a node
 * that pipes the producer in. The RPC is Redis pub/sub: a message published while the receiving
 * node is not subscribed is gone. Here the viewer node is stopped (SIGSTOP) and Redis drops its
 * RPC subscription (`CLIENT KILL`), as a broken link would; the presenter closes its producer on
 * the origin, whose message is published to a channel nobody listens on; then the viewer node runs
 * again and subscribes again, with no message to get. It must still close the pipe (its viewer's
 * consumer with `producer-closed`) on its own, from the producer directory, within its check period.
 */
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { rpcChannel } from '../src/cluster/cluster-rpc.js';
import { eventually } from '../../test-support/async.js';
import { useCluster, type TestCluster } from '../../test-support/cluster.js';
import { mediaFigures, notificationData, pipesOf, rawPresenter } from '../../test-support/cluster-media.js';
import { consumeToSink, MEDIA_ENV, publishOpus } from '../../test-support/media-flow.js';
import { flowsTo, RtpSender, type RtpSink } from '../../test-support/rtp.js';

const NODE_TTL_MS = 3000;

/** Drops node `nodeId`'s RPC subscription in Redis (its subscriber connection is killed). */
async function dropRpcSubscription(redis: Redis, nodeId: string): Promise<void> {
  const clients = String(await redis.call('CLIENT', 'LIST', 'TYPE', 'pubsub'));
  const ids = clients
    .split('\n')
    .filter((line) => line.includes(` name=trading-room-rpc-${nodeId} `))
    .map((line) => /(?:^|\s)id=(\d+)/.exec(line)?.[1])
    .filter((id): id is string => id !== undefined);
  expect(ids.length, `the RPC subscriber of ${nodeId}`).toBe(1);
  for (const id of ids) await redis.call('CLIENT', 'KILL', 'ID', id);
}

describe('a "producer closed" message from the origin gets lost', { timeout: 90_000 }, () => {
  const cluster = useCluster({ nodes: 2, nodeTtlMs: NODE_TTL_MS, env: { ...MEDIA_ENV, MEDIASOUP_NUM_WORKERS: '1' } });
  const sinks: RtpSink[] = [];
  const senders: RtpSender[] = [];
  let redis: Redis | undefined;
  afterAll(() => {
    for (const s of [...sinks, ...senders]) s.close();
    redis?.disconnect();
  });

  const directoryHas = async (c: TestCluster, client: Redis, roomId: string, producerId: string): Promise<boolean> =>
    (await client.hexists(`${c.keyPrefix}:{room:${roomId}}:producers`, producerId)) === 1;

  it('the viewer node closes its pipe from the directory: consumer.closed, no pipe, no consumer left', async () => {
    const c = cluster();
    const client = new Redis(c.redis.url);
    redis = client;
    const roomId = 'lost-pipe-closed';
    const viewer = await c.recorded('reconcile-mod', { node: 1, roomId, role: 'moderator', direct: true });
    const presenter = await rawPresenter(c, 0, 'reconcile-presenter', roomId);
    const sender = new RtpSender(0x4e01);
    senders.push(sender);
    const { producerId } = await publishOpus(presenter, sender);
    const tap = await consumeToSink(viewer, producerId, sinks);
    await flowsTo([tap.sink], 10, 'RTP at the tap on the other node');
    expect(await pipesOf(c, 1)).toEqual({ in: 1, out: 0 });

    const viewerNode = c.node(1);
    viewerNode.signal('SIGSTOP');
    try {
      await dropRpcSubscription(client, 'node-2');
      expect(await client.pubsub('NUMSUB', rpcChannel(c.keyPrefix, 'node-2'))).toEqual([
        rpcChannel(c.keyPrefix, 'node-2'),
        0,
      ]);
      await presenter.client.request('sfu.closeProducer', { producerId });
      // The origin has closed its end (and published its message to nobody) and withdrawn the producer.
      await eventually(async () => (await pipesOf(c, 0)).out === 0, 10_000, 'the origin’s end of the pipe closed');
      await eventually(
        async () => !(await directoryHas(c, client, roomId, producerId)),
        10_000,
        'the producer withdrawn',
      );
    } finally {
      viewerNode.signal('SIGCONT');
    }

    // The node checks its pipes every third of the TTL; a little more for a loaded machine.
    await eventually(
      () => notificationData(viewer, 'consumer.closed').length > 0,
      NODE_TTL_MS + 5000,
      'consumer.closed at the viewer',
    );
    expect(notificationData(viewer, 'consumer.closed')).toEqual([
      { consumerId: tap.consumerId, reason: 'producer-closed' },
    ]);
    expect(await mediaFigures(c, 1)).toMatchObject({ pipesIn: 0, pipesOut: 0, consumers: 0 });
    // The node is whole again once it has subscribed again: a new pipe of a new producer works.
    await eventually(
      async () => (await client.pubsub('NUMSUB', rpcChannel(c.keyPrefix, 'node-2')))[1] === 1,
      10_000,
      'the viewer node subscribed to its RPC channel again',
    );
    const next = await publishOpus(presenter, sender);
    const nextTap = await consumeToSink(viewer, next.producerId, sinks);
    await flowsTo([nextTap.sink], 10, 'RTP of a new producer at the tap');
  });
});
