import { appendFileSync } from 'node:fs'
import { setTimeout as delay } from 'node:timers/promises'
import { defineDriver } from 'conveyor'

/**
 * The fault suite's pipeline-step driver, run with `conveyor driver`: every execution appends
 * `runid step attempt instance start` to $RECORD_FILE, logs three lines, works a little, appends
 * `… done` and succeeds with its attempt as data (the execution the run recorded as completed).
 */
export default defineDriver({
  name: 'frec',
  resources: [],
  concurrency: 4,
  async reconcile(ctx) {
    const line = `${ctx.runid} ${ctx.step!.id} ${ctx.attempt} ${process.env.DRIVER_INSTANCE ?? 'solo'}`
    appendFileSync(process.env.RECORD_FILE!, `${line} start\n`)
    for (let i = 1; i <= 3; i++) ctx.log(`frec ${ctx.step!.id} line ${i}`)
    await delay(300 + Math.floor(Math.random() * 1700))
    appendFileSync(process.env.RECORD_FILE!, `${line} done\n`)
    return { success: true, message: 'recorded', data: { attempt: ctx.attempt } }
  },
})
