/**
 * What PROTOCOL.md (the contract) lists, written down once for the tests, independently of the
 * implementation's registries: the tests compare those registries against it.
 */

/** Every method of the contract. */
export const CONTRACT_METHODS = [
  'room.join',
  'room.leave',
  'room.history',
  'session.refresh',
  'chat.send',
  'alert.publish',
  'moderation.kick',
  'moderation.mute',
  'moderation.setRole',
  'sfu.createTransport',
  'sfu.connectTransport',
  'sfu.produce',
  'sfu.consume',
  'sfu.resumeConsumer',
  'sfu.pauseProducer',
  'sfu.resumeProducer',
  'sfu.closeProducer',
  'sfu.setConsumerLayers',
  'sfu.restartIce',
  'sfu.createPlainTransport',
  'sfu.connectPlainTransport',
  'ping',
] as const;

export type ContractMethod = (typeof CONTRACT_METHODS)[number];

/** Every error code of the contract ("Errors and close codes"). */
export const CONTRACT_ERROR_CODES = [
  'BAD_REQUEST',
  'UNKNOWN_METHOD',
  'NOT_JOINED',
  'ALREADY_JOINED',
  'FORBIDDEN',
  'NOT_FOUND',
  'RATE_LIMITED',
  'ROOM_FULL',
  'UNAVAILABLE',
  'INTERNAL',
] as const;

/** Every close code of the contract, by meaning. */
export const CONTRACT_CLOSE_CODES = {
  normal: 1000,
  'server going away': 1001,
  policy: 1008,
  'frame too big': 1009,
  'internal error': 1011,
  'drain deadline reached': 1012,
  'token expired': 4001,
  'kicked or role revoked': 4003,
  'replaced by a newer session': 4009,
} as const;
