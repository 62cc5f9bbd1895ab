/**
 * `RTC_PIPE_SRTP=always` on node processes that share one host's loopback (where `auto` would not
 * encrypt): the pipe between them is SRTP on both ends (each node logs it as it opens its end)
 * and the RTP still reaches the viewer on the other node. What crosses the wire is checked at the
 * SFU level (`sfu/test/node-pipes.test.ts`, through a recording UDP relay).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { useCluster } from '../../test-support/cluster.js';
import { publishOpusOn } from '../../test-support/cluster-media.js';
import { consumeToSink, MEDIA_ENV } from '../../test-support/media-flow.js';
import { flowsTo, type RtpSender, type RtpSink } from '../../test-support/rtp.js';

describe('RTC_PIPE_SRTP=always between two node processes', { timeout: 90_000 }, () => {
  const cluster = useCluster({
    nodes: 2,
    env: { ...MEDIA_ENV, MEDIASOUP_NUM_WORKERS: '1', RTC_PIPE_SRTP: 'always' },
  });
  const sinks: RtpSink[] = [];
  const senders: RtpSender[] = [];
  afterAll(() => {
    for (const s of [...sinks, ...senders]) s.close();
  });

  it('encrypts the pipe on loopback too, and the viewer on the other node gets the RTP', async () => {
    const roomId = 'srtp-always';
    const viewer = await cluster().recorded('srtp-mod', { node: 1, roomId, role: 'moderator', direct: true });
    const producerId = await publishOpusOn(cluster(), 0, roomId, 0x5e01, senders);
    const tap = await consumeToSink(viewer, producerId, sinks);
    await flowsTo([tap.sink], 10, 'RTP at the tap through the encrypted pipe');
    const pipeLog = (index: number, msg: string): Record<string, unknown>[] =>
      cluster()
        .node(index)
        .logs()
        .filter((l) => l['msg'] === msg && l['producerId'] === producerId);
    expect(pipeLog(1, 'producer piped in from a node')).toEqual([expect.objectContaining({ srtp: true })]);
    expect(pipeLog(0, 'producer piped out to a node')).toEqual([expect.objectContaining({ srtp: true })]);
  });
});
