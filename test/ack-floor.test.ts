import { expect, it } from 'vitest'
import type { JsMsg } from '@nats-io/jetstream'
import { AckFloor } from '../actors/worker/ack-floor.ts'

/** An inbox delivery as the floor sees it: its stream sequence and the ack it records. */
function delivery(seq: number, acked: number[]): JsMsg {
  return { seq, ack: () => void acked.push(seq) } as unknown as JsMsg
}

it('tells when the consumer skipped deliveries, so nothing is acked past a message that never arrived', () => {
  const floor = new AckFloor(0)
  expect(floor.arrived(1)).toBe(true)
  expect(floor.arrived(2)).toBe(true)
  // Delivery 3 went to a connection that died: 4 is the first to arrive after it.
  expect(floor.arrived(4)).toBe(false)
  // A new consumer numbers its deliveries from 1 again.
  floor.restarted()
  expect(floor.arrived(1)).toBe(true)
  expect(floor.arrived(2)).toBe(true)
})

it('acks the highest message applied with everything before it, once per turn', async () => {
  const acked: number[] = []
  const floor = new AckFloor(10)
  for (const seq of [12, 15, 20]) floor.track(delivery(seq, acked))
  floor.done(15)
  expect(floor.floor).toBe(10)
  floor.done(12)
  floor.done(20)
  expect(floor.floor).toBe(20)
  await new Promise((resolve) => setImmediate(resolve))
  expect(acked).toEqual([20])
  expect(floor.seen(12)).toBe(true)
  expect(floor.seen(21)).toBe(false)
})
