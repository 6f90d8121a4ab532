import { setTimeout as delay } from 'node:timers/promises'
import type { FaultApi, Outcome } from './api-client.ts'

/** How hard the load pushes (milliseconds between operations of each loop). */
export interface LoadRates {
  readonly createEveryMs: number
  readonly updateEveryMs: number
  /** Each of `eventLoops` loops sends one event, then waits this long. */
  readonly eventEveryMs: number
  readonly eventLoops: number
  readonly pipelineEveryMs: number
  readonly readEveryMs: number
  /** Ledgers the events go to. */
  readonly ledgers: number
  /** Runs created at once just before each fault, so that many steps are in flight when it hits. */
  readonly burstBeforeFault: number
}

export const FULL_RATES: LoadRates = {
  createEveryMs: 400,
  updateEveryMs: 700,
  eventEveryMs: 150,
  eventLoops: 2,
  pipelineEveryMs: 1500,
  readEveryMs: 1000,
  ledgers: 10,
  burstBeforeFault: 30,
}

export const SHORT_RATES: LoadRates = {
  createEveryMs: 800,
  updateEveryMs: 1500,
  eventEveryMs: 300,
  eventLoops: 2,
  pipelineEveryMs: 3000,
  readEveryMs: 2000,
  ledgers: 6,
  burstBeforeFault: 15,
}

/** A create the API accepted (201, or 409 "exists" after an attempt whose answer was lost). */
export interface AcceptedCreate {
  readonly type: string
  readonly name: string
  readonly pipeline?: 'rec' | 'sh'
  readonly phase: string
  /** Accepted only as a 409 after an ambiguous attempt. */
  readonly ambiguous: boolean
}

/** An event and what the API finally answered. */
export interface SentEvent {
  readonly id: string
  readonly ledger: string
  readonly phase: string
  outcome: 'applied' | 'duplicate' | 'stored' | 'rejected' | 'unanswered'
  /** Answers before the definitive one (503, timeouts, refused): the event was sent again with the same id. */
  retries: number
}

/** Anything the load did not expect (a 4xx for a valid request, a create answered 409 at once). */
export interface LoadAnomaly {
  readonly op: string
  readonly phase: string
  readonly detail: string
}

const LEDGER_LIFECYCLE = {
  initial: 'open',
  context: { total: 0 },
  states: {
    open: { on: { ADD: { actions: { type: 'assign', params: { total: { $inc: 1 } } } }, CLOSE: 'closed' } },
    closed: { type: 'final' },
  },
}

/** A step that records its execution, logs three lines, and reports its attempt (shell). */
const SHELL_STEP = [
  'echo "$CONVEYOR_RUNID $CONVEYOR_STEP $CONVEYOR_ATTEMPT shell start" >> "$SPEC_RECORD"',
  'for i in 1 2 3; do echo "sh $CONVEYOR_STEP line $i"; done',
  'sleep 1',
  'echo "$CONVEYOR_RUNID $CONVEYOR_STEP $CONVEYOR_ATTEMPT shell done" >> "$SPEC_RECORD"',
  'echo "attempt=$CONVEYOR_ATTEMPT" >> "$CONVEYOR_OUTPUT"',
]

/** How long an operation is retried (same name, same event id) before it is left unanswered. */
const GIVE_UP_MS = 15 * 60_000

/**
 * The continuous load of the fault suites: creates and updates of plain resources, events to
 * counting ledgers, two-step pipelines (a recording driver's and a shell one, both writing logs)
 * and list reads, each loop retrying its operation (same name, same event id) until the API
 * gives a definitive answer, as a careful client does.
 */
export class Load {
  readonly #api: FaultApi
  readonly #rates: LoadRates
  readonly #phase: () => string
  readonly #recordFile: string
  #stopped = false
  #loops: Promise<void>[] = []
  #serial = 0
  readonly accepted: AcceptedCreate[] = []
  readonly events: SentEvent[] = []
  readonly anomalies: LoadAnomaly[] = []
  /** Plain resources accepted, for updates. */
  readonly #items: string[] = []
  updates = 0

  constructor(api: FaultApi, rates: LoadRates, recordFile: string, phase: () => string) {
    this.#api = api
    this.#rates = rates
    this.#recordFile = recordFile
    this.#phase = phase
  }

  static ledgerName = (n: number): string => `ledger-${n}`

