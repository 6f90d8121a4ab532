/**
 * Conveyor's public API: drivers, the gateway and the runtime pieces a platform team embeds.
 * @packageDocumentation
 */
export { defineDriver } from './actors/driver/define.ts'
export { runDriver } from './actors/driver/run.ts'
export { RetryableError, TerminalError } from './actors/driver/errors.ts'
export type { DriverContext, DriverDefinition, DriverHandle, DriverResult, RunDriverOptions } from './actors/driver/types.ts'
export { startGateway } from './gateway/server.ts'
export type { Gateway, GatewayOptions } from './gateway/server.ts'
export { connectServers } from './runtime/connections.ts'
export type { Connections, ConnectOptions } from './runtime/connections.ts'
export { resolveConfig } from './runtime/config.ts'
export type { ConveyorConfig, ConfigOverrides } from './runtime/config.ts'
export { startLocalServers } from './runtime/servers/local-cluster.ts'
export type { LocalServers, LocalServersOptions } from './runtime/servers/local-cluster.ts'
export { ConveyorError } from './runtime/errors.ts'
export type { FieldError } from './runtime/errors.ts'
export type { ConveyorEvent, DriverOutcome, EventKind, LogEnd, LogLine, ObjectMetadata, Resource, ResourceDefinition, ResourceStatus } from './definitions/objects.ts'
