/**
 * What PROTOCOL.md (the contract) lists, written down once for the tests, independently of the
 * implementation's registries: the tests compare those registries against it.
 */

/** Every method of the contract. */
export const CONTRACT_METHODS = [
  'room.join',
  'room.leave',
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
