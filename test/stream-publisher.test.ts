import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startLocalServers, type LocalServers } from '../runtime/servers/local-cluster.ts'
import { connectServers, type Connections } from '../runtime/connections.ts'
import { StreamFullError, StreamPublisher } from '../runtime/stream-publisher.ts'
import { DiscardPolicy } from '@nats-io/jetstream'

let servers: LocalServers
let connections: Connections

beforeAll(async () => {
  servers = await startLocalServers()
  connections = await connectServers(servers)
  await connections.jsm.streams.add({ name: 'PUBTEST', subjects: ['pubtest.>'] })
})
afterAll(async () => {
  await connections?.close()
  await servers?.stop()
})

describe('StreamPublisher', () => {
  it('stores messages in call order with their headers and reports duplicates', async () => {
    const acks = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        connections.publisher.publish('pubtest.order', String(i), {
          msgID: `m-${i}`,
          headers: { 'Conveyor-Kind': 'test' },
        }),
      ),
    )
    expect(acks.map((ack) => ack.duplicate)).toEqual(Array(200).fill(false))
    expect(acks.map((ack) => ack.seq)).toEqual(acks.map((_, i) => acks[0]!.seq + i))
    const again = await connections.publisher.publish('pubtest.order', 'x', { msgID: 'm-7' })
    expect(again).toMatchObject({ stream: 'PUBTEST', duplicate: true, seq: acks[7]!.seq })
    const stored = await connections.jsm.streams.getMessage('PUBTEST', { seq: acks[3]!.seq })
    expect(stored?.string()).toBe('3')
    expect(stored?.header.get('Conveyor-Kind')).toBe('test')
  })

  it('fails a publish no stream takes with a no-responders error', async () => {
    await expect(connections.publisher.publish('nostream.here', 'x')).rejects.toMatchObject({
      name: 'NoRespondersError',
    })
  })

  it('fails with a timeout when nothing acknowledges, and rejects what waits when closed', async () => {
    // A plain subscriber takes the subject but never answers, so the ack cannot come.
    const silent = connections.nats.subscribe('silent.subject', { callback: () => {} })
    const publisher = new StreamPublisher(connections.nats, 300)
    await expect(publisher.publish('silent.subject', 'x')).rejects.toMatchObject({ name: 'TimeoutError' })
    const waiting = publisher.publish('silent.subject', 'y')
    publisher.close()
    await expect(waiting).rejects.toMatchObject({ name: 'ClosedConnectionError' })
    silent.unsubscribe()
  })

  it('a full stream that discards new messages refuses with StreamFullError naming it, and tells observers', async () => {
    await connections.jsm.streams.add({
      name: 'PUBFULL',
      subjects: ['pubfull.>'],
      max_bytes: 4096,
      discard: DiscardPolicy.New,
    })
    const stored: number[] = []
    const refused: string[] = []
    const stop = connections.publisher.observe({
      stored: (stream, bytes) => (stream === 'PUBFULL' ? stored.push(bytes) : undefined),
      refused: (stream) => refused.push(stream),
    })
    let error: unknown
    for (let i = 0; i < 100 && !error; i++)
      await connections.publisher.publish('pubfull.x', 'x'.repeat(200)).catch((e: unknown) => (error = e))
    stop()
    expect(error).toBeInstanceOf(StreamFullError)
    expect(error).toMatchObject({ stream: 'PUBFULL', code: 'stream-full', status: 503 })
    expect((error as Error).message).toMatch(/stream PUBFULL is full \(maximum bytes exceeded\)/)
    expect(refused).toEqual(['PUBFULL'])
    expect(stored.length).toBeGreaterThan(5)
    expect((await connections.jsm.streams.info('PUBFULL')).state.messages).toBe(stored.length)
  })
})
