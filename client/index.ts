/**
 * Conveyor's typed HTTP/WebSocket client: every route of the gateway, problem+json answers as
 * `ApiError`, watches and log streams as async iterables.
 * @packageDocumentation
 */
export { createClient, CLIENT_ROUTES } from './client.ts'
export type { ConveyorClient, Tagged, WriteOptions } from './client.ts'
export type { ClientOptions } from './transport.ts'
export { ApiError, UnreachableError } from './errors.ts'
export type { ProblemBody } from './errors.ts'
export { WatchError } from './streams.ts'
export type { FollowOptions, LogStreamItem, WatchChange, WatchEvent, WatchList, WatchOptions } from './streams.ts'
export type * from './types.ts'
