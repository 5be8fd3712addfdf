// The linter CI runs (`npm run lint`, with prettier for the layout). Rules that encode this repository's
// conventions sit at the end: the layers' imports and the line length.
import js from '@eslint/js'
import tseslint from 'typescript-eslint'

// Core modules that are use cases (they run other systems through ports); the rest of core is rules and types.
const USE_CASES = [
  'backup/create',
  'backup/restore',
  'backup/recover',
  'backup/deep-verify',
  'deploy',
  'rollback',
  'version-bump',
  'verify-extension',
  'upgrade-apply',
  'upgrade-plan',
  'db-migrate',
  'dev',
  'init',
  'doctor/index',
  'replica-status',
]

export default tseslint.config(
  {ignores: ['dist/**', 'node_modules/**', '.cache/**', 'templates/**', 'mlflow-demo/**', '**/*.d.ts']},
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: {
        process: 'readonly',
        console: 'readonly',
        Buffer: 'readonly',
        URL: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        setInterval: 'readonly',
        clearInterval: 'readonly',
        fetch: 'readonly',
        AbortController: 'readonly',
        AbortSignal: 'readonly',
        TextDecoder: 'readonly',
        TextEncoder: 'readonly',
        queueMicrotask: 'readonly',
        setImmediate: 'readonly',
        structuredClone: 'readonly',
      },
    },
    rules: {
      // Strings (messages, hints) may run long; code may not.
      'max-len': [
        'error',
        {
          code: 160,
          ignoreStrings: true,
          ignoreTemplateLiterals: true,
          ignoreRegExpLiterals: true,
          ignoreComments: false,
          ignoreUrls: true,
        },
      ],
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-unused-vars': [
        'error',
        {argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none'},
      ],
    },
  },
  {
    // core holds the use cases and rules: no CLI framework, no outside system.
    files: ['src/core/**/*.ts', 'src/errors.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {group: ['@oclif/*'], message: 'core does not depend on the CLI framework.'},
            {
              group: ['**/adapters/**'],
              message: 'core reaches outside systems through ports (core/ports.ts), not adapters.',
            },
          ],
        },
      ],
    },
  },
  {
    // Commands parse flags, call a use case and print: every collaborator comes from the composition root
    // (this.deps, src/compose/command-deps.ts), so that in-process tests can replace each one.
    files: ['src/commands/**/*.ts', 'src/base-command.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['**/adapters/**'],
              message: 'commands take adapters from this.deps (src/compose/command-deps.ts), never import them.',
            },
            {
              group: ['**/compose/*', '!**/compose/command-deps.js'],
              allowTypeImports: true,
              message: 'commands take the composed collaborators from this.deps, not from compose/ modules.',
            },
          ],
        },
      ],
    },
  },
  {
    // Adapters implement ports: they import no command, no composition (src/compose, src/deps.ts) and no core use
    // case (types are fine). What runs use cases together is composed in src/compose.
    files: ['src/adapters/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['**/commands/**', '@oclif/*', '**/compose/**', '**/deps.js'],
              message: 'adapters do not depend on commands, the composition or the CLI framework.',
            },
            {
              group: USE_CASES.map((name) => `**/core/${name}.js`),
              allowTypeImports: true,
              message: 'adapters import no core use case: compose them in src/compose.',
            },
          ],
        },
      ],
    },
  },
)
