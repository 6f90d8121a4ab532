import type { HttpResponse } from 'uWebSockets.js'
import { STREAM_LIMIT_ENV } from '../runtime/config.ts'
import { problem, send } from './http.ts'

/** The remote address of a request, as uWS reports it (IPv4 addresses in their IPv6-mapped form included). */
export function remoteAddress(res: HttpResponse): string {
  return Buffer.from(res.getRemoteAddressAsText()).toString()
}

/**
 * Open streams (WebSockets, SSE) per remote address, up to a cap: a client past it is refused
 * with 429 instead of holding more of the gateway's memory and sockets.
 */
export class StreamsPerClient {
  readonly #open = new Map<string, number>()
  readonly max: number

  constructor(max: number) {
    this.max = max
  }

  /** Counts a stream of `address`, or answers 429 on `res` and returns false when it has `max` open. */
  open(address: string, res: HttpResponse): boolean {
    const open = this.#open.get(address) ?? 0
    if (open >= this.max) {
      send(
        res,
        { aborted: false },
        problem(
          429,
          'too-many-connections',
          `at most ${this.max} open streams per client (${STREAM_LIMIT_ENV.connectionsPerClient}); close one or retry later`,
        ),
      )
      return false
    }
    this.#open.set(address, open + 1)
    return true
  }

  /** The stream `open` counted has ended. */
  closed(address: string): void {
    const open = (this.#open.get(address) ?? 0) - 1
    if (open > 0) this.#open.set(address, open)
    else this.#open.delete(address)
  }
}
