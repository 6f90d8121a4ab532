import { connect } from 'node:net'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { api, eventually, startStack, type Stack } from './harness.ts'

let stack: Stack
beforeAll(async () => {
  stack = await startStack()
  await api(stack.url, 'POST', '/resource-definitions', { name: 'edge', schema: { type: 'object' } })
  await api(stack.url, 'POST', '/resources', { name: 'e1', resource: 'edge', spec: {} })
})
afterAll(async () => stack?.close())

it('a history kind that cannot be an event kind is a 400 naming ?kind (it was a 500)', async () => {
  for (const kind of ['%205%20', 'a%20b', ',', 'a..b', '.a', 'x>', 'step.*']) {
    const answer = await api(stack.url, 'GET', `/resources/edge/e1/history?kind=${kind}`)
    expect(answer.status, kind).toBe(400)
    expect(answer.body.errors[0].path).toBe('?kind')
  }
  expect((await api(stack.url, 'GET', '/resources/edge/e1/history?kind=created,step.dispatched')).status).toBe(200)
})

it('HEAD answers with the head only (no body a keep-alive client would take for its next answer)', async () => {
  const url = new URL(stack.url)
  const socket = connect(Number(url.port), url.hostname)
  socket.setEncoding('utf8')
  let received = ''
  socket.on('data', (chunk: string) => (received += chunk))
  try {
    socket.write(`HEAD /health HTTP/1.1\r\nHost: ${url.host}\r\n\r\n`)
    await eventually(() => (received.includes('\r\n\r\n') ? true : undefined), 'the head')
    expect(received).toMatch(/^HTTP\/1\.1 200/)
    // The length the GET's body has, and the connection ends with the head: nothing follows it.
    expect(received).toMatch(/Content-Length: 15\r\n/i)
    expect(received).toMatch(/Connection: close\r\n/i)
    // Asserting an absence needs a window: half a second in which no body byte may follow the head.
    await new Promise((resolve) => setTimeout(resolve, 500))
    expect(received.endsWith('\r\n\r\n')).toBe(true)
  } finally {
    socket.destroy()
  }
  const get = await api(stack.url, 'GET', '/health')
  expect(get.body).toEqual({ status: 'ok' })
})
