import { initialTransition } from 'xstate'
import { TOMBSTONE_EXPIRE, type ActorInitializer, type ActorRecord } from '../../runtime/actor-record.ts'
import { DEFAULT_LIFECYCLE } from '../../definitions/lifecycle.ts'
import { subjects } from '../../runtime/keys.ts'
import type { OutboxMessage } from '../../runtime/outbox.ts'
import type { ConveyorEvent } from '../../definitions/objects.ts'
import { cancelRun, startRun } from '../pipeline/run.ts'
import { runMessages } from '../pipeline/effects.ts'
import { applyEvent, applyTimerActions, persist, type ActionLike } from './apply-event.ts'
import { lifecycleId, machineFor, stateString } from './machine.ts'

/** How long a deleted resource's tombstone waits for its drivers to handle the deletion. */
const TOMBSTONE_TTL_MS = 24 * 3600 * 1000

/** The actor initializer the resource store uses: the definition's lifecycle, or the built-in one; and the pipeline run. */
export const actorInitializer: ActorInitializer = {
  initial({ uid, type, name, runid, lifecycle, pipeline, now }) {
    const config = lifecycle ?? DEFAULT_LIFECYCLE
    const id = lifecycleId(config)
    const machine = machineFor(id, config)
    const [snapshot, actions] = initialTransition(machine)
    const timers = applyTimerActions([], actions as unknown as ActionLike[], now, snapshot.status !== 'active')
    let record: ActorRecord = {
      uid,
      type,
      name,
      runid,
      lifecycle: id,
      state: stateString(snapshot.value),
      snapshot: persist(machine, snapshot),
      seq: 0,
      inboxSeq: 0,
      recentIds: [],
      timers: timers.timers,
      updatedAt: new Date(now).toISOString(),
    }
    const messages: OutboxMessage[] = []
    if (pipeline) {
      // The run starts with the resource: the lifecycle moves to running when it has START.
      const started = applyEvent(machine, record, { type: 'START', id: '' }, now)
      if (started.kind === 'applied') {
        record = started.record
        const event: ConveyorEvent = {
          kind: 'transitioned',
          uid,
          revision: 0,
          time: record.updatedAt,
          type,
          name,
          runid,
          from: started.from,
          to: started.to,
          event: { type: 'START' },
          seq: record.seq,
        }
        messages.push({ subject: subjects.outcome(type, name, event.kind), event })
      }
      const run = startRun(pipeline.name, pipeline.plan, record.timers, now)
      record = { ...record, run: run.run, timers: run.timers }
      messages.push(...runMessages(record, run.effects, now))
    }
    return { lifecycleId: id, lifecycle: config, record, messages }
  },
  retire(record, reason, now) {
    if (!record.run || record.run.status !== 'running') return []
    const ended = cancelRun({ run: record.run, timers: record.timers }, reason, now)
    // The drivers are told to stop, and the run ends (its log streams too); the record itself is
    // replaced or deleted by the same commit.
    return runMessages(
      { ...record, run: ended.run },
      { dispatched: [], reported: [], cancelled: ended.effects.cancelled, finished: 'cancelled' },
      now,
    )
  },
  tombstone(record, now) {
    const { run: _run, ...rest } = record
    const iso = new Date(now).toISOString()
    return {
      ...rest,
      drivers: {},
      timers: [
        { id: 'conveyor.tombstone', dueAt: now + TOMBSTONE_TTL_MS, event: { type: TOMBSTONE_EXPIRE, uid: record.uid } },
      ],
      deletedAt: iso,
      updatedAt: iso,
    }
  },
}
