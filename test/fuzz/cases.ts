/** One fuzzed HTTP request (SSE when the gateway answers with a stream). */
export interface HttpCase {
  readonly kind: 'http'
  readonly route: string
  readonly method: string
  /** Path and query, encoded as sent. */
  readonly path: string
  readonly headers: Readonly<Record<string, string>>
  readonly body?: Buffer
}

/** One fuzzed WebSocket: an upgrade, then frames. */
export interface WsCase {
  readonly kind: 'ws'
  readonly route: string
  readonly path: string
  readonly protocols: readonly string[]
  readonly headers: Readonly<Record<string, string>>
  readonly frames: readonly (string | Buffer)[]
}

/** Bytes written straight to a TCP socket: what an HTTP client library would not send. */
export interface RawCase {
  readonly kind: 'raw'
  readonly route: string
  readonly variant: string
  readonly bytes: Buffer
  /** Close the socket after this many ms without waiting for an answer (a body that never ends). */
  readonly abandonAfterMs?: number
}

export type FuzzCase = HttpCase | WsCase | RawCase

/** Percent-encodes every byte of a string's UTF-8 but the unreserved ones (a lone surrogate becomes U+FFFD). */
export function encodeComponent(text: string): string {
  let out = ''
  for (const byte of Buffer.from(text, 'utf8')) {
    const char = String.fromCharCode(byte)
    out += /[A-Za-z0-9\-._~]/.test(char) ? char : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`
  }
  return out
}
