/**
 * A non-2xx reply of the gateway, or a failure to reach it. The gateway answers every error with
 * `{"error": {"code": "snake_case_code", "message": "human words"}}`; `code` and `message` come
 * from there (`network_error` when no reply arrived, `http_<status>` for a reply without that body).
 */
export class GatewayError extends Error {
  readonly status: number;
  readonly code: string;
  /** Seconds from the `Retry-After` header of a 429 or 503, when present. */
  readonly retryAfter: number | undefined;
  /** The endpoint that answered, when it is not the stream itself (e.g. `/tickets`). */
  endpoint: string | undefined;

  constructor(status: number, code: string, message: string, retryAfter?: number) {
    super(message);
    this.name = 'GatewayError';
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }

  /** Reads a gateway error reply (consumes the body). */
  static async fromResponse(res: Response): Promise<GatewayError> {
    let code = `http_${res.status}`;
    let message = res.statusText || `HTTP ${res.status}`;
    try {
      const body: unknown = await res.json();
      const err = (body as { error?: { code?: unknown; message?: unknown } } | null)?.error;
      if (err && typeof err.code === 'string') code = err.code;
      if (err && typeof err.message === 'string') message = err.message;
    } catch {
      // Not JSON (a proxy's error page, say): keep the status line.
    }
    const ra = Number.parseInt(res.headers.get('retry-after') ?? '', 10);
    return new GatewayError(res.status, code, message, Number.isFinite(ra) ? ra : undefined);
  }

  /** Wraps a rejected `fetch` (the gateway could not be reached). */
  static network(cause: unknown): GatewayError {
    const text = cause instanceof Error ? cause.message : String(cause);
    return new GatewayError(0, 'network_error', text || 'network error');
  }

  /**
   * Whether trying again later can succeed: network errors, 408, 429 and 5xx. A 400, 401, 403
   * or 404 will be the same next time until the user changes something.
   */
  get transient(): boolean {
    return this.status === 0 || this.status === 408 || this.status === 429 || this.status >= 500;
  }
}
