/**
 * Conveyor's driver SDK: what a driver process imports. It needs NATS only, and this entry
 * loads nothing of the gateway, the worker or the stores (those are in `conveyor/server`).
 * @packageDocumentation
 */
export { defineDriver } from './actors/driver/define.ts'
export { runDriver } from './actors/driver/run.ts'
export type { RunningDriver } from './actors/driver/run.ts'
export { RetryableError, TerminalError } from './actors/driver/errors.ts'
export type {
  DriverContext,
  DriverDefinition,
  DriverHandle,
  DriverResult,
  RunDriverOptions,
} from './actors/driver/types.ts'
export type { DriverOutcome, EventKind, LogEnd, ObjectMetadata, ResourceStatus } from './definitions/objects.ts'
export type { StepDispatch } from './definitions/pipeline.ts'
export { ConveyorError } from './runtime/errors.ts'
export * from './client/index.ts'
export type { FieldError } from './runtime/errors.ts'
