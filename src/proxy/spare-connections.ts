/**
 * Upstream connections opened ahead of need. llama-server closes its connection a few ms after every
 * stream, so every stream needs a new one, and without a spare its request waits for the connect: the
 * connect call itself (on loopback the kernel does the whole handshake inside it), an event-loop turn for
 * its completion, and across hosts a round trip. With a spare the request goes out at once.
 *
 * Spares are made when asked for (`prime()`: the proxy asks when a stream ends, since the next stream will
 * need a new connection), so a proxy without traffic holds none (an idle connection occupies one of
 * llama-server's HTTP threads), and the connect happens while the client is still reading the end of its
 * stream, not on the next request's path. A spare not taken within `maxIdleMs` is closed and not replaced.
 * That limit stays well inside the keep-alive timeout of the usual servers (llama-server's cpp-httplib: 5 s,
 * counted for the first request on a connection too), so a spare is never handed out while the server is
 * closing it. One the server closes or writes to while it waits is dropped.
 */
import type { Socket } from 'node:net';
import type { ConnectCallback, ConnectOptions, Connector } from './undici-parts.js';

interface Spare {
  /** Undefined while connecting. */
  socket: Socket | undefined;
  /** The request that took this spare while it was still connecting. */
  taker: ConnectCallback | undefined;
  expiry: NodeJS.Timeout;
  /** Drops an idle connected spare that the server closes, resets or sends something on. */
  onGone: () => void;
}

/**
 * What became of spares: opened, taken by a request, closed unused at the idle limit, or dropped (the
 * server closed, reset or wrote to it, or it could not connect). Many drops mean a server that closes idle
 * connections sooner than the idle limit.
 */
export type SpareOutcome = 'opened' | 'taken' | 'expired' | 'dropped';

export interface SpareOptions {
  /** How many spares to keep while requests come. */
  readonly count: number;
  readonly maxIdleMs: number;
}

export class SpareConnections {
  readonly #open: Connector;
  readonly #opts: SpareOptions;
  /** Spares not taken yet, connecting or connected, oldest first. */
  readonly #idle: Spare[] = [];
  /** Where spares go: what undici last asked to connect to (one Pool, one origin). */
  #target: ConnectOptions | undefined;
  #fillQueued = false;
  #closed = false;
  readonly #outcomes: Record<SpareOutcome, number> = { opened: 0, taken: 0, expired: 0, dropped: 0 };

  /** @param open undici's connector, which makes every connection, spare or not. */
  constructor(open: Connector, opts: SpareOptions) {
    this.#open = open;
    this.#opts = opts;
  }

  /** The connector to give undici's Pool. */
  readonly connect: Connector = (options, callback) => {
    if (this.#closed || options.httpSocket !== undefined) {
      this.#open(options, callback);
      return;
    }
    this.#target = options;
    const spare = this.#idle.shift();
    if (spare !== undefined && this.#take(spare, callback)) return;
    this.#open(options, callback);
  };

  /** Opens spares up to the count, after the current I/O phase. Nothing before undici's first connect. */
  prime(): void {
    if (this.#fillQueued || this.#closed || this.#target === undefined) return;
    this.#fillQueued = true;
    setImmediate(this.#fill);
  }

  /** Spares waiting to be taken, connected or still connecting. */
  get idle(): number {
    return this.#idle.length;
  }

  /** Counts since start, for the metrics. */
  outcomes(): Readonly<Record<SpareOutcome, number>> {
    return this.#outcomes;
  }

  /** Closes every spare and makes no more (shutdown). */
  close(): void {
    this.#closed = true;
    for (const spare of this.#idle.splice(0)) this.#discard(spare);
  }

  /** Hands a spare to a request; false when it turned out to be dead. */
  #take(spare: Spare, callback: ConnectCallback): boolean {
    clearTimeout(spare.expiry);
    const socket = spare.socket;
    if (socket === undefined) {
      spare.taker = callback;
      this.#outcomes.taken++;
      return true;
    }
    socket.off('readable', spare.onGone).off('error', spare.onGone).off('close', spare.onGone);
    if (socket.destroyed || !socket.writable) {
      socket.destroy();
      this.#outcomes.dropped++;
      return false;
    }
    this.#outcomes.taken++;
    // Never before the connector returns: undici calls it from inside its dispatch loop, which does not
    // run again for a connection that arrives meanwhile, and the request would never be written.
    queueMicrotask(() => callback(null, socket));
    return true;
  }

  readonly #fill = (): void => {
    this.#fillQueued = false;
    const target = this.#target;
    if (target === undefined) return;
    while (!this.#closed && this.#idle.length < this.#opts.count) this.#spare(target);
  };

  #spare(target: ConnectOptions): void {
    const spare: Spare = {
      socket: undefined,
      taker: undefined,
      expiry: setTimeout(() => this.#retire(spare, 'expired'), this.#opts.maxIdleMs).unref(),
      onGone: () => this.#retire(spare, 'dropped'),
    };
    this.#idle.push(spare);
    this.#outcomes.opened++;
    this.#open(target, (err, socket) => {
      if (spare.taker !== undefined) {
        if (err === null) spare.taker(null, socket);
        else spare.taker(err, null);
        return;
      }
      if (err !== null) {
        if (this.#forget(spare)) this.#outcomes.dropped++;
        return;
      }
      if (!this.#idle.includes(spare)) {
        socket.destroy(); // expired or closed while connecting
        return;
      }
      spare.socket = socket;
      // 'readable' comes with the first byte or the EOF, and does not switch the socket to flowing mode.
      socket.on('readable', spare.onGone).on('error', spare.onGone).on('close', spare.onGone);
    });
  }

  #retire(spare: Spare, outcome: 'expired' | 'dropped'): void {
    if (this.#forget(spare)) this.#outcomes[outcome]++;
    this.#discard(spare);
  }

  /** Takes a spare off the idle list; false when it was no longer there. */
  #forget(spare: Spare): boolean {
    const at = this.#idle.indexOf(spare);
    if (at >= 0) this.#idle.splice(at, 1);
    return at >= 0;
  }

  #discard(spare: Spare): void {
    clearTimeout(spare.expiry);
    spare.socket?.destroy();
  }
}
