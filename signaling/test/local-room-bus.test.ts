/** The room bus conformance suite against the in-memory bus of a node that runs alone. */
import { LocalRoomBus } from '../src/bus/local-room-bus.js';
import { describeRoomBus } from './room-bus-conformance.js';

describeRoomBus('LocalRoomBus', async (options) => {
  const bus = new LocalRoomBus(options, options.onListenerError);
  return { node: async () => bus, close: () => bus.close() };
});