  /** Definitions, pipelines and ledgers; fails the suite if the healthy system refuses them. */
  async setup(): Promise<void> {
    const must = async (op: string, method: string, path: string, body: unknown): Promise<void> => {
      const outcome = await this.#definitive(op, method, path, body)
      if (outcome.kind !== 'answer' || (outcome.status !== 201 && outcome.status !== 409))
        throw new Error(`setup ${op} failed: ${JSON.stringify(outcome)}`)
    }
    await must('setup', 'POST', '/resource-definitions', { name: 'fitem', version: '1', schema: { type: 'object' } })
    await must('setup', 'POST', '/resource-definitions', {
      name: 'ledger',
      version: '1',
      schema: { type: 'object' },
      lifecycle: LEDGER_LIFECYCLE,
    })
    await must('setup', 'POST', '/resource-definitions', {
      name: 'fjob',
      version: '1',
      schema: { type: 'object', required: ['record'], properties: { record: { type: 'string' } } },
    })
    await must('setup', 'POST', '/pipelines', {
      name: 'rec',
      resource: 'fjob',
      steps: [
        { id: 'first', driver: 'frec' },
        { id: 'second', driver: 'frec', needs: ['first'] },
      ],
    })
    await must('setup', 'POST', '/pipelines', {
      name: 'sh',
      resource: 'fjob',
      steps: [
        { id: 'build', driver: 'shell', commands: SHELL_STEP },
        { id: 'check', driver: 'shell', needs: ['build'], commands: SHELL_STEP },
      ],
    })
    for (let n = 0; n < this.#rates.ledgers; n++)
      await must('setup', 'POST', '/resources', { name: Load.ledgerName(n), resource: 'ledger', spec: {} })
  }

  start(): void {
    const r = this.#rates
    this.#loops = [
      this.#loop(r.createEveryMs, () => this.#create('fitem')),
      this.#loop(r.updateEveryMs, () => this.#update()),
      ...Array.from({ length: r.eventLoops }, () => this.#loop(r.eventEveryMs, () => this.#event())),
      this.#loop(r.pipelineEveryMs, () => this.#create('fjob')),
      this.#loop(r.readEveryMs, () => this.#read()),
    ]
  }

  /** Creates `burstBeforeFault` pipeline runs at once; resolves once the API accepted them (or not). */
  burst(): Promise<void> {
    const burst = Promise.all(Array.from({ length: this.#rates.burstBeforeFault }, () => this.#create('fjob'))).then(
      () => {},
    )
    this.#loops.push(burst)
    return burst
  }

  /** Stops making new operations; resolves once every one in flight has its definitive answer. */
  async stop(): Promise<void> {
    this.#stopped = true
    await Promise.all(this.#loops)
  }

  async #loop(everyMs: number, operation: () => Promise<void>): Promise<void> {
    while (!this.#stopped) {
      await operation()
      await delay(everyMs)
    }
  }

  /** Sends until the answer is definitive: anything but 503, a 5xx, a timeout or a refused connection. */
  async #definitive(
    op: string,
    method: string,
    path: string,
    body?: unknown,
    onRetry: () => void = () => {},
  ): Promise<Outcome> {
    const giveUp = Date.now() + GIVE_UP_MS
    for (;;) {
      const outcome = await this.#api.call(op, method, path, body)
      if (outcome.kind === 'answer' && outcome.status < 500) return outcome
      if (Date.now() > giveUp) return outcome
      onRetry()
      if (outcome.kind === 'answer' && outcome.status === 503) {
        const seconds = Number(outcome.headers.get('retry-after') ?? 1)
        await delay(Math.min(1000, Math.max(100, seconds * 1000)))
      } else if (outcome.kind === 'refused') await delay(200)
      else await delay(100)
    }
  }

  async #create(type: 'fitem' | 'fjob'): Promise<void> {
    const serial = this.#serial++
    const phase = this.#phase()
    const pipeline = type === 'fjob' ? (serial % 2 === 0 ? 'rec' : 'sh') : undefined
    const name = `${type === 'fitem' ? 'item' : pipeline}-${serial}`
    let ambiguous = false
    const outcome = await this.#definitive(
      'create',
      'POST',
      '/resources',
      {
        name,
        resource: type,
        ...(pipeline ? { pipeline } : {}),
        spec: type === 'fjob' ? { record: this.#recordFile } : { n: serial },
      },
      () => (ambiguous = true),
    )
    if (outcome.kind !== 'answer') {
      this.anomalies.push({ op: 'create', phase, detail: `${name}: no definitive answer (${outcome.kind})` })
      return
    }
    if (outcome.status === 201 || (outcome.status === 409 && ambiguous)) {
      this.accepted.push({ type, name, ...(pipeline ? { pipeline } : {}), phase, ambiguous: outcome.status === 409 })
      if (type === 'fitem') this.#items.push(name)
    } else
      this.anomalies.push({
        op: 'create',
        phase,
        detail: `${name}: ${outcome.status} ${outcome.body?.detail ?? JSON.stringify(outcome.body)}`,
      })
  }

  async #update(): Promise<void> {
    const name = this.#items[Math.floor(Math.random() * this.#items.length)]
    if (!name) return
    const phase = this.#phase()
    const outcome = await this.#definitive('update', 'PUT', `/resources/fitem/${name}`, {
      name,
      resource: 'fitem',
      spec: { n: -1, update: this.updates },
    })
    if (outcome.kind === 'answer' && outcome.status === 200) this.updates++
    else
      this.anomalies.push({
        op: 'update',
        phase,
        detail: `${name}: ${outcome.kind === 'answer' ? `${outcome.status} ${outcome.body?.detail}` : outcome.kind}`,
      })
  }

  async #event(): Promise<void> {
    const serial = this.#serial++
    const id = `ev-${serial}`
    const ledger = Load.ledgerName(serial % this.#rates.ledgers)
    const sent: SentEvent = { id, ledger, phase: this.#phase(), outcome: 'unanswered', retries: 0 }
    this.events.push(sent)
    const outcome = await this.#definitive(
      'event',
      'POST',
      `/resources/ledger/${ledger}/events`,
      { type: 'ADD', id, ref: id },
      () => sent.retries++,
    )
    if (outcome.kind !== 'answer') return
    if (outcome.status === 200) sent.outcome = outcome.body?.duplicate ? 'duplicate' : 'applied'
    else if (outcome.status === 202) sent.outcome = 'stored'
    else {
      sent.outcome = 'rejected'
      this.anomalies.push({
        op: 'event',
        phase: sent.phase,
        detail: `${id} to ${ledger}: ${outcome.status} ${outcome.body?.detail ?? ''}`,
      })
    }
  }

  async #read(): Promise<void> {
    await this.#api.call('list', 'GET', '/resources/fitem?limit=20')
  }
}
