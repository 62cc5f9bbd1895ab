/**
 * The media layer's state machine: its transition table alone, and a MediaSession following a
 * real core client against a real node (one without media: the parts that need a browser's
 * WebRTC run in Chromium, in browser-media-sdk.test.ts).
 */
import { describe, expect, it } from 'vitest';
import {
  MediaError,
  MediaSession,
  MediaStateMachine,
  MediaUnavailableError,
  type MediaState,
  type MediaStateEvent,
} from '../client/media.js';
import { nodePerTest } from '../../test-support/harness.js';

describe('MediaStateMachine', () => {
  /** Fires `events` from idle; returns the states it went through (changes only) and the refused events. */
  function run(events: MediaStateEvent[]): { states: MediaState[]; refused: MediaStateEvent[] } {
    const states: MediaState[] = [];
    const machine = new MediaStateMachine((state) => states.push(state));
    const refused = events.filter((event) => !machine.fire(event));
    return { states, refused };
  }

  it('goes idle → connecting → live, and live → recovering → live when the connection drops', () => {
    expect(run(['start', 'ready', 'lost', 'start', 'ready'])).toEqual({
      states: ['connecting', 'live', 'recovering', 'live'],
      refused: [],
    });
  });

  it('a drop while connecting recovers; a drop before any media stays idle', () => {
    expect(run(['start', 'lost', 'ready']).states).toEqual(['connecting', 'recovering', 'live']);
    expect(run(['lost', 'lost']).states).toEqual([]);
  });

  it('a node without media sends it back to idle from anywhere, and start tries again', () => {
    expect(run(['start', 'ready', 'lost', 'unavailable', 'start']).states).toEqual([
      'connecting',
      'live',
      'recovering',
      'idle',
      'connecting',
    ]);
  });

  it('refuses what the state does not take, and nothing leaves closed', () => {
    expect(run(['ready']).refused).toEqual(['ready']);
    expect(run(['start', 'close', 'start', 'ready', 'lost', 'close'])).toEqual({
      states: ['connecting', 'closed'],
      refused: ['start', 'ready', 'lost', 'close'],
    });
  });
});

describe('MediaSession with a real client and node', () => {
  const startNode = nodePerTest({ MEDIA_ENABLED: 'false' });

  it('stays idle on a node without media, says so as a typed error, and closes with the client', async () => {
    const t = await startNode();
    const client = await t.client('viewer', { role: 'presenter', roomId: 'no-media' });
    const media = new MediaSession(client);
    const states: MediaState[] = [];
    media.on('statechange', (state) => states.push(state));
    expect(media.state).toBe('idle');

    const join = await client.connect();
    expect(join.routerRtpCapabilities).toBeNull();
    expect(media.state).toBe('idle');
    const fakeTrack = { kind: 'video', addEventListener() {}, stop() {} } as unknown as MediaStreamTrack;
    const error = await media.publishCamera({ track: fakeTrack }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(MediaUnavailableError);
    expect((error as MediaError).code).toBe('unavailable');

    client.close();
    expect(media.state).toBe('closed');
    expect(states).toEqual(['closed']);
  });
});
