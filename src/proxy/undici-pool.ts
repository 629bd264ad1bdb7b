/**
 * undici's Pool, without the rest of undici. `import { Pool } from 'undici'` evaluates undici's whole index
 * (fetch, WebSocket, EventSource, caches, mocks, interceptors): ~8 MiB of resident memory in every process
 * for code the proxy never runs. The file below is the one that index takes Pool from. undici has no
 * `exports` map, so the path can be loaded, but it is not undici's public API: test/proxy/undici-pool.test.ts
 * fails if an upgrade moves it or makes it something else than undici's own Pool.
 */
import { createRequire } from 'node:module';
import type { Pool as UndiciPool } from 'undici';

const require = createRequire(import.meta.url);

export const Pool = require('undici/lib/dispatcher/pool.js') as typeof UndiciPool;
export type Pool = UndiciPool;
