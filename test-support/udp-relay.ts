/**
 * A UDP relay in the path between two endpoints, a stand-in for the network between them that
 * records what crosses it: side A sends to {@link UdpRelay.forA}, the relay forwards from
 * {@link UdpRelay.forB} to B, and the other way round, so each side sees its peer at one
 * address (what a connected transport such as mediasoup's `PipeTransport` insists on). Every
 * datagram is kept, by the side that sent it, up to a bound.
 */
import dgram from 'node:dgram';

export interface UdpAddress {
  readonly ip: string;
  readonly port: number;
}

/** Datagrams kept per direction at most. */
const KEPT = 2000;

export class UdpRelay {
  readonly #a = dgram.createSocket('udp4');
  readonly #b = dgram.createSocket('udp4');
  #to: { a: UdpAddress; b: UdpAddress } | undefined;
  /** Datagrams A sent (towards B), in order. */
  readonly fromA: Buffer[] = [];
  /** Datagrams B sent (towards A), in order. */
  readonly fromB: Buffer[] = [];

  /** Binds the relay's two sockets on loopback; it forwards once {@link connect}ed. */
  static async open(): Promise<UdpRelay> {
    const relay = new UdpRelay();
    await Promise.all(
      [relay.#a, relay.#b].map((socket) => new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve))),
    );
    relay.#a.on('message', (message) => relay.#forward(message, relay.fromA, relay.#b, relay.#to?.b));
    relay.#b.on('message', (message) => relay.#forward(message, relay.fromB, relay.#a, relay.#to?.a));
    return relay;
  }

  /** Where side A sends (B, as A sees it). */
  get forA(): UdpAddress {
    return { ip: '127.0.0.1', port: this.#a.address().port };
  }

  /** Where side B sends (A, as B sees it). */
  get forB(): UdpAddress {
    return { ip: '127.0.0.1', port: this.#b.address().port };
  }

  /** Starts forwarding between `a` and `b` (datagrams before this are recorded and dropped). */
  connect(a: UdpAddress, b: UdpAddress): void {
    this.#to = { a, b };
  }

  close(): void {
    this.#a.close();
    this.#b.close();
  }

  #forward(message: Buffer, kept: Buffer[], out: dgram.Socket, to: UdpAddress | undefined): void {
    if (kept.length < KEPT) kept.push(message);
    if (to) out.send(message, to.port, to.ip);
  }
}
