import type { types } from 'mediasoup';

/**
 * Media codecs of every router. Payload types are fixed so that every router of every node
 * announces the same RTP capabilities (a client may consume from any of a room's routers) and so
 * that ingest tools can be told which payload type to send (`docs/sfu.md`).
 *
 * - opus 48000/2, payload type 100.
 * - VP8, payload type 101 (RTX 102).
 * - VP9 profile 2 (10-bit capable), payload type 103 (RTX 104).
 * - H264 constrained baseline 3.1 (`42e01f`), packetization-mode 1, payload type 105 (RTX 106):
 *   what OBS, ffmpeg and every browser can send.
 */
export const mediaCodecs: readonly types.RouterRtpCodecCapability[] = Object.freeze([
  {
    kind: 'audio',
    mimeType: 'audio/opus',
    preferredPayloadType: 100,
    clockRate: 48000,
    channels: 2,
  },
  {
    kind: 'video',
    mimeType: 'video/VP8',
    preferredPayloadType: 101,
    clockRate: 90000,
  },
  {
    kind: 'video',
    mimeType: 'video/VP9',
    preferredPayloadType: 103,
    clockRate: 90000,
    parameters: { 'profile-id': 2 },
  },
  {
    kind: 'video',
    mimeType: 'video/H264',
    preferredPayloadType: 105,
    clockRate: 90000,
    parameters: {
      'packetization-mode': 1,
      'profile-level-id': '42e01f',
      'level-asymmetry-allowed': 1,
    },
  },
]);

/** Payload type of opus in every router's RTP capabilities (see {@link mediaCodecs}). */
export const OPUS_PAYLOAD_TYPE = 100;
