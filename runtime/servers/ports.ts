import { createServer } from 'node:net'

/** Asks the kernel for a free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })
}

/** How many times a server that picks free ports is started again after one was taken meanwhile. */
const PORT_TAKEN_RETRIES = 3

/**
 * Starts a server that picks its ports with {@link freePort}, again with fresh ports when one was
 * taken between being picked and being bound (another process got it first: "address already in
 * use"). A server given fixed ports is started once.
 */
export async function withFreshPorts<T>(picksFreePorts: boolean, start: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await start()
    } catch (error) {
      const taken = error instanceof Error && /address already in use/i.test(error.message)
      if (!picksFreePorts || !taken || attempt >= PORT_TAKEN_RETRIES) throw error
    }
  }
}
