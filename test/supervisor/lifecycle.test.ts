// The life of a supervised llama-server: it starts and serves; killed (kill -9) with a stream in flight,
// that stream ends with an error frame, requests during the restart get a clean 503, and a new
// llama-server comes back and serves again.
import t from 'tap';
import {
  chat,
  childPids,
  getStatus,
  isAlive,
  LONG_STREAM,
  longStreamChildCommand,
  nthChildPid,
  post,
  readStream,
  startSupervised,
  waitStatus,
} from '../helpers/supervised.js';

// ~1 s backoff and a 200 ms ready wait: the restart window is long enough to be seen from outside.
const PROXY_ARGS = ['--ready-wait-ms', '200', '--restart-backoff-initial-ms', '1000', '--drain-timeout-ms', '1000'];
const EVENTS_BEFORE_KILL = 3;

t.test('start, serve, kill -9 mid-stream, 503 while restarting, serve again', async (t) => {
  const proxy = await startSupervised(PROXY_ARGS, longStreamChildCommand());
  t.teardown(() => proxy.stop());

  const firstPid = await nthChildPid(proxy, 1);
  await waitStatus(proxy.url, '/-/ready', 200);

  await t.test('serves a chat completion', async (t) => {
    const res = await post(proxy.url, chat());
    t.equal(res.status, 200);
    const body = (await res.json()) as { choices: Array<{ message: { role: string } }> };
    t.equal(body.choices[0]?.message.role, 'assistant');
  });

  await t.test('kill -9 of llama-server mid-stream: the stream ends with an error frame', async (t) => {
    const res = await post(proxy.url, LONG_STREAM);
    t.equal(res.status, 200);
    let killed = false;
    const read = await readStream(res, (events) => {
      if (killed || events < EVENTS_BEFORE_KILL) return;
      killed = true;
      process.kill(firstPid, 'SIGKILL');
    });
    t.ok(killed, 'killed while streaming');
    t.ok(read.data.length >= EVENTS_BEFORE_KILL, `${read.data.length} events`);
    t.notOk(read.data.includes('[DONE]'), 'no [DONE]');
    const brokeOff = { error: { message: /^the stream from llama-server broke off/, type: 'server_error' } };
    t.match(JSON.parse(read.data.at(-1) ?? 'null'), brokeOff, 'the last event is an error frame');
  });

  await t.test('while it restarts: /-/ready 503, API 503 + Retry-After in the OpenAI envelope', async (t) => {
    const line = await proxy.waitForLog((l) => l.msg === 'llama-server exited with signal SIGKILL; restarting');
    t.equal(line.reason, 'crashed');
    t.ok(Number(line.delayMs) >= 800 && Number(line.delayMs) <= 1200, `delay ${String(line.delayMs)} ms: 1 s ±20 %`);

    const ready = await getStatus(proxy.url, '/-/ready');
    t.equal(ready.status, 503);
    t.same(JSON.parse(ready.body), { status: 'not ready', upstream: 'restarting' });

    const res = await post(proxy.url, chat());
    t.equal(res.status, 503);
    t.equal(res.headers.get('retry-after'), '5');
    t.match(res.headers.get('content-type'), /^application\/json/);
    t.match(await res.json(), { error: { type: 'unavailable_error', code: 'upstream_not_ready', message: /not ready/ } });
  });

  await t.test('a new llama-server comes back and serves', async (t) => {
    const secondPid = await nthChildPid(proxy, 2);
    t.not(secondPid, firstPid, 'a new pid');
    t.notOk(isAlive(firstPid), 'the killed one is gone');
    await waitStatus(proxy.url, '/-/ready', 200);
    const res = await post(proxy.url, chat());
    t.equal(res.status, 200);
    t.match(await res.json(), { choices: [{ message: { role: 'assistant' } }] });
    t.same(childPids(proxy), [firstPid, secondPid], 'exactly one restart');
    t.ok(isAlive(secondPid));
    const metrics = await (await fetch(`${proxy.url}/-/metrics`)).text();
    t.match(metrics, /^llama_status_proxy_upstream_restarts_total\{reason="crashed"\} 1$/m, 'the restart is counted');
  });
});
