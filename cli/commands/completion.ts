import type { Command } from 'commander'

/** Every command path (`token create`) with its options, from the program itself. */
function commandsOf(program: Command): { path: string; words: string[] }[] {
  const walk = (command: Command, prefix: string[]): { path: string; words: string[] }[] =>
    command.commands.flatMap((sub) => {
      const path = [...prefix, sub.name()]
      const words = [
        ...sub.commands.map((c) => c.name()),
        ...sub.options.flatMap((o) => [o.long, o.short].filter((f): f is string => !!f)),
      ]
      return [{ path: path.join(' '), words }, ...walk(sub, path)]
    })
  return walk(program, [])
}

/** `conveyor completion bash|zsh`: a completion script made from the commands and options defined. */
export function completion(program: Command, shell: string): string {
  if (shell !== 'bash' && shell !== 'zsh')
    throw new TypeError(`completion: the shells are bash and zsh, got ${JSON.stringify(shell)}`)
  const top = program.commands.map((c) => c.name())
  const globals = program.options.flatMap((o) => [o.long, o.short].filter((f): f is string => !!f))
  const cases = commandsOf(program)
    .map(({ path, words }) => `    "${path}") words="${words.join(' ')} ${globals.join(' ')}" ;;`)
    .join('\n')
  const bash = `# conveyor completion for bash: source <(conveyor completion bash)
_conveyor() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" path="" words="" i
  local known="|${commandsOf(program)
    .map((c) => c.path)
    .join('|')}|" candidate
  # The command path is the longest run of known command words (a type or a name is not one).
  for ((i = 1; i < COMP_CWORD; i++)); do
    case "\${COMP_WORDS[i]}" in -*) continue ;; esac
    candidate="\${path:+$path }\${COMP_WORDS[i]}"
    case "$known" in *"|$candidate|"*) path="$candidate" ;; esac
  done
  case "$path" in
    "") words="${top.join(' ')} ${globals.join(' ')}" ;;
${cases}
    *) words="" ;;
  esac
  # Past the command's own words (a type or a name), offer files.
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
  [ \${#COMPREPLY[@]} -eq 0 ] && COMPREPLY=($(compgen -f -- "$cur"))
  return 0
}
complete -F _conveyor conveyor
`
  if (shell === 'bash') return bash
  return `#compdef conveyor
# conveyor completion for zsh: source <(conveyor completion zsh)
autoload -U +X bashcompinit && bashcompinit
${bash}`
}
