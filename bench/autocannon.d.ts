declare module 'autocannon' {
  interface Histogram {
    p50: number
    p99: number
    average: number
  }
  interface Result {
    '2xx': number
    non2xx: number
    errors: number
    timeouts: number
    latency: Histogram
    requests: Histogram
  }
  function autocannon(options: Record<string, unknown>): Promise<Result>
  export default autocannon
}
