/**
 * The optional API key at the proxy. Clients send it as `Authorization: Bearer <key>` (OpenAI SDKs) or
 * `x-api-key: <key>` (Anthropic SDKs). Compared in constant time: both sides are hashed first, so
 * neither the content nor the length of the key leaks through timing.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';

export type KeyCheck = (headers: IncomingHttpHeaders) => boolean;

const digest = (value: string): Buffer => createHash('sha256').update(value).digest();

export function createKeyCheck(key: string): KeyCheck {
  const expected = digest(key);
  return (headers) => {
    const offered = offeredKey(headers);
    // Always hash and compare, so a missing key takes as long as a wrong one.
    return timingSafeEqual(digest(offered ?? ''), expected) && offered !== undefined;
  };
}

function offeredKey(headers: IncomingHttpHeaders): string | undefined {
  const auth = headers.authorization;
  if (auth !== undefined) {
    const m = /^Bearer\s+(.+)$/i.exec(auth.trim());
    return m ? m[1] : auth.trim();
  }
  const x = headers['x-api-key'];
  return Array.isArray(x) ? x[0] : x;
}
