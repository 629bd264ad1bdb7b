// Spare upstream connections: opened when the proxy primes them (a stream ended), taken by the next
// request, closed unused after their idle limit, dropped when the server closes or writes to them, and
// never left behind. A plain TCP server stands in for llama-server in the unit tests: what matters there
// is which connections it sees, opened and closed when. The last test goes through the proxy.
import t from 'tap';
import net from 'node:net';
import { once } from 'node:events';
import { buildConnector } from '../../src/proxy/undici-parts.js';
import { SpareConnections } from '../../src/proxy/spare-connections.js';
import { ALL_FIXTURES } from '../fixtures/catalogue.js';
import { listenOnLoopback, sseBody, startFakeUpstream } from '../helpers/fake-upstream.js';
import { startProxy } from '../helpers/proxy.js';

type TapTest = Parameters<Parameters<typeof t.test>[0]>[0];

interface Server {
  /** Server-side sockets in accept order. */
  accepted: net.Socket[];
  /** Resolves once `n` connections have been accepted. */
  waitForAccepts(n: number): Promise<void>;
  target: { hostname: string; protocol: string; port: string };
  close(): Promise<void>;
}

async function startServer(t: TapTest): Promise<Server> {
  const accepted: net.Socket[] = [];
  const server = net.createServer((socket) => {
    accepted.push(socket);
    socket.on('error', () => undefined);
    server.emit('accepted');
  });
  const port = await listenOnLoopback(server);
  const s: Server = {
    accepted,
    async waitForAccepts(n) {
      while (accepted.length < n) await once(server, 'accepted');
    },
    target: { hostname: '127.0.0.1', protocol: 'http:', port: String(port) },
    async close() {
      for (const socket of accepted) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
  t.teardown(() => s.close());
  return s;
}

function spares(t: TapTest, maxIdleMs = 10_000, count = 1): SpareConnections {
  const s = new SpareConnections(buildConnector({ timeout: 2000 }), { count, maxIdleMs });
  t.teardown(() => s.close());
  return s;
}

/** What undici does with the connector: asks for a connection and waits for the callback. */
function connect(s: SpareConnections, target: Server['target']): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    let returned = false;
    s.connect(target, (err, socket) => {
      // undici's dispatch loop does not see a connection handed over before the connector returns.
      if (!returned) reject(new Error('the callback ran before the connector returned'));
      else if (err !== null) reject(err);
      else resolve(socket);
    });
    returned = true;
  });
}

/**
 * A server and spares as the proxy leaves them when its first stream ends: undici has connected once (so
 * the connector knows where spares go) and prime() has queued the spares.
 */
async function afterFirstStream(t: TapTest, maxIdleMs?: number, count?: number): Promise<{ server: Server; s: SpareConnections }> {
  const server = await startServer(t);
  const s = spares(t, maxIdleMs, count);
  (await connect(s, server.target)).destroy();
  s.prime();
  return { server, s };
}

/** The server's end of a client socket. */
function serverSide(server: Server, client: net.Socket): net.Socket | undefined {
  return server.accepted.find((s) => s.remotePort === client.localPort);
}

/** Settles the socket events of a few loop turns (connect, close, setImmediate). */
const turns = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 30));

t.test('no spare until primed, none for a connection that merely closes; the next request takes the spare', async (t) => {
  const server = await startServer(t);
  const s = spares(t);
  s.prime();
  await turns();
  t.equal(server.accepted.length, 0, 'nothing is opened before undici has asked for a connection');
  const first = await connect(s, server.target);
  first.destroy(); // e.g. undici closing an idle keep-alive connection: no sign that another is wanted
  await turns();
  t.equal(server.accepted.length, 1, 'the first request connects itself, and nothing more is opened');
  t.equal(s.idle, 0);

  s.prime(); // what the proxy does when a stream ends
  await server.waitForAccepts(2);
  await turns(); // connected on the client's side too
  t.equal(s.idle, 1, 'a spare is open');
  const spareEnd = server.accepted[1]!;

  const second = await connect(s, server.target);
  t.equal(serverSide(server, second), spareEnd, 'the second request got the spare');
  t.equal(s.idle, 0);
  t.same(s.outcomes(), { opened: 1, taken: 1, expired: 0, dropped: 0 }, 'counted for the metrics');

  // Bytes both ways on the handed-over socket: nothing lost to the watch it had while idle.
  second.write('ping');
  const [got] = (await once(spareEnd, 'data')) as [Buffer];
  t.equal(got.toString(), 'ping', 'the server receives what the client writes');
  spareEnd.write('pong');
  const [back] = (await once(second, 'data')) as [Buffer];
  t.equal(back.toString(), 'pong', 'the client reads what the server writes');
  second.destroy();
  s.prime();
  s.prime();
  await server.waitForAccepts(3);
  await turns();
  t.equal(server.accepted.length, 3, 'priming twice opens one spare: the count is a bound');
});

