import { randomUUID } from 'node:crypto'
import type { Connections } from '../../runtime/connections.ts'
import { invalid } from '../../runtime/errors.ts'
import { ReplyInbox, sendToActor } from '../../runtime/inbox.ts'
import { readKeys, readPrefix } from '../../runtime/etcd-ops.ts'
import { keys } from '../../runtime/keys.ts'
import { VerificationFold } from '../../actors/lifecycle/verify.ts'
import { HistoryReader } from '../history-reader.ts'
import type { ResourceStore } from '../../runtime/resource-store.ts'
import { ACTOR_RESUME, type ActorEvent, type ParkedEvent } from '../../runtime/actor-record.ts'
import { DEFAULT_LIFECYCLE } from '../../definitions/lifecycle.ts'
import { DEFAULT_LIFECYCLE_ID, machineFor } from '../../actors/lifecycle/machine.ts'
import { acceptedEvents, restore } from '../../actors/lifecycle/apply-event.ts'
import { mermaid } from '../../actors/lifecycle/mermaid.ts'
import { parseJson, type ApiReply, type ApiRequest } from '../http.ts'
import type { Router } from '../router.ts'
import { nameParam, positiveIntegerQuery } from './common.ts'
import { historyFor } from '../secret-redaction.ts'

/** Largest event body: events are signals with a small payload, not documents. */
export const MAX_EVENT_BYTES = 64 * 1024
const EVENT_TYPE = /^[A-Za-z0-9_.:-]{1,128}$/
const EVENT_ID = /^[A-Za-z0-9_.:-]{1,128}$/

/** Checks `{type, id?, ...payload}`; every problem is listed. */
export function parseEvent(body: unknown): ActorEvent {
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw invalid('an event is a JSON object {type, id?, ...payload}', [{ path: '/', message: 'must be an object' }])
  const { type, id } = body as { type?: unknown; id?: unknown }
  const errors = []
  if (typeof type !== 'string' || !EVENT_TYPE.test(type))
    errors.push({ path: '/type', message: 'is required: 1-128 letters, digits, _ . : or -' })
  else if (type.startsWith('xstate.') || type.startsWith('conveyor.'))
    errors.push({
      path: '/type',
      message: 'may not start with xstate. or conveyor. (reserved for timers, pipeline steps and internals)',
    })
  if (id !== undefined && (typeof id !== 'string' || !EVENT_ID.test(id)))
    errors.push({ path: '/id', message: 'must be 1-128 letters, digits, _ . : or -' })
  if (errors.length > 0)
    throw invalid(`invalid event: ${errors.map((e) => `${e.path} ${e.message}`).join('; ')}`, errors)
  return { ...(body as Record<string, unknown>), type: type as string, id: (id as string | undefined) ?? randomUUID() }
}

export interface ActorRouteOptions {
  /** How long POST …/events waits for the worker's answer before answering 202. @default 10000 */
  readonly eventReplyTimeoutMs?: number
  /** Reads histories (verify, `…/history`); the gateway's own, so consumers kept between pages are closed with it. */
  readonly history?: HistoryReader
}

const TRANSITIONED: ReadonlySet<string> = new Set(['transitioned'])

