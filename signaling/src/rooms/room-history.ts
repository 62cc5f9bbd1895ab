/**
 * `room.history`: a page of the room's retained chat and alerts, read from the bus's log (so any
 * node of a cluster serves it) and answered from the stored frames, concatenated as they are:
 * one encoded copy of each event serves every request.
 */
import { HISTORY_KINDS, type HistoryData, type HistoryResult } from '../protocol/history.js';
import { EncodedResult } from '../protocol/method.js';
import type { Membership } from './room-members.js';
import type { RoomContext } from './room-context.js';

/** Events one answer holds when the request names no `limit`. */
export const HISTORY_DEFAULT_LIMIT = 50;
/** Frames one answer holds at most (bytes of JSON); older events are left to the next page. */
export const HISTORY_MAX_BYTES = 256 * 1024;

/** Reads the page `data` asks for, from the room's current epoch. */
export async function readHistory(
  ctx: RoomContext,
  { room }: Membership,
  data: HistoryData,
): Promise<EncodedResult<HistoryResult>> {
  const kinds = data.kinds ?? (Object.keys(HISTORY_KINDS) as (keyof typeof HISTORY_KINDS)[]);
  let page;
  try {
    page = await ctx.bus.readBefore(room.id, {
      beforeSeq: data.beforeSeq,
      limit: data.limit ?? HISTORY_DEFAULT_LIMIT,
      events: new Set(kinds.map((kind) => HISTORY_KINDS[kind])),
    });
  } catch (error) {
    ctx.metrics.historyRequests.inc({ outcome: 'error' });
    throw error;
  }
  // Newest events first into the size bound; the older ones left out come with the next page.
  let first = page.events.length;
  let bytes = 0;
  while (first > 0) {
    const size = Buffer.byteLength((page.events[first - 1] as { frame: string }).frame) + 1;
    if (bytes + size > HISTORY_MAX_BYTES && first < page.events.length) break;
    bytes += size;
    first--;
  }
  const events = page.events.slice(first);
  const cut = first > 0;
  const hasMore = cut || page.hasMore;
  const nextBeforeSeq = cut ? (events[0]?.seq ?? page.nextBeforeSeq) : page.nextBeforeSeq;
  ctx.metrics.historyRequests.inc({ outcome: 'ok' });
  ctx.metrics.historyEventsServed.inc(events.length);
  const more = hasMore ? `,"nextBeforeSeq":${nextBeforeSeq}` : '';
  return new EncodedResult(
    `{"events":[${events.map((e) => e.frame).join(',')}],"hasMore":${hasMore}${more},` +
      `"truncated":${page.truncated},"epoch":${JSON.stringify(page.epoch)}}`,
  );
}
