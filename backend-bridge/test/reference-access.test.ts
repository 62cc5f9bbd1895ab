import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AccessTable } from '../src/reference-receiver/access.js';
import { createReferenceReceiver, type ReferenceReceiver } from '../src/reference-receiver/server.js';
import { accessAnswerSchema } from '../src/access/access-answer.js';

const receivers: ReferenceReceiver[] = [];
afterEach(async () => {
  for (const r of receivers.splice(0)) await r.stop();
});

async function serve(access: AccessTable, token?: string): Promise<{ url: string; lines: string[] }> {
  const lines: string[] = [];
  const receiver = createReferenceReceiver({ access, token, print: (line) => lines.push(line) });
  receivers.push(receiver);
  return { url: await receiver.listen(0, '127.0.0.1'), lines };
}

describe('the reference receiver’s access endpoint', () => {
  const policy = {
    rooms: {
      'room-1': { maxParticipants: 50, users: { alice: { role: 'moderator' as const }, mallory: { allowed: false } } },
      'room-2': { others: { allowed: false }, users: { bob: {} } },
    },
  };

  it('answers per the access file, in the contract’s shape', async () => {
    const { url, lines } = await serve(new AccessTable(policy));
    const ask = async (room: string, user: string): Promise<unknown> => {
      const response = await fetch(
        `${url}/rooms/${encodeURIComponent(room)}/access?userId=${encodeURIComponent(user)}`,
      );
      expect(response.status).toBe(200);
      const body: unknown = await response.json();
      expect(accessAnswerSchema.safeParse(body).success).toBe(true);
      return body;
    };
    expect(await ask('room-1', 'alice')).toEqual({ allowed: true, role: 'moderator', maxParticipants: 50 });
    expect(await ask('room-1', 'carol')).toEqual({ allowed: true, maxParticipants: 50 });
    expect(await ask('room-1', 'mallory')).toEqual({ allowed: false, maxParticipants: 50 });
    expect(await ask('room-2', 'bob')).toEqual({ allowed: true });
    expect(await ask('room-2', 'carol')).toEqual({ allowed: false });
    expect(await ask('unlisted', 'alice')).toEqual({ allowed: false });
    expect(await ask('room-1', 'toString')).toEqual({ allowed: true, maxParticipants: 50 });
    expect(lines).toContain('access room-1 alice: allowed as moderator');
  });

  it('requires the bearer token when it has one, and a user id', async () => {
    const { url } = await serve(new AccessTable(policy), 'the-token');
    expect((await fetch(`${url}/rooms/room-1/access?userId=alice`)).status).toBe(401);
    const wrong = { headers: { authorization: 'Bearer not-the-token' } };
    expect((await fetch(`${url}/rooms/room-1/access?userId=alice`, wrong)).status).toBe(401);
    const right = { headers: { authorization: 'Bearer the-token' } };
    expect((await fetch(`${url}/rooms/room-1/access?userId=alice`, right)).status).toBe(200);
    expect((await fetch(`${url}/rooms/room-1/access`, right)).status).toBe(400);
    expect((await fetch(`${url}/rooms/room-1/access?userId=alice`, { ...right, method: 'DELETE' })).status).toBe(405);
    expect((await fetch(`${url}/nowhere`, right)).status).toBe(404);
  });

  it('reads and reloads its file, and names what is wrong with a bad one', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'reference-access-'));
    const file = join(dir, 'access.json');
    writeFileSync(file, JSON.stringify({ otherRooms: { allowed: true } }));
    const table = await AccessTable.fromFile(file);
    expect(table.decide('any', 'one').allowed).toBe(true);
    writeFileSync(file, JSON.stringify({ otherRooms: { allowed: false } }));
    await table.reload();
    expect(table.decide('any', 'one').allowed).toBe(false);

    writeFileSync(file, JSON.stringify({ rooms: { r: { users: { u: { role: 'admin' } } } } }));
    await expect(AccessTable.fromFile(file)).rejects.toThrow(/role/);
    writeFileSync(file, '{ not json');
    await expect(AccessTable.fromFile(file)).rejects.toThrow(SyntaxError);
  });

  it('goes away and comes back on the same port', async () => {
    const { url } = await serve(new AccessTable({ otherRooms: { allowed: true } }));
    const receiver = receivers[0] as ReferenceReceiver;
    await receiver.stop();
    await expect(fetch(`${url}/rooms/r/access?userId=u`)).rejects.toThrow();
    expect(await receiver.listen()).toBe(url);
    expect((await fetch(`${url}/rooms/r/access?userId=u`)).status).toBe(200);
  });
});
