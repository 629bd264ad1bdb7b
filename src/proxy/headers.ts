/**
 * Header hygiene between client and llama-server: hop-by-hop headers (RFC 9110 §7.6.1, and every header
 * a Connection header names) belong to one connection and are never forwarded; X-Forwarded-* tell the
 * upstream who asked. Headers travel as flat [name, value, name, value…] lists so case, order and
 * duplicates survive.
 */
import type { IncomingMessage } from 'node:http';

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

export type FlatHeaders = string[];

/** The hop-by-hop names of one message: the fixed list plus what its Connection header names. */
export function hopByHopNames(raw: ReadonlyArray<string>): ReadonlySet<string> {
  // Most messages have no Connection header (or only `keep-alive`): share the fixed set, allocate nothing.
  let named: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]?.toLowerCase() !== 'connection') continue;
    for (const token of (raw[i + 1] ?? '').split(',')) {
      const name = token.trim().toLowerCase();
      if (name === '' || HOP_BY_HOP.has(name)) continue;
      named ??= new Set(HOP_BY_HOP);
      named.add(name);
    }
  }
  return named ?? HOP_BY_HOP;
}

/** The end-to-end headers of a raw list; `drop` names (lower case) are removed too. */
export function endToEnd(raw: ReadonlyArray<string>, drop?: ReadonlySet<string>): FlatHeaders {
  const hop = hopByHopNames(raw);
  const out: FlatHeaders = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] ?? '';
    const lower = name.toLowerCase();
    if (hop.has(lower) || drop?.has(lower)) continue;
    out.push(name, raw[i + 1] ?? '');
  }
  return out;
}

// Expect: Node's server has already answered 100-continue to the client, and undici refuses the header.
const NOT_FORWARDED_UPSTREAM = new Set(['host', 'expect', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host']);

/** What goes to llama-server: the client's end-to-end headers plus X-Forwarded-*. */
export function upstreamRequestHeaders(req: IncomingMessage): FlatHeaders {
  const out = endToEnd(req.rawHeaders, NOT_FORWARDED_UPSTREAM);
  const prior = req.headers['x-forwarded-for'];
  const client = req.socket.remoteAddress ?? '';
  out.push('x-forwarded-for', prior ? `${prior}, ${client}` : client);
  out.push('x-forwarded-proto', firstValue(req.headers['x-forwarded-proto']) ?? 'http');
  const host = firstValue(req.headers['x-forwarded-host']) ?? req.headers.host;
  if (host !== undefined) out.push('x-forwarded-host', host);
  return out;
}

function firstValue(value: string | string[] | undefined): string | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  return v?.split(',')[0]?.trim() || undefined;
}

/** llhttp hands raw headers over as Buffers (or strings); header bytes are Latin-1 by definition. */
export function rawToStrings(raw: ReadonlyArray<Buffer | string> | null | undefined): string[] {
  if (!raw) return [];
  return raw.map((v) => (typeof v === 'string' ? v : v.toString('latin1')));
}

export function getHeader(flat: ReadonlyArray<string>, name: string): string | undefined {
  const lower = name.toLowerCase();
  for (let i = 0; i < flat.length; i += 2) if (flat[i]?.toLowerCase() === lower) return flat[i + 1];
  return undefined;
}

/** Sets a header unless the list already has one of that name. */
export function addIfAbsent(flat: FlatHeaders, name: string, value: string): void {
  if (getHeader(flat, name) === undefined) flat.push(name, value);
}
