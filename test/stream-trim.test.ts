import { describe, expect, it } from 'vitest'
import { cutFor, firstOwed, planTrim, subjectCovers, subjectsOverlap } from '../runtime/stream-trim.ts'
import { streamClasses, streams, subjects } from '../runtime/keys.ts'

const consumer = (filter: string | undefined, ackFloor: number, delivered = ackFloor, pending = 1, ackPending = 0) => ({
  filter,
  ackFloor,
  delivered,
  pending,
  ackPending,
})

describe('trimming a work stream', () => {
  it('matches subjects the way NATS does', () => {
    expect(subjectsOverlap('conveyor.ev.step.>', subjects.stepsOfDriver('shell'))).toBe(true)
    expect(subjectsOverlap('conveyor.ev.resource.>', subjects.stepsOfDriver('shell'))).toBe(false)
    expect(subjectsOverlap(subjects.resourceChangesOfType('app'), subjects.history('app', 'a1'))).toBe(true)
    expect(subjectsOverlap(subjects.resourceChangesOfType('app'), subjects.resourceChangesOfType('db'))).toBe(false)
    expect(subjectsOverlap('a.b', 'a.b.c')).toBe(false)
    expect(subjectCovers('conveyor.ev.step.>', subjects.stepsOfDriver('shell'))).toBe(true)
    expect(subjectCovers(subjects.stepsOfDriver('shell'), 'conveyor.ev.step.>')).toBe(false)
    expect(subjectCovers('a.*', 'a.b')).toBe(true)
    expect(subjectCovers('a.b', 'a.*')).toBe(false)
    expect(subjectCovers('a.*', 'a.b.c')).toBe(false)
  })

  it('knows what a consumer still needs', () => {
    expect(firstOwed(consumer('x', 10, 10, 0, 0))).toBe(Number.POSITIVE_INFINITY)
    // Created late (start sequence 8): nothing before it is owed.
    expect(firstOwed(consumer('x', 0, 7, 3, 0))).toBe(8)
    // Delivered up to 20, acknowledged up to 12: 13 may come back.
    expect(firstOwed(consumer('x', 12, 20, 0, 8))).toBe(13)
  })

  it('cuts the oldest share of the stream', () => {
    expect(cutFor({ firstSeq: 1, lastSeq: 100, bytes: 1000, maxBytes: 1000 }, 0.6)).toBe(41)
    expect(cutFor({ firstSeq: 50, lastSeq: 49, bytes: 0, maxBytes: 1000 }, 0.6)).toBe(50)
  })

  it('never cuts past what a consumer needs, and leaves what nobody took', () => {
    const events = streamClasses[streams.events]!
    const purges = planTrim(
      80,
      [
        consumer(subjects.resourceChangesOfType('app'), 30),
        consumer(subjects.stepsOfDriver('shell'), 50),
        consumer(subjects.stepsOfDriver('idle'), 70, 70, 0, 0),
      ],
      events,
    )
    expect(purges).toContainEqual({ filter: 'conveyor.ev.resource.>', below: 31 })
    expect(purges).toContainEqual({ filter: 'conveyor.ev.outcome.>', below: 80 })
    expect(purges).toContainEqual({ filter: subjects.stepsOfDriver('shell'), below: 51 })
    expect(purges).toContainEqual({ filter: subjects.stepsOfDriver('idle'), below: 80 })
    // Steps of drivers without a consumer (never started) are never cut.
    expect(purges.some((p) => p.filter === 'conveyor.ev.step.>')).toBe(false)
    // A partition without a consumer (no worker yet) keeps its inbox.
    const inbox = planTrim(80, [consumer(subjects.inboxOfPartition(3), 40)], streamClasses[streams.inbox]!)
    expect(inbox).toEqual([{ filter: subjects.inboxOfPartition(3), below: 41 }])
  })
})
