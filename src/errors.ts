/**
 * The failures of an exchange, each with a stable code, the status the client gets while that is still
 * possible, and a message that never names the upstream's address.
 */

export class ProxyError extends Error {
  constructor(
    readonly code: string,
    readonly status: number,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'ProxyError';
  }
}

/** The client went away; the upstream request is aborted with this. */
export class ClientGoneError extends ProxyError {
  constructor() {
    super('client_gone', 499, 'the client closed the connection');
  }
}

/** The proxy answered on its own (rewritten error, shutdown); the upstream request is no longer wanted. */
export class AnsweredError extends ProxyError {
  constructor() {
    super('answered', 0, 'the proxy has answered the client');
  }
}

export class BodyTooLargeError extends ProxyError {
  constructor(limit: number) {
    super('request_too_large', 413, `request body is larger than the limit of ${limit} bytes`);
  }
}

/** What an upstream transport failure means for the client. */
export function upstreamFailure(err: unknown): ProxyError {
  if (err instanceof ProxyError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  switch (code) {
    case 'ECONNREFUSED':
    case 'ENOTFOUND':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'EAI_AGAIN':
      return new ProxyError('upstream_unreachable', 502, 'llama-server is unreachable', { cause: err });
    case 'UND_ERR_CONNECT_TIMEOUT':
      return new ProxyError('upstream_connect_timeout', 504, 'connecting to llama-server timed out', { cause: err });
    case 'UND_ERR_HEADERS_TIMEOUT':
      return new ProxyError('upstream_headers_timeout', 504, 'llama-server did not answer in time', { cause: err });
    case 'UND_ERR_BODY_TIMEOUT':
      return new ProxyError('upstream_body_timeout', 504, 'llama-server went silent mid-response', { cause: err });
    case 'UND_ERR_HEADERS_OVERFLOW':
      return new ProxyError('upstream_bad_response', 502, 'llama-server sent response headers that are too large', { cause: err });
    case 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH':
      return new ProxyError('bad_request_body', 400, 'request body does not match its Content-Length', { cause: err });
    default:
      if (typeof code === 'string' && code.startsWith('HPE_')) {
        return new ProxyError('upstream_bad_response', 502, 'llama-server sent a malformed HTTP response', { cause: err });
      }
      return new ProxyError('upstream_connection_lost', 502, 'llama-server closed the connection unexpectedly', { cause: err });
  }
}
