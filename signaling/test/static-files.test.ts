/** The browser page's files: known types only, nothing outside their directory. */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StaticFiles } from '../src/http/static-files.js';

describe('StaticFiles', () => {
  let dir: string;
  let files: StaticFiles;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'static-files-'));
    const web = join(dir, 'web');
    mkdirSync(join(web, 'assets'), { recursive: true });
    writeFileSync(join(web, 'index.html'), '<!doctype html>');
    writeFileSync(join(web, 'app.js'), 'export {};');
    writeFileSync(join(web, 'favicon.svg'), '<svg xmlns="http://www.w3.org/2000/svg"/>');
    writeFileSync(join(web, 'favicon.ico'), Buffer.from([0, 0, 1, 0]));
    writeFileSync(join(web, 'assets', 'app.css'), 'body{}');
    writeFileSync(join(web, 'notes.txt'), 'not served');
    writeFileSync(join(dir, 'secret.html'), 'outside');
    files = new StaticFiles(`${web}/`);
  });

  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it.each([
    ['/', 'text/html; charset=utf-8', '<!doctype html>'],
    ['/index.html', 'text/html; charset=utf-8', '<!doctype html>'],
    ['/app.js', 'text/javascript; charset=utf-8', 'export {};'],
    ['/assets/app.css', 'text/css; charset=utf-8', 'body{}'],
    ['/favicon.svg', 'image/svg+xml', '<svg xmlns="http://www.w3.org/2000/svg"/>'],
  ])('serves %s as %s', async (path, contentType, body) => {
    const file = await files.find(path);
    expect(file?.contentType).toBe(contentType);
    expect(file?.body.toString()).toBe(body);
  });

  it('knows icons', async () => {
    expect((await files.find('/favicon.ico'))?.contentType).toBe('image/x-icon');
  });

  it.each(['/notes.txt', '/missing.js', '/assets', '/../secret.html', '/assets/../../secret.html', '/index'])(
    'serves nothing for %s',
    async (path) => {
      expect(await files.find(path)).toBeUndefined();
    },
  );

  it('serves nothing when the page is not built', async () => {
    expect(await new StaticFiles(join(dir, 'missing')).find('/')).toBeUndefined();
  });
});
