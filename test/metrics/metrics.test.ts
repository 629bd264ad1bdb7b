// /-/metrics: the exposition parses, and each counter moves when the matching fixture runs.
import t from 'tap';
import parsePrometheusTextFormat, { type ParsedFamily } from 'parse-prometheus-text-format';
import { request } from 'node:http';
import { startFakeUpstream } from '../helpers/fake-upstream.js';
import { startProxy } from '../helpers/proxy.js';

const upstream = await startFakeUpstream();
const proxy = await startProxy({ upstream: upstream.url, firstEventTimeoutMs: 0 });
t.teardown(async () => {
  await proxy.stop();
  await upstream.close();
});

async function scrape(): Promise<ParsedFamily[]> {
  const res = await fetch(`${proxy.url}/-/metrics`);
  if (res.status !== 200) throw new Error(`scrape: ${res.status}`);
  if (!res.headers.get('content-type')?.startsWith('text/plain')) throw new Error('not the Prometheus text format');
  return parsePrometheusTextFormat(await res.text());
}

function value(families: ParsedFamily[], name: string, labels: Record<string, string> = {}): number {
  const family = families.find((f) => f.name === name);
  if (family === undefined) return NaN;
  let total = 0;
  for (const m of family.metrics) {
    if (Object.entries(labels).every(([k, v]) => m.labels?.[k] === v)) total += Number(m.value ?? m.count ?? 0);
  }
  return total;
}

async function replay(id: string, path = '/v1/chat/completions'): Promise<void> {
  const res = await fetch(proxy.url + path, { method: 'POST', headers: { 'x-fixture': id, 'content-type': 'application/json' }, body: '{"stream":true}' });
  await res.arrayBuffer();
}

t.test('the exposition parses and has every family', async (t) => {
  const families = await scrape();
  const names = families.map((f) => f.name);
  for (const name of [
    'llama_status_proxy_http_requests_total',
    'llama_status_proxy_request_duration_seconds',
    'llama_status_proxy_first_event_seconds',
    'llama_status_proxy_stream_errors_rewritten_total',
    'llama_status_proxy_stream_errors_inband_total',
    'llama_status_proxy_stream_error_frames_total',
    'llama_status_proxy_client_aborts_total',
    'llama_status_proxy_inflight_streams',
    'llama_status_proxy_upstream_up',
    'llama_status_proxy_upstream_state',
    'llama_status_proxy_upstream_spare_connections_total',
    'process_cpu_user_seconds_total',
    'nodejs_eventloop_lag_seconds',
  ]) {
    t.ok(names.includes(name), name);
  }
  t.equal(families.find((f) => f.name === 'llama_status_proxy_first_event_seconds')?.type, 'HISTOGRAM');
});

t.test('each counter moves with the fixture that should move it', async (t) => {
  const cases: Array<[string, string, string, Record<string, string>]> = [
    ['FX06 (#14566): rewritten to 400', 'FX06', 'llama_status_proxy_stream_errors_rewritten_total', { upstream_type: 'invalid_request_error', status: '400' }],
    ['FX06: a request with code 400', 'FX06', 'llama_status_proxy_http_requests_total', { route: '/v1/chat/completions', method: 'POST', code: '400' }],
    ['FX12: in-band error after the commit', 'FX12', 'llama_status_proxy_stream_errors_inband_total', { phase: 'after_commit' }],
    ['FX12: first event timed', 'FX12', 'llama_status_proxy_first_event_seconds', {}],
    ['SIGKILL capture: an error frame of ours', 'B11669-SIGKILL-completion', 'llama_status_proxy_stream_error_frames_total', { code: 'upstream_connection_lost' }],
  ];
  for (const [name, id, metric, labels] of cases) {
    const before = value(await scrape(), metric, labels);
    await replay(id);
    const after = value(await scrape(), metric, labels);
    t.equal(after - (Number.isNaN(before) ? 0 : before), 1, name);
  }
});

t.test('a client abort is counted, and so is its 499', async (t) => {
  const before = await scrape();
  await new Promise<void>((resolve) => {
    const req = request(`${proxy.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'x-fixture': 'FX11', 'x-fixture-hang-after': '2', 'content-type': 'application/json' },
    });
    req.on('response', (res) => res.once('data', () => (req.destroy(), resolve())));
    req.on('error', () => undefined);
    req.end('{"stream":true}');
  });
  await proxy.waitForLog((l) => l.clientAbort === true);
  const after = await scrape();
  t.equal(value(after, 'llama_status_proxy_client_aborts_total') - (value(before, 'llama_status_proxy_client_aborts_total') || 0), 1);
  t.equal(value(after, 'llama_status_proxy_http_requests_total', { code: '499' }) - (value(before, 'llama_status_proxy_http_requests_total', { code: '499' }) || 0), 1);
});

t.test('in-flight streams and upstream state are read at scrape time', async (t) => {
  const families = await scrape();
  t.equal(value(families, 'llama_status_proxy_inflight_streams'), 0);
  t.equal(value(families, 'llama_status_proxy_upstream_state', { state: 'down' }) + value(families, 'llama_status_proxy_upstream_state', { state: 'ready' }), 1);
});

t.test('spare connections: one is opened when a stream ends, and the next stream takes it', async (t) => {
  const spares = (families: ParsedFamily[], outcome: string): number =>
    value(families, 'llama_status_proxy_upstream_spare_connections_total', { outcome });
  const before = await scrape();
  await replay('FX12');
  await new Promise((resolve) => setTimeout(resolve, 100)); // a client's pause: the spare connects meanwhile
  await replay('FX12');
  const after = await scrape();
  t.ok(spares(after, 'opened') - spares(before, 'opened') >= 1, 'opened');
  t.ok(spares(after, 'taken') - spares(before, 'taken') >= 1, 'taken by the second stream');
  t.equal(spares(after, 'dropped') - spares(before, 'dropped'), 0, 'none dropped');
});
