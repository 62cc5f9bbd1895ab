/**
 * The browser page's files, served from one directory (`dist/web`, built by
 * `scripts/build-web.ts`): known file types only, never a path outside the directory.
 */
import { readFile } from 'node:fs/promises';
import { extname, join, resolve, sep } from 'node:path';

/** Content type of each file type the page is built from; other files are not served. */
export const CONTENT_TYPES: Readonly<Record<string, string>> = Object.freeze({
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json',
  '.svg': 'image/svg+xml',
  '.ico': 'image/x-icon',
});

export interface StaticFile {
  readonly contentType: string;
  readonly body: Buffer;
}

export class StaticFiles {
  readonly #root: string;

  constructor(root: string) {
    this.#root = resolve(root);
  }

  /**
   * The file at a URL path (`/` is `/index.html`); undefined when it is missing, of an unknown
   * type or outside the directory.
   */
  async find(urlPath: string): Promise<StaticFile | undefined> {
    const full = resolve(join(this.#root, urlPath === '/' ? '/index.html' : urlPath));
    if (!full.startsWith(this.#root + sep)) return undefined;
    const contentType = CONTENT_TYPES[extname(full)];
    if (!contentType) return undefined;
    try {
      return { contentType, body: await readFile(full) };
    } catch {
      return undefined;
    }
  }
}
