// undici ends every llama-server stream by destroying the socket with an informational error, and Node reads
// that error's stack on destroy. The proxy's connector keeps V8 from formatting a trace nobody reads, and
// must change nothing else: the same error reaches the socket's listeners, the socket closes, and any other
// error keeps its full trace. Whether V8 formatted a trace is seen through Error.prepareStackTrace, which V8
// calls for every trace it formats.
import t from 'tap';
import net from 'node:net';
import { once } from 'node:events';
import { errors } from 'undici';
import { buildConnector } from '../../src/proxy/undici-parts.js';
import { withQuietResets } from '../../src/proxy/quiet-resets.js';
import { ALL_FIXTURES } from '../fixtures/catalogue.js';
import { listenOnLoopback, sseBody, startFakeUpstream } from '../helpers/fake-upstream.js';
import { freePort } from '../../src/free-port.js';
import { startProxy } from '../helpers/proxy.js';

type TapTest = Parameters<Parameters<typeof t.test>[0]>[0];

/** `name: message` of the errors whose trace V8 formatted while this is installed. */
function watchFormatting(t: TapTest): string[] {
  const formatted: string[] = [];
  const before = Error.prepareStackTrace;
  Error.prepareStackTrace = (err: Error, frames: NodeJS.CallSite[]) => {
    formatted.push(`${err.name}: ${err.message}`);
    return [`${err.name}: ${err.message}`, ...frames.map((f) => `    at ${String(f)}`)].join('\n');
  };
  t.teardown(() => {
    Error.prepareStackTrace = before;
  });
  return formatted;
}

async function upstreamSocket(t: TapTest): Promise<net.Socket> {
  const server = net.createServer((s) => s.on('error', () => undefined));
  const port = await listenOnLoopback(server);
  t.teardown(() => new Promise((resolve) => server.close(resolve)));
  const connect = withQuietResets(buildConnector({ timeout: 2000 }));
  return new Promise((resolve, reject) => {
    connect({ hostname: '127.0.0.1', protocol: 'http:', port: String(port) }, (err, socket) => {
      if (err !== null) reject(err);
      else resolve(socket);
    });
  });
}

/**
 * What undici does when it is done with a connection: destroys the socket with an error. Resolves with the
 * error the socket's listeners got and the traces V8 formatted meanwhile.
 */
async function destroyWith(t: TapTest, err: Error): Promise<{ seen: Error; formatted: string[] }> {
  const socket = await upstreamSocket(t);
  const formatted = watchFormatting(t);
  const seen = once(socket, 'error');
  socket.destroy(err);
  const [got] = (await seen) as [Error];
  await once(socket, 'close');
  return { seen: got, formatted };
}

t.test("undici's reset: the socket closes with the same error, and no trace is formatted", async (t) => {
  const reset = new errors.InformationalError('reset');
  const { seen, formatted } = await destroyWith(t, reset);
  t.equal(seen, reset, "the socket's listeners get undici's own error object");
  t.same(formatted, [], 'V8 formatted no trace');
  t.equal(reset.stack, 'InformationalError: reset', 'its stack is the one line it says');
});

t.test('any other error keeps its trace', async (t) => {
  const failure = new errors.SocketError('other side closed');
  const { seen, formatted } = await destroyWith(t, failure);
  t.equal(seen, failure, 'the same error');
  t.same(formatted, ['SocketError: other side closed'], 'its trace was formatted as usual');
  t.match(failure.stack, /\n {4}at /, 'with its frames');
});

t.test('a connect that fails reaches undici as it failed', async (t) => {
  const port = await freePort(); // nothing listens there now
  const connect = withQuietResets(buildConnector({ timeout: 2000 }));
  const result = await new Promise<unknown[]>((resolve) => {
    connect({ hostname: '127.0.0.1', protocol: 'http:', port: String(port) }, (...args) => resolve(args));
  });
  t.match(result[0], { code: 'ECONNREFUSED' }, "the connect's own error");
  t.notOk(result[1], 'and no socket');
});

t.test('through the proxy: streams end without formatting a trace', async (t) => {
  // A b11669 stream; undici ends each one by destroying its connection with InformationalError('reset').
  const fixture = ALL_FIXTURES.find((f) => f.id === 'B11669-MP2-v1completions')!;
  const upstream = await startFakeUpstream({ fixture });
  const proxy = await startProxy({ upstream: upstream.url });
  t.teardown(async () => {
    await proxy.stop();
    await upstream.close();
  });
  const formatted = watchFormatting(t);
  for (let i = 0; i < 3; i++) {
    const res = await fetch(`${proxy.url}${fixture.path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"prompt":"hi","stream":true}' });
    t.equal(await res.text(), sseBody(fixture).toString('utf8'), `stream ${i + 1} relayed whole`);
  }
  // The test's own client (fetch) shares the process and may format traces of its own.
  t.same(
    formatted.filter((e) => e.startsWith('InformationalError')),
    [],
    "no trace formatted for undici's resets",
  );
});