export function registerActorRoutes(
  router: Router,
  connections: Connections,
  resources: ResourceStore,
  replies: ReplyInbox,
  beforeWrite: () => void,
  options: ActorRouteOptions = {},
): void {
  const timeout = options.eventReplyTimeoutMs ?? 10_000
  const history = options.history ?? new HistoryReader(connections)
  const lifecycleOf = async (id: string): Promise<Record<string, unknown>> => {
    if (id === DEFAULT_LIFECYCLE_ID) return DEFAULT_LIFECYCLE
    const { values } = await readKeys(connections.etcd, [keys.lifecycle(id)])
    return values[0] ? (JSON.parse(values[0].value) as Record<string, unknown>) : DEFAULT_LIFECYCLE
  }

  router
    .add(
      'POST',
      '/resources/:type/:name/events',
      async (request): Promise<ApiReply> => {
        const type = nameParam(request, 'type')
        const name = nameParam(request, 'name')
        const event = parseEvent(parseJson(request.body))
        beforeWrite()
        // Nothing is published for a resource that does not exist (404), and the event names the
        // incarnation it was sent to, so a resource created again never gets it.
        const target = await resources.get(type, name)
        const waiting = replies.expect(timeout)
        const ack = await sendToActor(connections.publisher, type, name, event, {
          replyTo: waiting.subject,
          incarnation: target.metadata.uid,
        }).catch((error: unknown) => {
          waiting.cancel()
          throw error
        })
        if (ack.duplicate) {
          waiting.cancel()
          const current = target
          return {
            status: 200,
            body: {
              id: event.id,
              type,
              name,
              accepted: true,
              duplicate: true,
              state: current.status.state,
              context: current.status.context,
              done: current.status.done ?? false,
            },
          }
        }
        const reply = await waiting.reply
        if (!reply)
          return {
            status: 202,
            body: {
              id: event.id,
              type,
              name,
              accepted: true,
              applied: false,
              detail: 'the event is stored; no worker has applied it yet (is a conveyor worker running?)',
            },
          }
        return {
          status: reply.status,
          body: reply.body,
          ...(reply.status >= 400 ? { headers: { 'Content-Type': 'application/problem+json' } } : {}),
        }
      },
      { maxBodyBytes: MAX_EVENT_BYTES },
    )
    .add('GET', '/resources/:type/:name/actor', async (request) => {
      const type = nameParam(request, 'type')
      const name = nameParam(request, 'name')
      const { record, revision } = await resources.actor(type, name)
      const lifecycle = await lifecycleOf(record.lifecycle)
      const machine = machineFor(record.lifecycle, lifecycle)
      return {
        status: 200,
        body: {
          type,
          name,
          runid: record.runid,
          state: record.state,
          value: record.snapshot.value,
          status: record.snapshot.status,
          done: record.snapshot.status !== 'active',
          context: record.snapshot.context,
          accepts: acceptedEvents(machine, record),
          tags: [...restore(machine, record.snapshot).tags],
          timers: record.timers.map((t) => ({ id: t.id, event: t.event.type, dueAt: new Date(t.dueAt).toISOString() })),
          seq: record.seq,
          ...(record.stuck ? { stuck: record.stuck } : {}),
          revision,
          lifecycle: { id: record.lifecycle, machine: lifecycle },
          mermaid: mermaid(lifecycle, record.state),
        },
      }
    })
    .add('GET', '/resources/:type/:name/actor/parked', async (request) => {
      const type = nameParam(request, 'type')
      const name = nameParam(request, 'name')
      await resources.actor(type, name)
      return { status: 200, body: { items: await parkedEvents(connections, type, name) } }
    })
    .add('POST', '/resources/:type/:name/actor/resume', async (request): Promise<ApiReply> => {
      const type = nameParam(request, 'type')
      const name = nameParam(request, 'name')
      beforeWrite()
      const target = await resources.get(type, name)
      // Back into the inbox in their order, under their own ids (a parked event applies at most
      // once); then the marker goes. An event refused again is parked again.
      const parked = await parkedEvents(connections, type, name)
      for (const item of parked) {
        await sendToActor(connections.publisher, type, name, item.event, {
          incarnation: target.metadata.uid,
          msgID: `${type}.${name}.${target.metadata.uid}.resent.${item.seq}`,
        })
        await connections.etcd.delete().key(keys.parkedEvent(type, name, item.seq))
      }
      await sendToActor(
        connections.publisher,
        type,
        name,
        { type: ACTOR_RESUME, id: randomUUID() },
        { incarnation: target.metadata.uid },
      )
      return { status: 202, body: { type, name, resent: parked.length } }
    })
    .add('GET', '/resources/:type/:name/verify', async (request) => {
      const type = nameParam(request, 'type')
      const name = nameParam(request, 'name')
      const { record } = await resources.actor(type, name)
      const machine = machineFor(record.lifecycle, await lifecycleOf(record.lifecycle))
      // Folded as it streams in: a long history is never held in memory at once.
      const fold = new VerificationFold(machine, record)
      for await (const item of history.events(type, name, TRANSITIONED)) if (!fold.add(item.event)) break
      return { status: 200, body: fold.result() }
    })
    .add('GET', '/resources/:type/:name/history', async (request) => {
      const type = nameParam(request, 'type')
      const name = nameParam(request, 'name')
      const after = positiveIntegerQuery(request, 'after', Number.MAX_SAFE_INTEGER) ?? 0
      const limit = positiveIntegerQuery(request, 'limit', 1000) ?? 100
      const kinds = kindsQuery(request)
      const page = await history.page(type, name, after, limit, kinds)
      // Nothing ever happened to it and it does not exist: a 404 (from the read), not an empty page.
      if (page.items.length === 0 && after === 0 && kinds === undefined) await resources.get(type, name)
      // The events carrying the resource (created, updated, deleted) hold its spec: secret values redacted for viewers.
      return { status: 200, body: historyFor(request.principal, page) }
    })
}

/** The events an actor kept aside, in their inbox order. */
async function parkedEvents(connections: Connections, type: string, name: string): Promise<ParkedEvent[]> {
  const { values } = await readPrefix(connections.etcd, keys.parkedEvents(type, name))
  return values.map((value) => JSON.parse(value.value) as ParkedEvent)
}

/** Event kinds (`created`, `transitioned`, `step.dispatched`, …): dot-separated tokens of a NATS subject, no wildcards. */
const KIND = /^(?=.{1,64}$)[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*$/
const MAX_KINDS = 32

/** `?kind=k1,k2`: the kinds to keep, or undefined for all; a kind that cannot be one is a 400 naming it. */
function kindsQuery(request: ApiRequest): ReadonlySet<string> | undefined {
  const raw = request.query.get('kind')
  if (raw === null || raw === '') return undefined
  const kinds = raw.split(',')
  const bad = kinds.find((kind) => !KIND.test(kind))
  if (bad !== undefined || kinds.length > MAX_KINDS)
    throw invalid(
      bad !== undefined
        ? `kind ${JSON.stringify(bad)} is not an event kind: kinds are 1-64 letters, digits, '-', '_' and inner dots, comma separated`
        : `at most ${MAX_KINDS} kinds`,
      [
        {
          path: '?kind',
          message: `must be up to ${MAX_KINDS} comma-separated kinds of letters, digits, '-', '_' and inner dots`,
        },
      ],
    )
  return new Set(kinds)
}
