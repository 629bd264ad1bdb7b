/**
 * llama-server closes its connection after every stream, so undici ends every stream the same way: it
 * destroys the socket with an `InformationalError('reset')` (or 'aborted', 'socket idle timeout'), an error
 * that only tells its own listeners why the socket went and is never shown to anyone. Node's stream
 * `destroy(err)` reads `err.stack` at once (so that V8 lets go of the captured frames), and reading it makes
 * V8 format the whole trace: 10 % of the proxy's CPU per short stream in an interleaved run
 * (`docs/benchmarks.md`, "The reset that formatted a stack, measured").
 *
 * The connector below gives every upstream socket a `destroy` that writes a one-line stack onto such an
 * error before Node reads it. Nothing else changes: the same error reaches the same listeners, and every
 * other error keeps its trace.
 */
import type { Socket } from 'node:net';
import type { Connector } from './undici-parts.js';

/** undici's code for errors that report a decision of its own, not a failure. */
const INFORMATIONAL = 'UND_ERR_INFO';

export function withQuietResets(connect: Connector): Connector {
  return (options, callback) => {
    connect(options, (...result) => {
      if (result[0] === null) quiet(result[1]);
      callback(...result);
    });
  };
}

function quiet(socket: Socket): void {
  const destroy = socket.destroy;
  socket.destroy = function (this: Socket, err?: Error) {
    if (err !== undefined && (err as { code?: unknown }).code === INFORMATIONAL) {
      // Assigned, not defined: on node 20 Object.defineProperty formats the trace it replaces.
      err.stack = `${err.name}: ${err.message}`;
    }
    return destroy.call(this, err);
  };
}
