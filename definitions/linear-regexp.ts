import { RE2JS } from 're2js'

/** What a validator needs of a regular expression: Ajv's `RegExpLike`. */
export interface LinearRegExp {
  test(input: string): boolean
  toString(): string
}

/**
 * A user's pattern compiled for RE2 (re2js), whose matching time is linear in the input.
 * JSON Schema patterns are ECMAScript regular expressions; this accepts those that mean the same
 * on RE2: no backreferences and no lookaround (RE2 cannot run them in linear time). Throws a
 * `TypeError` saying why a pattern is refused.
 */
export function compileLinear(pattern: string): LinearRegExp {
  const analysed = analyse(pattern)
  if (typeof analysed === 'string') throw new TypeError(analysed)
  return { test: (input) => analysed.test(input), toString: () => `/${pattern}/re2` }
}

/** Why a pattern cannot run on a linear-time engine, or undefined when it can. */
export function linearPatternProblem(pattern: string): string | undefined {
  const analysed = analyse(pattern)
  return typeof analysed === 'string' ? analysed : undefined
}

const LOOKAROUND = /^\(\?<?[=!]/

/** The compiled pattern, or why it is refused. */
function analyse(pattern: string): RE2JS | string {
  try {
    new RegExp(pattern, 'u')
  } catch (error) {
    return `is not an ECMAScript regular expression: ${(error as Error).message}`
  }
  // Valid with the `u` flag, `\k` is a named backreference and `\1`… a numbered one; `(?=`,
  // `(?!`, `(?<=` and `(?<!` outside a character class are lookaround.
  let inClass = false
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i]
    if (ch === '\\') {
      const next = pattern[i + 1] ?? ''
      if (!inClass && (next === 'k' || (next >= '1' && next <= '9')))
        return 'uses a backreference, which a linear-time regular expression engine (RE2) cannot run'
      i++
    } else if (inClass) inClass = ch !== ']'
    else if (ch === '[') inClass = true
    else if (ch === '(' && LOOKAROUND.test(pattern.slice(i, i + 4)))
      return 'uses lookaround ((?=, (?!, (?<=, (?<!), which a linear-time regular expression engine (RE2) cannot run'
  }
  try {
    return RE2JS.compile(RE2JS.translateRegExp(withEcmaClasses(pattern)))
  } catch (error) {
    return `cannot run on the linear-time regular expression engine (RE2): ${(error as Error).message}`
  }
}

/** Ajv's `code.regExp` engine: every `pattern` and `patternProperties` key runs on RE2. */
export const linearRegExpEngine = Object.assign((pattern: string): LinearRegExp => compileLinear(pattern), {
  code: 'linearRegExp',
})

/** ECMAScript's white space and line terminators (what `\s` matches), and what `.` leaves out without the `s` flag. */
const WHITE_SPACE = '\\t\\n\\v\\f\\r \\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff'
const NOT_LINE_TERMINATOR = '[^\\n\\r\\u2028\\u2029]'

/**
 * Rewrites `\s`, `\S` and `.` to the classes they mean in ECMAScript, where RE2's differ (its
 * `\s` is ASCII, its `.` excludes only `\n`). Inside a character class `\S` stays RE2's.
 */
function withEcmaClasses(pattern: string): string {
  let out = ''
  let inClass = false
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i]!
    if (ch === '\\') {
      const next = pattern[i + 1] ?? ''
      i++
      if (next === 's') out += inClass ? WHITE_SPACE : `[${WHITE_SPACE}]`
      else if (next === 'S' && !inClass) out += `[^${WHITE_SPACE}]`
      else out += ch + next
    } else if (inClass) {
      inClass = ch !== ']'
      out += ch
    } else if (ch === '[') {
      inClass = true
      out += ch
    } else out += ch === '.' ? NOT_LINE_TERMINATOR : ch
  }
  return out
}
