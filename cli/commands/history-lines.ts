/** One line describing an event of a resource's history, by its kind. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- an event of any kind, printed by its fields
export function describeEvent(event: any): string {
  switch (event.kind) {
    case 'transitioned':
      return `${event.from} → ${event.to} on ${event.event?.type} (seq ${event.seq})`
    case 'step.dispatched':
      return `step ${event.step.id} → ${event.step.driver} (attempt ${event.step.attempt})`
    case 'step.result':
      return `step ${event.step.id}: ${event.step.status}${event.step.message ? ` — ${event.step.message}` : ''}`
    case 'step.cancelled':
      return `step ${event.step.id} cancelled`
    case 'run.finished':
      return `run ${event.runid} ${event.status}`
    case 'driver.result':
      return `${event.driver}: ${event.outcome.success ? 'succeeded' : 'failed'}${event.outcome.message ? ` — ${event.outcome.message}` : ''}`
    default:
      return `revision ${event.revision}${event.version ? `, version ${event.version}` : ''}`
  }
}
