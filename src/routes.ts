/**
 * Which requests the guard holds, and in which API's envelope their errors are written.
 * Everything not listed here is passed through untouched.
 */

/** The error envelope a client of the route expects. */
export type Dialect = 'openai' | 'anthropic';

const GUARDED: ReadonlyMap<string, Dialect> = new Map([
  ['/v1/chat/completions', 'openai'],
  ['/chat/completions', 'openai'],
  ['/v1/completions', 'openai'],
  ['/completions', 'openai'],
  ['/completion', 'openai'],
  ['/infill', 'openai'],
  ['/v1/responses', 'openai'],
  ['/responses', 'openai'],
  ['/v1/messages', 'anthropic'],
]);

/** The path without its query string; `url` is the raw request target. */
export function pathOf(url: string): string {
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}

/** The dialect of a guarded route, or undefined when the request passes through. */
export function guardedDialect(method: string, url: string): Dialect | undefined {
  return method === 'POST' ? GUARDED.get(pathOf(url)) : undefined;
}

/** For answers the proxy makes itself (503 while not ready, 413, 502): the envelope the route's clients parse. */
export function dialectOf(url: string): Dialect {
  return GUARDED.get(pathOf(url)) ?? 'openai';
}

/** The proxy's own endpoints live under a prefix no llama-server route uses. */
export const OWN_PREFIX = '/-/';
