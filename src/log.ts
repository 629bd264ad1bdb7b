/**
 * Logs are data: pino JSON lines on stdout, one per request plus lifecycle events. Credentials never
 * reach a log line, wherever they sit in the logged object.
 */
import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };

export const REDACTED_PATHS = [
  'apiKey',
  '*.apiKey',
  'headers.authorization',
  'headers["x-api-key"]',
  '*.headers.authorization',
  '*.headers["x-api-key"]',
];

export function createLogger(level: string, destination?: DestinationStream): Logger {
  const options = {
    level,
    base: { name: 'llama-status-proxy' },
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return destination ? pino(options, destination) : pino(options);
}

/** The one line written when a request is over. */
export interface RequestRecord {
  method: string;
  path: string;
  /** Status the client got; 499 when the client left first. */
  status: number;
  upstreamStatus?: number;
  /** The client got a real status instead of the upstream's in-band error. */
  rewritten?: boolean;
  errorType?: string;
  /** From the upstream's headers to the event that decided the outcome. */
  decideMs?: number;
  /** Why the hold ended without a deciding event, if it did. */
  holdEnd?: 'timeout' | 'max-bytes';
  /** An error frame the proxy wrote into a stream that had started (upstream stopped, shutdown). */
  midStreamError?: string;
  /** The upstream's own stream ended in an error after the commit (the client saw it in the stream). */
  inBandAfterCommit?: boolean;
  /** Sent again once because the supervised llama-server was lost before it answered anything. */
  retried?: boolean;
  durationMs: number;
  bytesOut: number;
  clientAbort?: boolean;
}
