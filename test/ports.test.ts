import { expect, it } from 'vitest'
import { withFreshPorts } from '../runtime/servers/ports.ts'

it('a server that picks free ports starts again with fresh ones when one was taken meanwhile; fixed ports are tried once', async () => {
  let tries = 0
  const taken = new Error('listen tcp 127.0.0.1:4222: bind: address already in use')
  const started = await withFreshPorts(true, async () => {
    if (++tries < 3) throw taken
    return 'up'
  })
  expect([started, tries]).toEqual(['up', 3])
  tries = 0
  await expect(
    withFreshPorts(false, async () => {
      tries++
      throw taken
    }),
  ).rejects.toThrow(/address already in use/)
  expect(tries).toBe(1)
  tries = 0
  await expect(
    withFreshPorts(true, async () => {
      tries++
      throw new Error('something else')
    }),
  ).rejects.toThrow('something else')
  expect(tries).toBe(1)
})
