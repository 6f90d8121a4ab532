import { execFileSync } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { request } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { connectServers } from '../runtime/connections.ts'
import { resolveConfig } from '../runtime/config.ts'
import { SupervisedChild, httpOk } from '../runtime/servers/child.ts'
import { freePort } from '../runtime/servers/ports.ts'

/**
 * Your own NATS and etcd behind TLS (a private CA) with a NATS user: a process given
 * `CONVEYOR_NATS_TLS_CA`, `CONVEYOR_NATS_USER`/`_PASSWORD` and `CONVEYOR_ETCD_CA` connects; one
 * without the CA does not trust the servers.
 */
let dir: string
let nats: SupervisedChild
let etcd: SupervisedChild
let natsUrl: string
let etcdEndpoint: string

const openssl = (...args: string[]): void => {
  execFileSync('openssl', args, { stdio: 'ignore' })
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'conveyor-tls-'))
  const file = (name: string): string => join(dir, name)
  // A private CA, and a certificate it signs for 127.0.0.1 and localhost.
  openssl(
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '1',
    '-subj',
    '/CN=conveyor test CA',
    '-keyout',
    file('ca.key'),
    '-out',
    file('ca.pem'),
  )
  openssl(
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-subj',
    '/CN=127.0.0.1',
    '-keyout',
    file('server.key'),
    '-out',
    file('server.csr'),
  )
  await writeFile(file('san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n')
  openssl(
    'x509',
    '-req',
    '-in',
    file('server.csr'),
    '-CA',
    file('ca.pem'),
    '-CAkey',
    file('ca.key'),
    '-CAcreateserial',
    '-days',
    '1',
    '-extfile',
    file('san.ext'),
    '-out',
    file('server.pem'),
  )

  const [natsPort, monitorPort, etcdPort, peerPort] = [
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
  ]
  nats = await SupervisedChild.start({
    name: 'nats-server (tls)',
    command: 'nats-server',
    args: [
      '-a',
      '127.0.0.1',
      '-p',
      String(natsPort),
      '-m',
      String(monitorPort),
      '-js',
      '-sd',
      file('nats'),
      '--tls',
      '--tlscert',
      file('server.pem'),
      '--tlskey',
      file('server.key'),
      '--user',
      'ops',
      '--pass',
      'ops-secret',
    ],
    debianPackage: 'nats-server',
    ready: () => httpOk(`http://127.0.0.1:${monitorPort}/healthz?js-enabled-only=true`),
    readyTimeoutMs: 15_000,
  })
  natsUrl = `tls://127.0.0.1:${natsPort}`
  etcdEndpoint = `https://127.0.0.1:${etcdPort}`
  const ca = await readFile(file('ca.pem'))
  etcd = await SupervisedChild.start({
    name: 'etcd (tls)',
    command: 'etcd',
    args: [
      '--data-dir',
      file('etcd'),
      '--listen-client-urls',
      etcdEndpoint,
      '--advertise-client-urls',
      etcdEndpoint,
      '--cert-file',
      file('server.pem'),
      '--key-file',
      file('server.key'),
      '--listen-peer-urls',
      `http://127.0.0.1:${peerPort}`,
      '--initial-advertise-peer-urls',
      `http://127.0.0.1:${peerPort}`,
      '--initial-cluster',
      `default=http://127.0.0.1:${peerPort}`,
      '--logger=zap',
      '--log-level=warn',
    ],
    debianPackage: 'etcd-server',
    ready: () =>
      new Promise<boolean>((resolve) => {
        const asked = request(`${etcdEndpoint}/health`, { ca, timeout: 1000 }, (response) => {
          response.resume()
          resolve(response.statusCode === 200)
        })
        asked.on('error', () => resolve(false))
        asked.end()
      }),
    readyTimeoutMs: 20_000,
  })
}, 60_000)

afterAll(async () => {
  await nats?.stop()
  await etcd?.stop()
  await rm(dir, { recursive: true, force: true })
})

it('connects with the CA and the NATS user from the environment, and trusts neither server without the CA', async () => {
  const env = {
    CONVEYOR_NATS_URL: natsUrl,
    CONVEYOR_ETCD_ENDPOINTS: etcdEndpoint,
    CONVEYOR_NATS_USER: 'ops',
    CONVEYOR_NATS_PASSWORD: 'ops-secret',
    CONVEYOR_NATS_TLS_CA: join(dir, 'ca.pem'),
    CONVEYOR_ETCD_CA: join(dir, 'ca.pem'),
    CONVEYOR_DATA_DIR: dir,
  }
  const config = resolveConfig({}, env)
  const connections = await connectServers(config, { connectTimeoutMs: 5000 })
  try {
    await connections.etcd.put('tls-test').value('over tls')
    expect(await connections.etcd.get('tls-test').string()).toBe('over tls')
    expect(connections.natsConnected()).toBe(true)
  } finally {
    await connections.close()
  }
  await expect(
    connectServers({ ...config, natsAuth: { user: 'ops', password: 'ops-secret' } }, { connectTimeoutMs: 3000 }),
  ).rejects.toThrow(/cannot reach NATS .*certificate/)
  await expect(connectServers({ ...config, etcdAuth: {} }, { connectTimeoutMs: 3000 })).rejects.toThrow(
    /cannot reach etcd at https/,
  )
}, 60_000)
