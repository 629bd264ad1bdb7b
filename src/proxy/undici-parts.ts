/**
 * undici's Pool and connector, without the rest of undici. `import { Pool } from 'undici'` evaluates
 * undici's whole index (fetch, WebSocket, EventSource, caches, mocks, interceptors): ~8 MiB of resident
 * memory in every process for code the proxy never runs. The files below are the ones that index takes
 * them from. undici has no `exports` map, so the paths can be loaded, but they are not undici's public API:
 * test/proxy/undici-parts.test.ts fails if an upgrade moves them or makes them something else than
 * undici's own.
 */
import { createRequire } from 'node:module';
import type { Pool as UndiciPool, buildConnector as undiciBuildConnector } from 'undici';

const require = createRequire(import.meta.url);

export const Pool = require('undici/lib/dispatcher/pool.js') as typeof UndiciPool;
export type Pool = UndiciPool;

export const buildConnector = require('undici/lib/core/connect.js') as typeof undiciBuildConnector;
export type Connector = undiciBuildConnector.connector;
export type ConnectOptions = undiciBuildConnector.Options;
export type ConnectCallback = undiciBuildConnector.Callback;