t.test('a request that comes while the spare is still connecting waits for it', async (t) => {
  const { server, s } = await afterFirstStream(t);
  // prime() queued the spare's connect with setImmediate; the request comes right after it started.
  await new Promise((resolve) => setImmediate(resolve));
  t.equal(s.idle, 1, 'a spare is connecting');
  const socket = await connect(s, server.target);
  await server.waitForAccepts(2);
  t.equal(serverSide(server, socket), server.accepted[1], 'the request got the spare once it connected');
  t.equal(server.accepted.length, 2, 'and opened nothing of its own');
});

t.test('a spare not taken within its idle limit is closed and not replaced', async (t) => {
  const { server, s } = await afterFirstStream(t, 100);
  await server.waitForAccepts(2);
  const spareEnd = server.accepted[1]!;
  await once(spareEnd, 'close');
  await turns();
  t.equal(s.idle, 0, 'no spare left');
  t.equal(server.accepted.length, 2, 'no new one opened: without traffic the proxy holds no connections');
  t.same(s.outcomes(), { opened: 1, taken: 0, expired: 1, dropped: 0 }, 'counted as expired');
  const next = await connect(s, server.target);
  await server.waitForAccepts(3);
  t.equal(serverSide(server, next), server.accepted[2], 'the next request connects itself');
});

t.test('a spare the server closes or writes to while it waits is dropped, never handed out', async (t) => {
  for (const how of ['FIN', 'RST', 'a 408 before closing']) {
    await t.test(how, async (t) => {
      const { server, s } = await afterFirstStream(t, 60_000); // so that only what the server did can drop it
      await server.waitForAccepts(2);
      await turns(); // connected on the client's side too, and watched
      const spareEnd = server.accepted[1]!;
      if (how === 'FIN') spareEnd.end();
      else if (how === 'RST') spareEnd.resetAndDestroy();
      else spareEnd.write('HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n');
      for (let waited = 0; s.idle > 0 && waited < 5000; waited += 30) await turns();
      t.equal(s.idle, 0, 'the spare is dropped');
      t.same(s.outcomes(), { opened: 1, taken: 0, expired: 0, dropped: 1 }, 'counted as dropped');
      const next = await connect(s, server.target);
      await server.waitForAccepts(3);
      t.equal(serverSide(server, next), server.accepted[2], 'the request got a new connection');
      t.ok(next.writable && !next.destroyed, 'a live one');
    });
  }
});

t.test('close() closes the spares and makes no more', async (t) => {
  const { server, s } = await afterFirstStream(t, 10_000, 2);
  await server.waitForAccepts(3);
  t.equal(s.idle, 2, 'as many spares as asked for');
  s.close();
  await Promise.all(server.accepted.slice(1).map((socket) => (socket.closed ? undefined : once(socket, 'close'))));
  t.equal(s.idle, 0);
  const after = await connect(s, server.target);
  after.destroy();
  s.prime();
  await turns();
  t.equal(server.accepted.length, 4, 'later requests connect themselves, and priming opens nothing');
});

t.test('an upstream that is down: the request gets the connect error, the spare attempt costs nothing', async (t) => {
  const { server, s } = await afterFirstStream(t);
  await server.waitForAccepts(2);
  await server.close();
  while (s.idle > 0) await turns(); // the server's close ended the spare
  const err = await connect(s, server.target).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.match(err, { code: 'ECONNREFUSED' }, 'the request sees the refusal itself');
  t.equal(s.idle, 0, 'no spare is left behind');
});

t.test('through the proxy: from the second stream on, each request goes out on a connection opened before it came', async (t) => {
  // A b11669 stream (ends with a clean terminator); the fake upstream closes the connection after every
  // stream, as llama-server does.
  const fixture = ALL_FIXTURES.find((f) => f.id === 'B11669-MP2-v1completions')!;
  for (const spareCount of [1, 0]) {
    await t.test(`upstreamSpareConnections ${spareCount}`, async (t) => {
      const upstream = await startFakeUpstream({ fixture });
      const proxy = await startProxy({ upstream: upstream.url, upstreamSpareConnections: String(spareCount) });
      t.teardown(async () => {
        await proxy.stop();
        await upstream.close();
      });
      const sentAt: number[] = [];
      for (let i = 0; i < 5; i++) {
        // A client's pause between requests: the proxy's work after a stream (undici closing the upstream
        // connection, the spare's connect) is done by the time the next request comes.
        if (i > 0) await new Promise((resolve) => setTimeout(resolve, 150));
        sentAt.push(performance.now());
        const res = await fetch(`${proxy.url}${fixture.path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"prompt":"hi","stream":true}' });
        t.equal(await res.text(), sseBody(fixture).toString('utf8'), `stream ${i + 1} relayed whole`);
      }
      const streams = upstream.requests.filter((r) => r.method === 'POST'); // not the readiness probes
      const early = streams.slice(1).filter((r, i) => r.connection.acceptedAt < sentAt[i + 1]!).length;
      t.equal(new Set(streams.map((r) => r.connection.index)).size, 5, 'every stream had a connection of its own');
      t.equal(early, spareCount === 0 ? 0 : 4, 'requests 2-5 that found their connection already open');
    });
  }
});
