/**
 * The admin API's routes as the protocol reference lists them (`scripts/protocol-doc.ts`): method,
 * path, query, answers and the fields of what they return. The admin API tests call every route
 * listed here, with and without the token.
 */
import { ADMIN_PAGE_DEFAULT, ADMIN_PAGE_MAX } from './admin-rpc.js';

export interface AdminRouteDoc {
  readonly method: 'GET' | 'POST';
  /** With `:param` placeholders. */
  readonly path: string;
  readonly summary: string;
  readonly query?: string;
  /** Status codes besides 401 (no or wrong token) and 403 (admin API disabled). */
  readonly answers: string;
  /** What the answer's fields mean. */
  readonly fields?: readonly (readonly [field: string, meaning: string])[];
}

const PAGE_QUERY =
  `\`limit\` (1–${ADMIN_PAGE_MAX}, default ${ADMIN_PAGE_DEFAULT}; anything else 400), ` +
  '`cursor` (the previous page’s `nextCursor`; one this API did not give out: 400)';

export const ADMIN_ROUTES: readonly AdminRouteDoc[] = [
  {
    method: 'GET',
    path: '/admin/rooms',
    summary: 'A page of the rooms with members on any live node of the cluster, in room id order.',
    query: PAGE_QUERY,
    answers: '200; 503 with `Retry-After` when Redis (or the webhook outbox) does not answer',
    fields: [
      ['nodeId', 'the node that answered'],
      ['rooms[]', 'one entry per room, the nodes’ figures merged (below)'],
      ['rooms[].roomId, epoch, lastSeq, createdAt', 'the room’s identity and position'],
      ['rooms[].participants, participantsByRole', 'members on every node, by role (presenter, moderator, trader)'],
      ['rooms[].participantsByNode', 'members per node id'],
      ['rooms[].connected', 'members with an open socket (the others are within their resume grace)'],
      ['rooms[].publishers, producers', 'participant ids with producers; producers counted on every node'],
      ['rooms[].publishBitrate', 'bits/s of the producers as the workers measure them; absent when not measured'],
      [
        'rooms[].eventsPerMinute, chatMessagesPerMinute, alertsPerMinute',
        'durable events, chat messages and alerts in the last one to two minutes, per minute',
      ],
      ['rooms[].nodes', 'the nodes with members in the room'],
      [
        'rooms[].webhookBacklog',
        '`{pending, oldestAgeMs, oldestPendingAt, oldestWebhookId, oldestEvent}`: the room’s webhooks the backend has not acknowledged yet and the oldest of them (the next to deliver; read from the outbox, with Redis the cluster’s whichever node delivers); `{pending: 0, oldestAgeMs: 0}` when none waits; `null` when webhooks are off',
      ],
      ['nextCursor', 'pass as `cursor` for the next page; `null` on the last page'],
      ['unreachableNodes', 'live nodes that did not answer within 2 s (their figures are missing)'],
    ],
  },
  {
    method: 'GET',
    path: '/admin/rooms/:roomId',
    summary: 'One room across the cluster, with its participants and the media health on every node.',
    answers: '200; 404 when no node knows the room; 503 when Redis does not answer',
    fields: [
      ['(room figures)', 'those of `/admin/rooms`, from the room’s presence'],
      ['participantList[]', 'presence: participantId, userId, name, role, joinedAt, nodeId'],
      [
        'participantDetails[]',
        'participantId, userId, name, role, nodeId, joinedAt, connectionAgeMs (since the session joined), connected (false within the resume grace)',
      ],
      [
        'media.producers[]',
        'producerId, participantId, nodeId, kind, source, paused, bitrate (bits/s), packetsLost, fractionLost (0..1), score (0..10)',
      ],
      [
        'media.consumers[]',
        'consumerId, participantId, producerId, nodeId, kind, paused, bitrate, packetsLost, fractionLost, score',
      ],
      ['media.timedOut', 'producers and consumers whose stats did not arrive within 1 s'],
      ['unreachableNodes', 'nodes of the room that did not answer'],
    ],
  },
  {
    method: 'POST',
    path: '/admin/rooms/:roomId/close',
    summary: 'Closes the room on every node: members get `session.kicked` and are closed with 4003.',
    answers: '200 `{closed: true}`; 404 when no node knows the room',
  },
  {
    method: 'GET',
    path: '/admin/nodes',
    summary: 'A page of the nodes Redis knows (dead ones for a while after their last heartbeat), in node id order.',
    query: PAGE_QUERY,
    answers: '200; 503 with `Retry-After` when Redis does not answer within 2 s',
    fields: [
      [
        'nodes[].nodeId, instanceId, state, connections, rooms, startedAt, heartbeatAt, drainDeadline, version, alive',
        'the node’s heartbeat entry (`state`: running or draining; `alive`: heartbeat within NODE_TTL_MS)',
      ],
      ['nodes[].drainOverdue', 'draining past its drain deadline'],
      [
        'nodes[].detail',
        'what the node reports of itself: drainState, drainStartedAt, drainDeadline, connections, rooms, participants, uptimeSeconds, redis `{state, mode}`, media `{state, workers[{workerIndex, pid, routers, consumers, cpu, maxRssBytes}], workerRestarts, producers, consumers}`, backend `{circuit}`, openFds, maxFds; absent for a dead node or one that did not answer',
      ],
      ['nextCursor, unreachableNodes', 'as in `/admin/rooms`'],
    ],
  },
  {
    method: 'POST',
    path: '/admin/nodes/:nodeId/drain',
    summary: 'Drains that node (this one, or another through the cluster RPC); a node draining already stays as it is.',
    answers: '202 `{nodeId, state, deadline}`; 404 when no live node has that id; 503 when it does not answer',
  },
  {
    method: 'POST',
    path: '/admin/drain',
    summary: 'Drains the node asked.',
    answers: '202 `{state, deadline}`',
  },
  {
    method: 'GET',
    path: '/admin/webhooks/dead-letters',
    summary:
      'The newest webhook dead letters (webhooks the backend did not acknowledge within `BACKEND_WEBHOOK_MAX_ATTEMPTS`), newest first; with Redis the cluster’s, from any node.',
    query: '`limit` (1–1000, default 100; anything else 400)',
    answers: '200; 404 when webhooks are off (no `BACKEND_URL` or `BACKEND_WEBHOOK_SECRET`)',
    fields: [
      [
        'deadLetters[].deadLetterId, webhookId, roomId, type',
        'the dead letter’s own id (what a replay names), the `webhook-id` it was sent with, its room and webhook type',
      ],
      ['deadLetters[].body', 'the webhook body as sent'],
      ['deadLetters[].attempts, lastError, deadAt', 'attempts made, the last failure, when it was given up (epoch ms)'],
    ],
  },
  {
    method: 'POST',
    path: '/admin/webhooks/dead-letters/replay',
    summary:
      'Sends dead letters once more, oldest first, each with its original `webhook-id` and a fresh signature; those the backend acknowledges are removed. Body: `{"ids": [deadLetterId, …]}` (1 to 100) or `{}` (the 100 oldest).',
    answers: '200; 400 when the body is not JSON, not of that shape or larger than 64 KiB; 404 when webhooks are off',
    fields: [
      ['replayed', 'the dead letter ids delivered now (and removed)'],
      ['failed[]', '`{deadLetterId, error}` of those the backend refused again (they stay)'],
    ],
  },
];
