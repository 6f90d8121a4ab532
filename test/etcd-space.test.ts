import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { api, eventually, type JsonResponse } from './harness.ts'
import { startStorageStack, type StorageStack } from './storage-stack.ts'

// Issue 10, item 10: etcd must not fill up. With a 16 MiB quota the 30th PUT of a 200 KB
// resource (and everything after, DELETE too) used to answer 503 until an operator compacted,
// defragmented and disarmed the NOSPACE alarm by hand.

const QUOTA = 16 * 1024 * 1024
let stack: StorageStack
const spec = (i: number) => ({ blob: `${i}:`.padEnd(200_000, 'y') })

beforeAll(async () => {
  stack = await startStorageStack({ etcd: { quotaBackendBytes: QUOTA }, connect: { etcdQuotaBytes: QUOTA } })
  const schema = { type: 'object', properties: { blob: { type: 'string' } } }
  expect((await api(stack.url, 'POST', '/resource-definitions', { name: 'fat', schema })).status).toBe(201)
})
afterAll(async () => stack?.close())

describe('etcd space', () => {
  it('takes 60 PUTs of a 200 KB resource under a 16 MiB quota, keeping a bounded number of versions', async () => {
    expect((await api(stack.url, 'POST', '/resources', { name: 'f', resource: 'fat', spec: spec(0) })).status).toBe(201)
    const refused: unknown[] = []
    for (let i = 1; i <= 60; i++) {
      const response = await api(stack.url, 'PUT', '/resources/fat/f', { spec: spec(i) })
      if (response.status !== 200) refused.push({ put: i, status: response.status, body: response.body })
    }
    expect(refused).toEqual([])
    const current = await api(stack.url, 'GET', '/resources/fat/f')
    expect(current.body.spec.blob).toBe(spec(60).blob)
    expect(current.body.version).toBe(61)
    const versions = await api(stack.url, 'GET', '/resources/fat/f/versions')
    expect(versions.body.items).toEqual(Array.from({ length: 10 }, (_, i) => 52 + i))
    const kept = await api(stack.url, 'GET', '/resources/fat/f/55')
    expect(kept.status).toBe(200)
    expect(kept.body.spec.blob).toBe(spec(54).blob)
    const dropped = await api(stack.url, 'GET', '/resources/fat/f/3')
    expect(dropped.status).toBe(410)
    expect(dropped.body.detail).toMatch(/version 3 of fat\/f is no longer kept.*10 .*CONVEYOR_MAX_VERSIONS/)
    const ready = await api(stack.url, 'GET', '/ready')
    expect(ready.status).toBe(200)
    expect(ready.body.etcdSpace).toMatchObject({ quotaBytes: QUOTA, alarms: [] })
    expect((await api(stack.url, 'DELETE', '/resources/fat/f')).status).toBe(200)
  })

  it('when live data fills the quota, writes answer 503 saying so and /ready reports the alarm', async () => {
    let refused: JsonResponse | undefined
    for (let i = 0; i < 200 && !refused; i++) {
      const response = await api(stack.url, 'POST', '/resources', { name: `g${i}`, resource: 'fat', spec: spec(i) })
      if (response.status !== 201) refused = response
    }
    expect(refused?.status).toBe(503)
    expect(refused?.headers.get('retry-after')).toMatch(/^\d+$/)
    expect(refused?.body.type).toBe('urn:conveyor:problem:etcd-no-space')
    expect(refused?.body.detail).toMatch(/NOSPACE.*CONVEYOR_ETCD_QUOTA/)
    // /ready shows the figures of the gateway's last etcd space check (every 5 s, and each reclaim
    // a refused write starts); within 30 s of a reclaim that could not make room a refused write
    // starts none, so the alarm shows at the next periodic check.
    const ready = await eventually(
      async () => {
        const answer = await api(stack.url, 'GET', '/ready')
        return answer.status === 503 && answer.body.etcdSpace?.alarms?.includes('NOSPACE') ? answer : undefined
      },
      '/ready to report the NOSPACE alarm',
      30_000,
    )
    expect(ready.status).toBe(503)
    expect(ready.body.etcdSpace.alarms).toContain('NOSPACE')
    expect(ready.body.problems).toContainEqual(expect.stringMatching(/NOSPACE/))
    // Reads still work.
    expect((await api(stack.url, 'GET', '/resources/fat/g0')).status).toBe(200)
  })
})
