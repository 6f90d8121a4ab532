import type { LifecycleConfig } from '../../definitions/lifecycle.ts'

type Node = Record<string, unknown>
const isObject = (value: unknown): value is Node => typeof value === 'object' && value !== null && !Array.isArray(value)
const list = <T>(value: T | T[] | undefined): T[] => (value === undefined ? [] : Array.isArray(value) ? value : [value])
const idOf = (path: readonly string[]): string => path.map((p) => p.replace(/[^A-Za-z0-9_]/g, '_')).join('__') || 'root'

/** Targets of a transition value, resolved to state paths the way the lifecycle checker does. */
function targets(value: unknown, from: readonly string[], ids: Map<string, string[]>): string[][] {
  return list(value as unknown[]).flatMap((transition) => {
    const raw =
      typeof transition === 'string'
        ? [transition]
        : isObject(transition)
          ? list(transition.target as string | string[] | undefined)
          : []
    return raw.map((target) => {
      if (target.startsWith('#')) {
        const [id, ...rest] = target.slice(1).split('.')
        return [...(ids.get(id!) ?? []), ...rest.filter(Boolean)]
      }
      if (target.startsWith('.')) return [...from, ...target.slice(1).split('.')]
      return [...from.slice(0, -1), ...target.split('.')]
    })
  })
}

/** A Mermaid `stateDiagram-v2` of a lifecycle, with the current state (`a.b` for nested) highlighted. */
export function mermaid(config: LifecycleConfig, current: string): string {
  const ids = new Map<string, string[]>()
  const collectIds = (node: Node, path: string[]): void => {
    if (typeof node.id === 'string' && path.length > 0) ids.set(node.id, path)
    if (isObject(node.states))
      for (const [name, child] of Object.entries(node.states)) if (isObject(child)) collectIds(child, [...path, name])
  }
  collectIds(config, [])
  const lines = ['stateDiagram-v2']
  const edges: string[] = []
  const render = (node: Node, path: string[], indent: string): void => {
    if (!isObject(node.states)) return
    if (typeof node.initial === 'string') lines.push(`${indent}[*] --> ${idOf([...path, node.initial])}`)
    for (const [name, child] of Object.entries(node.states)) {
      if (!isObject(child)) continue
      const childPath = [...path, name]
      const id = idOf(childPath)
      if (isObject(child.states)) {
        lines.push(`${indent}state "${name}" as ${id} {`)
        render(child, childPath, indent + '  ')
        lines.push(`${indent}}`)
      } else if (id !== name) lines.push(`${indent}state "${name}" as ${id}`)
      if (child.type === 'final') lines.push(`${indent}${id} --> [*]`)
      if (isObject(child.on))
        for (const [event, value] of Object.entries(child.on))
          for (const to of targets(value, childPath, ids)) edges.push(`${id} --> ${idOf(to)} : ${event}`)
      if (isObject(child.after))
        for (const [delay, value] of Object.entries(child.after))
          for (const to of targets(value, childPath, ids)) edges.push(`${id} --> ${idOf(to)} : after ${delay} ms`)
    }
  }
  render(config, [], '  ')
  // Events handled at the root apply in every top-level state that is not final.
  if (isObject(config.on) && isObject(config.states)) {
    for (const [event, value] of Object.entries(config.on)) {
      for (const to of targets(value, [], ids)) {
        for (const [name, child] of Object.entries(config.states))
          if (isObject(child) && child.type !== 'final' && idOf([name]) !== idOf(to))
            edges.push(`${idOf([name])} --> ${idOf(to)} : ${event}`)
      }
    }
  }
  lines.push(...edges.map((edge) => `  ${edge}`))
  lines.push('  classDef current fill:#ffd54f,stroke:#e65100,stroke-width:3px')
  for (const leaf of current.split('|')) lines.push(`  class ${idOf(leaf.split('.'))} current`)
  return lines.join('\n')
}
