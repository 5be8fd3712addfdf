#!/usr/bin/env node
import module from 'node:module'

// V8 keeps the compiled code of the CLI's modules between runs (in the OS temp directory), so that a command starts
// about a fifth sooner: scripts and cron jobs call it often. Before any other import, which it would not cover.
module.enableCompileCache?.()

// Before oclif starts: under DEBUG it echoes the command line, secrets included (src/output/debug-guard.ts).
const {guardDebugOutput} = await import('../dist/output/debug-guard.js')
guardDebugOutput(process.argv.slice(2), process.env)

const {execute} = await import('@oclif/core')
await execute({dir: import.meta.url})
