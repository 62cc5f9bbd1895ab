/**
 * This node's own figures for the admin API: a page of its rooms with media figures, one room's
 * media health, its state and load (drain, Redis, workers, backend circuit, file descriptors).
 * Read by the admin service here and by other nodes over the cluster RPC.
 */
import { readdir, readFile } from 'node:fs/promises';
import type { MediaService } from '../../../sfu/src/media-service.js';
import { withTimeout } from '../../../sfu/src/media-metrics.js';
import type { DrainState } from '../drain.js';
import type { RoomSummary } from '../rooms/room-service.js';
import type { NodeAdminRoom, NodeDetail, NodeRoomMedia, WorkerLoad } from './admin-rpc.js';

/** How long the workers may take to report a room's media stats or their usage. */
const MEDIA_STATS_TIMEOUT_MS = 1000;

/** A stream losing more than this fraction of its packets (last RTCP interval) counts as lossy. */
export const LOSSY_FRACTION = 0.02;

/** Media figures of one direction summed over the node's rooms. */
export interface MediaTotals {
  bitrate: number;
  streams: number;
  lossy: number;
  worstFractionLost: number;
}

function emptyTotals(): MediaTotals {
  return { bitrate: 0, streams: 0, lossy: 0, worstFractionLost: 0 };
}

/** What the node tells its admin figures; read at every request. */
export interface AdminNodeSources {
  readonly nodeId: string;
  readonly version: string;
  readonly startedAt: number;
  /** The Redis mode of the configuration (`single`, `sentinel`, `cluster`), undefined alone. */
  readonly redisMode: string | undefined;
  /** Whether `MEDIA_ENABLED` asked for media. */
  readonly mediaEnabled: boolean;
  drain(): { state: DrainState; startedAt: number | undefined; deadline: number | undefined };
  /** Starts the drain (a no-op when under way); answers the state after. */
  startDrain(): { state: string; deadline: number | undefined };
  connections(): number;
  participants(): number;
  /** The room bus: `ok` or `degraded`. */
  busState(): string;
  /** This node's figures of each of its rooms. */
  rooms(): RoomSummary[];
  /** The SFU, when media is up. */
  media(): MediaService | undefined;
  /** The backend's circuit breaker state, once the node has a backend. */
  backendCircuit?(): string | undefined;
}

export class AdminNodeFigures {
  readonly #sources: AdminNodeSources;
  /** The last CPU reading of each worker process, to turn CPU time into a load. */
  readonly #cpuSeen = new Map<number, { cpuTimeMs: number; at: number }>();

  constructor(sources: AdminNodeSources) {
    this.#sources = sources;
  }

  get nodeId(): string {
    return this.#sources.nodeId;
  }

  /** This node's rooms after `after`, by room id, `limit` at most, with their media figures. */
  async rooms(after: string | undefined, limit: number): Promise<NodeAdminRoom[]> {
    const page = this.#sources
      .rooms()
      .filter((r) => after === undefined || r.roomId > after)
      .sort((a, b) => (a.roomId < b.roomId ? -1 : 1))
      .slice(0, limit);
    const media = this.#sources.media();
    return Promise.all(
      page.map(async (room): Promise<NodeAdminRoom> => {
        const health = await media?.roomMediaHealth(room.roomId, MEDIA_STATS_TIMEOUT_MS, { consumers: false });
        const measured = health?.producers.filter((p) => p.bitrate !== undefined) ?? [];
        return {
          ...room,
          producers: health?.producers.length ?? 0,
          publishBitrate:
            health && measured.length === health.producers.length
              ? measured.reduce((sum, p) => sum + (p.bitrate ?? 0), 0)
              : undefined,
        };
      }),
    );
  }

  /** One room's producers and consumers here, with bitrate and loss. */
  async roomMedia(roomId: string): Promise<NodeRoomMedia> {
    const nodeId = this.#sources.nodeId;
    const health = await this.#sources.media()?.roomMediaHealth(roomId, MEDIA_STATS_TIMEOUT_MS);
    return {
      nodeId,
      producers: (health?.producers ?? []).map((p) => ({ ...p, nodeId })),
      consumers: (health?.consumers ?? []).map((c) => ({ ...c, nodeId })),
      timedOut: health?.timedOut ?? 0,
    };
  }

