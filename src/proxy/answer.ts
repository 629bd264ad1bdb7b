import type { ServerResponse } from 'node:http';
import type { ErrorAnswer } from '../error-response.js';

/** Writes an answer the proxy makes itself, as JSON with its length. */
export function sendAnswer(res: ServerResponse, answer: ErrorAnswer, headers: string[] = []): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = Buffer.from(answer.body);
  res.writeHead(answer.status, [
    ...headers,
    'Content-Type',
    'application/json; charset=utf-8',
    'Content-Length',
    String(body.length),
  ]);
  res.end(body);
}

export function sendJson(res: ServerResponse, status: number, value: unknown, headers: string[] = []): void {
  const body = Buffer.from(JSON.stringify(value));
  res.writeHead(status, [...headers, 'Content-Type', 'application/json; charset=utf-8', 'Content-Length', String(body.length)]);
  res.end(body);
}
