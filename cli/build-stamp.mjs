// Records when dist/ was built; cli/bin.js runs dist/ only while no source is newer than this.
import { writeFileSync } from 'node:fs'
writeFileSync(new URL('../dist/BUILD_STAMP', import.meta.url), new Date().toISOString() + '\n')
