#!/usr/bin/env node
import {execute} from '@oclif/core'

// Before oclif starts: under DEBUG it echoes the command line, secrets included (src/output/debug-guard.ts).
const {guardDebugOutput} = await import('../dist/output/debug-guard.js')
guardDebugOutput(process.argv.slice(2), process.env)

await execute({dir: import.meta.url})
