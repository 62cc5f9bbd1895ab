/**
 * Renders the protocol reference (docs/protocol.md) from the zod schemas, the error catalogue
 * and the close codes, so the reference cannot drift from the code.
 */
import { z } from 'zod';
import { METHODS } from '../signaling/src/protocol/index.js';
import { durableEventSchemas, ephemeralEventSchemas } from '../signaling/src/protocol/notifications.js';
import { requestEnvelopeSchema } from '../signaling/src/protocol/common.js';
import { CloseCode, ERROR_CODES, HTTP_ONLY_ERROR_CODES, HTTP_STATUS } from '../signaling/src/errors.js';
import { CONFIG_VARIABLES } from '../signaling/src/config.js';
import { ADMIN_ROUTES } from '../signaling/src/http/admin-routes.js';

function schemaBlock(schema: z.ZodType, io: 'input' | 'output'): string {
  const json = z.toJSONSchema(schema, { io, unrepresentable: 'any', target: 'draft-2020-12' }) as Record<
    string,
    unknown
  >;
  delete json.$schema;
  return '```json\n' + JSON.stringify(json, null, 2) + '\n```';
}

export function renderProtocolDoc(): string {
  const out: string[] = [];
  out.push('# Protocol reference (generated)');
  out.push('');
  out.push(
    'Generated from the zod schemas in `signaling/src/protocol/` by `npm run docs:protocol`; a test fails when this file is stale. ' +
      'The contract itself is PROTOCOL.md in the shared design folder; this page adds the exact schemas and what the contract leaves open. ' +
      'Decisions behind it are in `docs/decisions.md`.',
  );
  out.push('');
  out.push('## Request envelope');
  out.push('');
  out.push(schemaBlock(requestEnvelopeSchema, 'input'));
  out.push('');
  out.push('## Methods');
  for (const [name, def] of Object.entries(METHODS)) {
    out.push('');
    out.push(`### \`${name}\``);
    out.push('');
    out.push(def.description);
    out.push('');
    out.push(`Who: ${def.roles === 'all' ? 'every joined participant' : def.roles.join(', ')}.`);
    out.push('');
    out.push('`data`:');
    out.push('');
    out.push(schemaBlock(def.data, 'input'));
    out.push('');
    out.push('Result:');
    out.push('');
    out.push(schemaBlock(def.result, 'output'));
  }
  const events = (title: string, schemas: Record<string, z.ZodType>): void => {
    out.push('');
    out.push(title);
    for (const [name, schema] of Object.entries(schemas)) {
      out.push('');
      out.push(`### \`${name}\``);
      out.push('');
      out.push(schemaBlock(schema, 'output'));
    }
  };
  events('## Durable notifications (carry `seq`)', durableEventSchemas);
  events('## Ephemeral notifications (no `seq`)', ephemeralEventSchemas);
  out.push('');
  out.push('## Error codes');
  out.push('');
  out.push('| code | HTTP status (refusals, admin API) |');
  out.push('| --- | --- |');
  for (const code of ERROR_CODES) out.push(`| \`${code}\` | ${HTTP_STATUS[code]} |`);
  const httpOnly: Record<(typeof HTTP_ONLY_ERROR_CODES)[number], string> = {
    UNAUTHORIZED: 'upgrade without a valid token, admin API without the admin token',
    METHOD_NOT_ALLOWED: 'admin route called with the wrong HTTP method',
  };
  for (const code of HTTP_ONLY_ERROR_CODES)
    out.push(`| \`${code}\` (HTTP only: ${httpOnly[code]}) | ${HTTP_STATUS[code]} |`);
  out.push('');
  out.push('## Close codes');
  out.push('');
  out.push('| name | code |');
  out.push('| --- | --- |');
  for (const [name, code] of Object.entries(CloseCode)) out.push(`| ${name} | ${code} |`);
  out.push('');
  out.push('## Admin API');
  out.push('');
  out.push(
    'HTTP on the node’s port, with `Authorization: Bearer $SIGNALING_ADMIN_TOKEN` (401 without it or with a wrong one, ' +
      '403 when the node has no admin token, 405 with `Allow` for a wrong method). Answers are JSON; errors are ' +
      '`{error: {code, message}}` with the statuses of the error codes above. Views are cluster-wide: the node asked ' +
      'gathers the other live nodes’ figures over the cluster RPC.',
  );
  for (const route of ADMIN_ROUTES) {
    out.push('');
    out.push(`### \`${route.method} ${route.path}\``);
    out.push('');
    out.push(route.summary);
    if (route.query) {
      out.push('');
      out.push(`Query: ${route.query}.`);
    }
    out.push('');
    out.push(`Answers: ${route.answers}.`);
    if (route.fields) {
      out.push('');
      out.push('| field | meaning |');
      out.push('| --- | --- |');
      for (const [field, meaning] of route.fields) out.push(`| \`${field}\` | ${meaning} |`);
    }
  }
  out.push('');
  out.push('## Configuration variables');
  out.push('');
  out.push(CONFIG_VARIABLES.map((v) => `\`${v}\``).join(', '));
  out.push('');
  return out.join('\n');
}