  /**
   * The media health of every room here, summed per direction (`in`: the clients' producers,
   * `out`: the consumers sending to clients): bitrate, streams measured, streams losing more than
   * {@link LOSSY_FRACTION} and the worst loss. One stats request per producer and consumer.
   */
  async mediaTotals(): Promise<Record<'in' | 'out', MediaTotals>> {
    const totals = { in: emptyTotals(), out: emptyTotals() };
    const media = this.#sources.media();
    if (!media) return totals;
    const rooms = await Promise.all(
      this.#sources.rooms().map((r) => media.roomMediaHealth(r.roomId, MEDIA_STATS_TIMEOUT_MS)),
    );
    for (const health of rooms) {
      for (const [direction, streams] of [
        ['in', health?.producers ?? []],
        ['out', health?.consumers ?? []],
      ] as const) {
        const t = totals[direction];
        for (const s of streams) {
          if (s.bitrate === undefined) continue;
          t.streams += 1;
          t.bitrate += s.bitrate;
          const lost = s.fractionLost ?? 0;
          if (lost > LOSSY_FRACTION) t.lossy += 1;
          t.worstFractionLost = Math.max(t.worstFractionLost, lost);
        }
      }
    }
    return totals;
  }

  /** The drain deadline (epoch ms) while draining. */
  drainDeadline(): number | undefined {
    return this.#sources.drain().deadline;
  }

  /** The node's state and load. */
  async detail(): Promise<NodeDetail> {
    const s = this.#sources;
    const drain = s.drain();
    const media = s.media();
    const fds = await fileDescriptors();
    const stats = media?.stats();
    return {
      nodeId: s.nodeId,
      version: s.version,
      drainState: drain.state,
      drainStartedAt: drain.startedAt,
      drainDeadline: drain.deadline,
      connections: s.connections(),
      rooms: s.rooms().length,
      participants: s.participants(),
      uptimeSeconds: Math.round((Date.now() - s.startedAt) / 1000),
      redis: { state: s.busState(), mode: s.redisMode },
      media: {
        state: media ? 'ok' : s.mediaEnabled ? 'unavailable' : 'disabled',
        workers: media ? await this.#workers(media) : [],
        workerRestarts: stats?.workerRestarts ?? 0,
        producers: stats?.producers ?? 0,
        consumers: stats?.consumers ?? 0,
      },
      backend: s.backendCircuit?.() === undefined ? undefined : { circuit: s.backendCircuit?.() as string },
      openFds: fds?.open,
      maxFds: fds?.max,
    };
  }

  startDrain(): { state: string; deadline: number | undefined } {
    return this.#sources.startDrain();
  }

  async #workers(media: MediaService): Promise<WorkerLoad[]> {
    const usage = new Map((await withTimeout(media.workerUsage(), MEDIA_STATS_TIMEOUT_MS, [])).map((u) => [u.pid, u]));
    const now = Date.now();
    return media.workers().map((w) => {
      const u = usage.get(w.pid);
      const seen = this.#cpuSeen.get(w.pid);
      let cpu: number | undefined;
      if (u && seen && now > seen.at) cpu = Math.max(0, (u.cpuTimeMs - seen.cpuTimeMs) / (now - seen.at));
      if (u) this.#cpuSeen.set(w.pid, { cpuTimeMs: u.cpuTimeMs, at: now });
      return {
        workerIndex: w.workerIndex,
        pid: w.pid,
        routers: w.routers,
        consumers: w.consumers,
        cpu,
        maxRssBytes: u ? u.maxRssKb * 1024 : undefined,
      };
    });
  }
}

/** Open descriptors of this process and their soft limit, from /proc (undefined where it does not exist). */
async function fileDescriptors(): Promise<{ open: number; max: number | undefined } | undefined> {
  try {
    const open = (await readdir('/proc/self/fd')).length;
    const limits = await readFile('/proc/self/limits', 'utf8');
    const soft = /^Max open files\s+(\d+)/m.exec(limits)?.[1];
    return { open, max: soft === undefined ? undefined : Number(soft) };
  } catch {
    return undefined;
  }
}
