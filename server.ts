/**
 * Conveyor's control plane, for platform teams that embed it: the gateway, the actor worker,
 * connections and local servers (`conveyor/server`).
 * @packageDocumentation
 */
export { startGateway } from './gateway/server.ts'
export type { Gateway, GatewayOptions } from './gateway/server.ts'
export { startWorker } from './actors/worker/worker.ts'
export type { ActorWorker, WorkerOptions } from './actors/worker/worker.ts'
export { connectServers, connectNats } from './runtime/connections.ts'
export type { Connections, ConnectOptions, NatsConnections } from './runtime/connections.ts'
export { resolveConfig } from './runtime/config.ts'
export type { ConveyorConfig, ConfigOverrides } from './runtime/config.ts'
export { startLocalServers } from './runtime/servers/local-cluster.ts'
export type { LocalServers, LocalServersOptions } from './runtime/servers/local-cluster.ts'
