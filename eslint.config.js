// The linter CI runs (`npm run lint`, with prettier for the layout). Rules that encode this repository's
// conventions (../shared/STYLE.md) sit at the end: the layers' imports and the line length.
import js from '@eslint/js'
import tseslint from 'typescript-eslint'

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
    // core holds the use cases and rules: no CLI framework, no outside system (STYLE.md).
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
    // The one exception to "core imports no adapter": none. Adapters import no command.
    files: ['src/adapters/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['**/commands/**', '@oclif/*'],
              message: 'adapters do not depend on commands or the CLI framework.',
            },
          ],
        },
      ],
    },
  },
)
