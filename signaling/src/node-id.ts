/** The node id a node takes when `NODE_ID` is not set: the host name and the process id. */
import { hostname } from 'node:os';

export function defaultNodeId(): string {
  return `${hostname()
    .replace(/[^A-Za-z0-9._-]/g, '-')
    .slice(0, 40)}-${process.pid}`;
}
